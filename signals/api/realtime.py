"""Realtime read endpoints backed by the latest values in Redis."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feed.instruments import InstrumentKeyError, normalise_key
from feed.latest import LatestStore
from feed.redis_client import get_redis
from webapi.errors import BadParameter, NotFound

TICK_FIELDS = ("ltp", "open", "high", "low", "close", "volume", "oi", "bid", "ask", "ltq")


def instrument_param(value: str, field: str = "instrument_key") -> str:
    """Normalise an instrument key from the URL or answer 400 naming the parameter."""
    try:
        return normalise_key(value)
    except InstrumentKeyError as exc:
        raise BadParameter(str(exc), field=field) from None


PriceSerializer = inline_serializer("RealtimePrice", {
    "instrument_key": serializers.CharField(),
    "timestamp": serializers.DateTimeField(),
    **{name: serializers.FloatField(allow_null=True) for name in TICK_FIELDS},
})


class RealtimePriceView(APIView):
    @extend_schema(summary="Latest tick values of an instrument",
                   responses={200: PriceSerializer, 400: OpenApiResponse(description="bad instrument key"),
                              404: OpenApiResponse(description="no tick seen for this instrument")})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = instrument_param(instrument_key)
        tick = LatestStore(get_redis()).get(key)
        if tick is None:
            raise NotFound(f"no tick seen for {key}")
        body: dict[str, Any] = {"instrument_key": key, "timestamp": tick["timestamp"]}
        body.update({name: tick.get(name) for name in TICK_FIELDS})
        return Response(body)
