"""Backtest runs (docs/BACKTESTS.md, issue 12), under /api/v2/signals/backtests/: ``POST`` starts a run (202 with
its id), ``GET`` lists runs, ``GET {id}/`` its status, progress, counts and errors, ``GET {id}/records/{key}`` its
records (the live ``computed_data`` record shape), ``DELETE {id}/`` drops the run and its results. Reads need a
token, writes the ``signals:write`` scope. Bad input is a 400 naming the field: unknown instruments, an empty
range, a config document failing the config validation (the field is its path inside the document)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from feed.ticks import TickError, parse_time
from signals.backtest import progress
from signals.backtest.runs import MAX_BATCH_TICKS, BacktestInputError, create_run
from signals.models import BacktestRun
from webapi.errors import BadParameter, NotFound
from webapi.limits import LimitError, check_document, check_text, check_time
from webapi.params import Pagination, int_param, time_param

MAX_ITEMS = 100


class BacktestRequestSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=128)
    start_time = serializers.CharField(help_text="ISO-8601 with offset, or epoch seconds")
    end_time = serializers.CharField(help_text="ISO-8601 with offset, or epoch seconds; exclusive")
    instruments = serializers.ListField(child=serializers.CharField(), min_length=1, max_length=MAX_ITEMS,
                                        help_text="instrument keys or PREFIX@* patterns")
    configs = serializers.ListField(child=serializers.CharField(), required=False, max_length=MAX_ITEMS,
                                    help_text="config names (default: every enabled config)")
    config_documents = serializers.ListField(child=serializers.DictField(), required=False, max_length=20,
                                             help_text="config documents, validated as configs are")
    batch_ticks = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BATCH_TICKS, default=1,
                                           help_text="ticks per replayed batch: 1 replays each tick alone, as the "
                                                     "live service takes a feed it keeps up with")


class BacktestRunSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=BacktestRun.STATUSES)
    start_time = serializers.CharField()
    end_time = serializers.CharField()
    instruments = serializers.ListField(child=serializers.CharField())
    batch_ticks = serializers.IntegerField()
    configs = serializers.ListField(child=serializers.DictField())
    underlyings = serializers.ListField(child=serializers.CharField())
    progress = serializers.DictField()
    counts = serializers.DictField()
    errors = serializers.DictField(child=serializers.IntegerField(), help_text="failed computations per config")
    error = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    created_at = serializers.CharField()
    finished_at = serializers.CharField(allow_null=True)
    elapsed_s = serializers.FloatField()
    ticks_per_s = serializers.FloatField()


def _time(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
        raise BadParameter(f"{name} is required: ISO-8601 with offset, or epoch seconds", field=name)
    try:
        return check_time(parse_time(check_text(str(value), name)), name)
    except LimitError as exc:
        raise BadParameter.from_limit(exc, name) from None
    except (TickError, OverflowError, ValueError) as exc:
        raise BadParameter(f"{name}: {exc}", field=name) from None


def _texts(body: dict[str, Any], name: str, required: bool) -> list[str]:
    value = body.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value) or len(value) > MAX_ITEMS:
        raise BadParameter(f"{name} must be a list of 1 to {MAX_ITEMS} strings", field=name)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise BadParameter(f"{name}[{i}] must be a non-empty string", field=f"{name}[{i}]")
        try:
            check_text(item, f"{name}[{i}]")
        except LimitError as exc:
            raise BadParameter.from_limit(exc) from None
    return value


def _documents(body: dict[str, Any]) -> list[Any]:
    value = body.get("config_documents")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 20:
        raise BadParameter("config_documents must be a list of at most 20 config documents", field="config_documents")
    try:
        check_document(value, "config_documents")
    except LimitError as exc:
        raise BadParameter.from_limit(exc, "config_documents") from None
    return value


def _batch_ticks(body: dict[str, Any]) -> int:
    value = body.get("batch_ticks", 1)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_BATCH_TICKS:
        raise BadParameter(f"batch_ticks must be an integer from 1 to {MAX_BATCH_TICKS}", field="batch_ticks")
    return value


class BacktestListView(GenericAPIView):
    pagination_class = Pagination
    serializer_class = BacktestRunSerializer

    @extend_schema(summary="List backtest runs (newest first)", responses={200: BacktestRunSerializer(many=True)})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(BacktestRun.objects.all().order_by("-created_at"))
        return self.get_paginated_response([progress.summary(run) for run in page])

    @extend_schema(summary="Start a backtest run", request=BacktestRequestSerializer,
                   responses={202: BacktestRunSerializer,
                              400: OpenApiResponse(description="invalid body: field names what failed")})
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise BadParameter("the body must be a JSON object", field="body")
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > 128:
            raise BadParameter("name must be a string of at most 128 characters", field="name")
        try:
            check_text(name, "name")
            run = create_run(name=name, start=_time(body, "start_time"), end=_time(body, "end_time"),
                             instruments=_texts(body, "instruments", True), config_names=_texts(body, "configs", False),
                             config_documents=_documents(body), batch_ticks=_batch_ticks(body),
                             created_by=str(getattr(request.user, "sub", "") or "")[:150])
        except LimitError as exc:
            raise BadParameter.from_limit(exc, "name") from None
        except BacktestInputError as exc:
            raise BadParameter(str(exc), field=exc.field) from None
        return Response(progress.summary(run), status=status.HTTP_202_ACCEPTED)


def _run(pk: Any) -> BacktestRun:
    run = BacktestRun.objects.filter(id=pk).first()
    if run is None:
        raise NotFound(f"no backtest run with id {pk}")
    return run


class BacktestDetailView(GenericAPIView):
    serializer_class = BacktestRunSerializer

    @extend_schema(summary="A backtest run: status, progress, counts, errors",
                   responses={200: BacktestRunSerializer, 404: OpenApiResponse(description="no such run")})
    def get(self, request: Request, pk: Any) -> Response:
        run = _run(pk)
        progress.resume_stalled(run)  # a chunk whose worker died goes out again
        return Response(progress.summary(run))

    @extend_schema(summary="Drop a backtest run and its results",
                   responses={204: None, 404: OpenApiResponse(description="no such run")})
    def delete(self, request: Request, pk: Any) -> Response:
        run = _run(pk)
        run.delete()  # its states and records go with it (a chunk still running finds no run and commits nothing)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BacktestRecordsView(GenericAPIView):
    pagination_class = Pagination
    serializer_class = serializers.Serializer

    @extend_schema(
        summary="A backtest run's records of one instrument, in tick time order (live computed_data shape)",
        parameters=[OpenApiParameter("start_time", OpenApiTypes.DATETIME, description="from this tick time"),
                    OpenApiParameter("end_time", OpenApiTypes.DATETIME, description="before this tick time"),
                    OpenApiParameter("config_id", int, description="only this config's records")],
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="no such run")})
    def get(self, request: Request, pk: Any, instrument_key: str) -> Response:
        run = _run(pk)
        try:
            check_text(instrument_key, "instrument_key")
        except LimitError as exc:
            raise BadParameter.from_limit(exc) from None
        config_id = int_param(request, "config_id", -(2**63), 2**63 - 1)
        query = progress.records(run, instrument_key, time_param(request, "start_time"),
                                 time_param(request, "end_time"), config_id)
        page = self.paginate_queryset(query)
        return self.get_paginated_response([row.record for row in page])


urlpatterns = [
    path("backtests/", BacktestListView.as_view(), name="backtests"),
    path("backtests/<uuid:pk>/", BacktestDetailView.as_view(), name="backtest-detail"),
    path("backtests/<uuid:pk>/records/<str:instrument_key>", BacktestRecordsView.as_view(), name="backtest-records"),
]
