"""``usage/`` (docs/REFERENCE.md §6, "Limits and quotas"): the caller's requests counted on an exchange date, their
tier's daily quota and the rates that apply to them (`webapi.quotas`)."""

from __future__ import annotations

from datetime import date, timedelta

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapi import quotas
from webapi.dependencies import REDIS_DOWN
from webapi.errors import BadParameter, ServiceUnavailable

UsageSerializer = inline_serializer("Usage", {
    "user": serializers.CharField(), "tier": serializers.CharField(), "date": serializers.DateField(),
    "usage": inline_serializer("UsageCounts", {
        **{kind: serializers.IntegerField() for kind in ("total", *quotas.KINDS)},
        "throttled": serializers.IntegerField(help_text="requests refused with 429 (not in total)"),
    }),
    "quota": inline_serializer("UsageQuota", {
        "requests_per_day": serializers.IntegerField(allow_null=True, help_text="null: unlimited"),
        "remaining": serializers.IntegerField(allow_null=True),
        "resets_in_s": serializers.IntegerField(allow_null=True, help_text="until the next exchange date"),
    }),
    "rates": serializers.DictField(child=serializers.CharField(allow_null=True),
                                   help_text="realtime, historical, writes, other, websocket_messages (null: none)"),
})


def date_param(request: Request) -> str | None:
    text = request.query_params.get("date")
    if not text:
        return None
    today = date.fromisoformat(quotas.exchange_day(quotas.KindRateThrottle.timer())[0])
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadParameter(f"date {text[:40]!r} must be YYYY-MM-DD", field="date") from None
    if not today - timedelta(days=quotas.USAGE_DAYS_KEPT - 1) <= day <= today:
        raise BadParameter(f"date must be within the last {quotas.USAGE_DAYS_KEPT} exchange dates", field="date")
    return day.isoformat()


class UsageView(APIView):
    throttle_classes = [quotas.KindRateThrottle]  # readable also once the quota is used up: counted by rate only
    @extend_schema(summary="Your requests counted today (or on date), your tier's quota and your rates",
                   parameters=[OpenApiParameter("date", OpenApiTypes.DATE,
                                                description="an exchange date of the last 35 (default today)")],
                   responses={200: UsageSerializer, 400: OpenApiResponse(description="bad date")})
    def get(self, request: Request) -> Response:
        day = date_param(request)
        try:
            return Response(quotas.usage(request.user, day))
        except REDIS_DOWN:
            raise ServiceUnavailable("Redis is unreachable; usage is kept there") from None


urlpatterns = [path("usage/", UsageView.as_view(), name="usage")]
