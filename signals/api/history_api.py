"""Bars and indicators endpoints (docs/REFERENCE.md §6, issue 5), under /api/v2/signals/.

* ``historical/bars/{instrument_key}?timeframe=&start_time=&end_time=`` — bars starting in ``[start_time,
  end_time)`` from `signals.bars.store` (Redis cache, continuous aggregates or the one-minute rollup, date_bin
  over raw ticks, the open bar): ``{instrument_key, timeframe, start_time, end_time, count, bars: [{time, open, high, low, close, volume,
  oi}]}``.
* ``historical/indicators/{instrument_key}?timeframe=&start_time=&end_time=&indicators=`` — ``indicators`` is a
  JSON list in the config's ``technical_indicators`` form; values for every bar of the range, computed with
  ``warmup_bars`` bars before ``start_time`` so that the first value is right: ``{instrument_key, timeframe,
  start_time, end_time, output_keys, warmup_bars, warmup_available, count, values: [{time, <output_key>: number |
  null, …}]}``.
* ``realtime/indicators/{instrument_key}?timeframe=`` — the latest values computed by the configs that run
  indicators on that instrument and timeframe, merged by output key (newest first): ``{instrument_key, timeframe,
  timestamp, bar_time, values: {output_key: number | null}, configs: [{config_id, config_name, timestamp,
  bar_time}]}``.
* ``historical/available-timeframes/{instrument_key}`` — ``{instrument_key, first_time, last_time, storage,
  timeframes: [{timeframe, source}], custom}``.

Times are ISO-8601 with an offset (or epoch seconds/ms) in, ISO-8601 UTC out. ``end_time`` defaults to just after
the newest tick, ``start_time`` to ``SIGNAL_HISTORY_DEFAULT_BARS`` bars before ``end_time``. A bad timeframe, time,
range or indicator list answers 400 naming the field; an instrument never seen answers 404.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feed.redis_client import get_redis
from indicators.specs import IndicatorConfigError, validate_indicators
from indicators.timeframes import STANDARD_TIMEFRAME_NAMES, Timeframe, parse_timeframe
from signals.api.realtime import SOURCE_FIELD, instrument_param, latest_or_stored
from signals.bars import indicator_history, rollup, timescale
from signals.bars.rows import bar_dicts
from signals.bars.store import get_service
from signals.models import InstrumentRecord
from webapi.errors import BadParameter, NotFound
from webapi.lane import QueryOnly, ReadView
from webapi.limits import LimitError, parse_json
from webapi.params import time_param

# --- parameters -------------------------------------------------------------------------------------------------


def timeframe_param(request: Request | QueryOnly) -> Timeframe:
    text = request.query_params.get("timeframe")
    if text is None or text.strip() == "":
        raise BadParameter("timeframe is required, e.g. 1m, 5m, 7m, custom_13, 1h, 1d, 1w, 1M", field="timeframe")
    try:
        return parse_timeframe(text)
    except ValueError as exc:
        raise BadParameter(str(exc), field="timeframe") from None


def _time_param(request: Request, name: str) -> float | None:
    value = time_param(request, name)
    return None if value is None else value.timestamp()


def known_instrument(key: str) -> None:
    """404 unless the instrument is in the registry or has ticks."""
    if InstrumentRecord.objects.filter(key=key).exists():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM signal_ticks WHERE instrument_key = %s LIMIT 1", [key])
        if cursor.fetchone() is not None:
            return
    raise NotFound(f"no data for instrument {key}")


def _estimate_bars(tf: Timeframe, start: float, end: float) -> float:
    span = end - start
    if tf.is_intraday:
        if span <= 86_400:
            return span / (tf.count * 60)
        return span / 86_400 * max(1.0, settings.SIGNAL_BARS_SESSION_MINUTES / tf.count)
    days = {"day": 1, "week": 7, "month": 28}[tf.unit]
    return span / (86_400 * days)


def range_params(request: Request, key: str, tf: Timeframe) -> tuple[float, float]:
    start = _time_param(request, "start_time")
    end = _time_param(request, "end_time")
    service = get_service()
    if end is None:
        _, newest = service.data_range(key)
        end = (newest.timestamp() if newest else datetime.now(UTC).timestamp()) + 1e-3
    if start is None:
        grid = service.grid(tf)
        start = float(grid.bucket(end))
        for _ in range(int(settings.SIGNAL_HISTORY_DEFAULT_BARS) - 1):
            start = float(grid.bucket(start - 1e-3)) if tf.is_intraday else float(
                grid.midnight(grid.previous_chunk(grid.chunk_of(start))))
    if start >= end:
        raise BadParameter("start_time must be before end_time", field="start_time")
    estimate = _estimate_bars(tf, start, end)
    limit = int(settings.SIGNAL_HISTORY_MAX_BARS)
    if estimate > limit:
        raise BadParameter(f"range too large: about {math.ceil(estimate)} {tf.name} bars, at most {limit} per "
                           "request; narrow start_time/end_time or use a larger timeframe", field="end_time")
    return start, end


def indicators_param(request: Request) -> list[dict[str, Any]]:
    text = request.query_params.get("indicators")
    if text is None or text.strip() == "":
        raise BadParameter('indicators is required: a JSON list such as [{"name": "rsi", "parameters": '
                           '{"length": 14}}]', field="indicators")
    try:
        specs = parse_json(text, "indicators")
    except LimitError as exc:
        raise BadParameter(f"indicators is not valid: {exc}", field="indicators") from None
    if not isinstance(specs, list) or not specs:
        raise BadParameter("indicators must be a non-empty JSON list of {name, parameters, output_key}",
                           field="indicators")
    errors = validate_indicators(specs, path="indicators")
    if errors:
        raise BadParameter("; ".join(f"{field}: {message}" for field, message in errors), field=errors[0][0])
    return specs


class FastJSONRenderer(JSONRenderer):
    """The same JSON, encoded with orjson: a month of indicator rows renders several times faster."""

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: dict[str, Any] | None = None) -> bytes:
        return b"" if data is None else orjson.dumps(data)


class HistoryView(APIView):
    renderer_classes = [FastJSONRenderer]


# --- schema -------------------------------------------------------------------------------------------------------

KEY_PARAM = OpenApiParameter("instrument_key", OpenApiTypes.STR, OpenApiParameter.PATH,
                             description="EXCHANGE@SYMBOL@PRODUCT[@EXPIRY[@RIGHT@STRIKE]], e.g. NSE@NIFTY@index")
TIMEFRAME_PARAM = OpenApiParameter("timeframe", OpenApiTypes.STR, required=True,
                                   description="1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d 1w 1M, custom Nm/Nh (7m), "
                                               "custom_N (custom_13), 5minute/1hour/1day")
RANGE_PARAMS = [
    OpenApiParameter("start_time", OpenApiTypes.DATETIME, description="ISO-8601 with offset, or epoch seconds/ms "
                     "(default: SIGNAL_HISTORY_DEFAULT_BARS bars before end_time)"),
    OpenApiParameter("end_time", OpenApiTypes.DATETIME, description="exclusive; default just after the newest tick"),
]
INDICATORS_PARAM = OpenApiParameter(
    "indicators", OpenApiTypes.STR, required=True,
    description='JSON list in the config\'s technical_indicators form, e.g. [{"name": "rsi", "parameters": '
                '{"length": 14}, "output_key": "rsi_14"}, {"name": "macd"}]')
ERRORS = {400: OpenApiResponse(description='bad parameter: {"error": {"code", "message", "field"}}'),
          404: OpenApiResponse(description="instrument never seen")}

BAR_FIELDS = {
    "time": serializers.DateTimeField(help_text="bar start"), "open": serializers.FloatField(),
    "high": serializers.FloatField(), "low": serializers.FloatField(), "close": serializers.FloatField(),
    "volume": serializers.FloatField(allow_null=True, help_text="traded quantity in the bar"),
    "oi": serializers.FloatField(allow_null=True, help_text="last open interest in the bar"),
}
BarsSerializer = inline_serializer("HistoricalBars", {
    "instrument_key": serializers.CharField(), "timeframe": serializers.CharField(),
    "start_time": serializers.DateTimeField(), "end_time": serializers.DateTimeField(),
    "count": serializers.IntegerField(), "bars": inline_serializer("Bar", BAR_FIELDS, many=True),
})
IndicatorSeriesSerializer = inline_serializer("HistoricalIndicators", {
    "instrument_key": serializers.CharField(), "timeframe": serializers.CharField(),
    "start_time": serializers.DateTimeField(), "end_time": serializers.DateTimeField(),
    "output_keys": serializers.ListField(child=serializers.CharField()),
    "warmup_bars": serializers.IntegerField(help_text="bars used before start_time for each value"),
    "warmup_available": serializers.IntegerField(help_text="of which existed (fewer: early values are partial)"),
    "count": serializers.IntegerField(),
    "values": serializers.ListField(child=serializers.DictField(), help_text="[{time, <output_key>: number|null}]"),
})
RealtimeIndicatorsSerializer = inline_serializer("RealtimeIndicators", {
    "instrument_key": serializers.CharField(), "timeframe": serializers.CharField(),
    "timestamp": serializers.DateTimeField(help_text="tick time of the newest computation"),
    "bar_time": serializers.DateTimeField(help_text="start of the bar evaluated"),
    "values": serializers.DictField(child=serializers.FloatField(allow_null=True)),
    "configs": serializers.ListField(child=serializers.DictField()),
    "source": SOURCE_FIELD,
})
TimeframesSerializer = inline_serializer("AvailableTimeframes", {
    "instrument_key": serializers.CharField(),
    "first_time": serializers.DateTimeField(allow_null=True), "last_time": serializers.DateTimeField(allow_null=True),
    "storage": serializers.CharField(help_text="timescaledb or postgresql"),
    "timeframes": serializers.ListField(child=serializers.DictField(), help_text="[{timeframe, source}]"),
    "custom": serializers.CharField(),
})


# --- views --------------------------------------------------------------------------------------------------------


class HistoricalBarsView(HistoryView):
    @extend_schema(summary="Historical OHLCV + OI bars of any timeframe",
                   parameters=[KEY_PARAM, TIMEFRAME_PARAM, *RANGE_PARAMS], responses={200: BarsSerializer, **ERRORS})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = instrument_param(instrument_key)
        tf = timeframe_param(request)
        known_instrument(key)
        start, end = range_params(request, key, tf)
        bars = bar_dicts(get_service().bars(key, tf, start, end))
        return Response({"instrument_key": key, "timeframe": tf.name, "start_time": indicator_history.iso(start),
                         "end_time": indicator_history.iso(end), "count": len(bars), "bars": bars})


class HistoricalIndicatorsView(HistoryView):
    @extend_schema(summary="Technical indicators over historical bars (with warm-up before start_time)",
                   parameters=[KEY_PARAM, TIMEFRAME_PARAM, *RANGE_PARAMS, INDICATORS_PARAM],
                   responses={200: IndicatorSeriesSerializer, **ERRORS})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = instrument_param(instrument_key)
        tf = timeframe_param(request)
        specs = indicators_param(request)
        known_instrument(key)
        start, end = range_params(request, key, tf)
        try:
            series = indicator_history.indicator_series(key, tf.name, start, end, specs)
        except IndicatorConfigError as exc:
            field, message = exc.errors[0] if exc.errors else ("indicators", str(exc))
            raise BadParameter(message, field=field.replace("technical_indicators", "indicators", 1)) from None
        return Response({"instrument_key": key, "timeframe": tf.name, "start_time": indicator_history.iso(start),
                         "end_time": indicator_history.iso(end), "output_keys": series["output_keys"],
                         "warmup_bars": series["warmup_bars"], "warmup_available": series["warmup_available"],
                         "count": len(series["values"]), "values": series["values"]})


@extend_schema_view(get=extend_schema(
    summary="Latest indicator values of an instrument and timeframe", parameters=[KEY_PARAM, TIMEFRAME_PARAM],
    responses={200: RealtimeIndicatorsSerializer, 400: ERRORS[400],
               404: OpenApiResponse(description="no indicators computed for it at this timeframe")}))
class RealtimeIndicatorsView(ReadView):
    renderer_classes = [FastJSONRenderer]

    @staticmethod
    def read(request: Request | QueryOnly, instrument_key: str) -> dict[str, Any]:
        key = instrument_param(instrument_key)
        tf = timeframe_param(request)
        entries, source = latest_or_stored(lambda: indicator_history.latest_entries(get_redis(), key, tf.name),
                                           lambda: indicator_history.stored_entries(key, tf.name))
        merged = indicator_history.merged_latest(entries)
        if merged is None:
            raise NotFound(f"no indicators computed for {key} at timeframe {tf.name} (no config with "
                           "technical_indicators on this interval has run for it recently)")
        return {**merged, "source": source}


class AvailableTimeframesView(HistoryView):
    @extend_schema(summary="Timeframes served for an instrument, their source, and the data range held",
                   parameters=[KEY_PARAM], responses={200: TimeframesSerializer, **ERRORS})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = instrument_param(instrument_key)
        known_instrument(key)
        service = get_service()
        first, last = service.data_range(key)
        with connection.cursor() as cursor:
            storage = "timescaledb" if timescale.installed_version(cursor) else "postgresql"
        timeframes = []
        for name in STANDARD_TIMEFRAME_NAMES:
            source = service.source_for(name)
            label = ("raw_ticks" if source is None else f"rollup:{source}" if source == rollup.TABLE
                     else f"continuous_aggregate:{source}")
            timeframes.append({"timeframe": name, "source": label})
        return Response({
            "instrument_key": key,
            "first_time": first.astimezone(UTC).isoformat() if first else None,
            "last_time": last.astimezone(UTC).isoformat() if last else None,
            "storage": storage,
            "timeframes": timeframes,
            "custom": "any Nm or Nh of 1-1440 minutes (e.g. 7m, 3h), custom_N (N minutes), 5minute, 1hour, 1day",
        })


urlpatterns = [
    path("historical/bars/<str:instrument_key>", HistoricalBarsView.as_view(), name="historical-bars"),
    path("historical/indicators/<str:instrument_key>", HistoricalIndicatorsView.as_view(),
         name="historical-indicators"),
    path("realtime/indicators/<str:instrument_key>", RealtimeIndicatorsView.as_view(), name="realtime-indicators"),
    path("historical/available-timeframes/<str:instrument_key>", AvailableTimeframesView.as_view(),
         name="available-timeframes"),
]
