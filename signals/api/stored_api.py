"""Stored results and multi-instrument latest values (docs/REFERENCE.md §6, issue 18), under /api/v2/signals/.

* ``historical/computed/{instrument_key}?config_id=&name=&computation_type=&start_time=&end_time=`` — the results
  the pipeline stored for an instrument (``signal_computed``: indicators, functions, moneyness; and for options the
  typed Greeks of ``signal_greeks``, one ``option_greeks`` point per tick and config), oldest first.
* ``historical/moneyness/{underlying}/greeks/{level}?expiry_date=&timeframe=&start_time=&end_time=`` — a level's
  calls, puts and averages per bucket (`signals.options.level_history`).
* ``realtime/price?keys=`` and ``realtime/greeks?keys=`` — the latest values of up to ``SIGNAL_API_MAX_KEYS``
  instruments in one call; keys without a value are listed in ``missing``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

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
from rest_framework.request import Request
from rest_framework.response import Response

from feed import keys as redis_keys
from feed.instruments import InstrumentKeyError, normalise_key, parse_instrument_key
from feed.latest import LatestStore
from feed.redis_client import get_redis
from greeks import GREEK_NAMES
from signals.api.greeks_api import (
    CONFIG_ID,
    EXPIRY,
    STRIKE_STEP,
    config_id_param,
    expiry_param,
    level_param,
    strike_step_param,
    timeframe_param,
    underlying_param,
)
from signals.api.history_api import FastJSONRenderer, HistoryView, known_instrument
from signals.api.realtime import SOURCE_FIELD, TICK_FIELDS, instrument_param, latest_or_stored
from signals.options import level_history, stored
from signals.options.pricing import STALE_FLAG
from webapi.errors import BadParameter
from webapi.lane import QueryOnly, ReadView
from webapi.limits import LimitError, check_text
from webapi.params import time_param

DEFAULT_SPAN = timedelta(days=1)
COMPUTATION_TYPES = ("greeks", "technical_indicators", "internal_function", "external_function", "moneyness")
_GREEK_ROW = ("price_field", *GREEK_NAMES, "option_price", "underlying_price", "time_to_expiry", "sigma",
              "sigma_source", "status")


# --- parameters -------------------------------------------------------------------------------------------------
def stored_range(request: Request, newest: datetime | None) -> tuple[datetime, datetime]:
    """[start, end): ``end`` defaults to just after ``newest`` (or now), ``start`` to a day before ``end``."""
    start, end = time_param(request, "start_time"), time_param(request, "end_time")
    if end is None:
        end = start + DEFAULT_SPAN if start else (newest + timedelta(microseconds=1) if newest else datetime.now(UTC))
    start = start or end - DEFAULT_SPAN
    if start >= end:
        raise BadParameter("start_time must be before end_time", field="start_time")
    return start, end


def text_param(request: Request, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        check_text(value, name)
    except LimitError as exc:
        raise BadParameter.from_limit(exc) from None
    if choices is not None and value not in choices:
        raise BadParameter(f"{name} must be one of {', '.join(choices)}", field=name)
    return value[:128]


def keys_param(request: Request | QueryOnly) -> list[str]:
    """``keys``: comma-separated instrument keys (repeated ``keys=`` also accepted), at most SIGNAL_API_MAX_KEYS."""
    raw = [part.strip() for value in request.query_params.getlist("keys") for part in value.split(",")]
    raw = [part for part in raw if part]
    limit = int(settings.SIGNAL_API_MAX_KEYS)
    if not raw:
        raise BadParameter(f"keys is required: up to {limit} comma-separated instrument keys", field="keys")
    if len(raw) > limit:
        raise BadParameter(f"{len(raw)} keys given, at most {limit} per request", field="keys")
    out: list[str] = []
    for part in raw:
        try:
            key = normalise_key(check_text(part, "keys"))
        except (InstrumentKeyError, LimitError) as exc:
            raise BadParameter(f"keys: {exc}", field="keys") from None
        if key not in out:
            out.append(key)
    return out


# --- reads --------------------------------------------------------------------------------------------------------
def newest_tick_time(key: str) -> datetime | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(time) FROM signal_ticks WHERE instrument_key = %s", [key])
        return cursor.fetchone()[0]


def computed_rows(key: str, start: datetime, end: datetime, filters: dict[str, Any], limit: int
                  ) -> list[dict[str, Any]]:
    where = ["instrument_key = %s", "time >= %s", "time < %s"]
    params: list[Any] = [key, start, end]
    for column in ("config_id", "name", "computation_type"):
        if filters.get(column) is not None:
            where.append(f"{column} = %s")
            params.append(filters[column])
    sql = ("SELECT time, source_id, config_id, computation_type, name, results, success, error, execution_time_ms "
           f"FROM signal_computed WHERE {' AND '.join(where)} "
           "ORDER BY time, source_id, config_id, computation_type, name LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        rows = cursor.fetchall()
    return [{"time": time.isoformat(), "source_id": source_id, "config_id": config_id,
             "computation_type": kind, "name": name,
             "results": json.loads(results) if isinstance(results, str) else results,
             "success": success, "error": error or None, "execution_time_ms": ms}
            for time, source_id, config_id, kind, name, results, success, error, ms in rows]


def greeks_rows(key: str, start: datetime, end: datetime, config_id: int | None, limit: int) -> list[dict[str, Any]]:
    """``option_greeks`` points from ``signal_greeks``: one per tick and config, ``results`` by price field."""
    where = "instrument_key = %s AND time >= %s AND time < %s" + (" AND config_id = %s" if config_id else "")
    params: list[Any] = [key, start, end, *([config_id] if config_id else [])]
    sql = (f"SELECT time, source_id, config_id, {', '.join(_GREEK_ROW)} FROM signal_greeks WHERE {where} "
           "ORDER BY time, source_id, config_id, price_field LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit * len(("ltp", "open", "high", "low", "close"))])
        rows = cursor.fetchall()
    points: dict[tuple[Any, str, int], dict[str, Any]] = {}
    for time, source_id, cid, *values in rows:
        row = dict(zip(_GREEK_ROW, values, strict=True))
        status = row.pop("status") or ""
        row.update(status=status.split("|")[0], stale_underlying=status.endswith("|" + STALE_FLAG),
                   sigma_source=row["sigma_source"] or None)
        point = points.setdefault((time, source_id, cid), {
            "time": time.isoformat(), "source_id": source_id, "config_id": cid, "computation_type": "greeks",
            "name": "option_greeks", "results": {}, "success": True, "error": None, "execution_time_ms": None})
        point["results"][row.pop("price_field")] = row
    return list(points.values())[:limit]


# --- schema -----------------------------------------------------------------------------------------------------
RANGE = [OpenApiParameter("start_time", OpenApiTypes.DATETIME, description="default end_time - 1 day"),
         OpenApiParameter("end_time", OpenApiTypes.DATETIME,
                          description="exclusive; default just after the instrument's newest stored tick")]
KEY = OpenApiParameter("instrument_key", OpenApiTypes.STR, OpenApiParameter.PATH,
                       description="EXCHANGE@SYMBOL@PRODUCT[@EXPIRY[@RIGHT@STRIKE]]")
KEYS = OpenApiParameter("keys", OpenApiTypes.STR, required=True,
                        description="comma-separated instrument keys, at most SIGNAL_API_MAX_KEYS (default 50)")
ERRORS = {400: OpenApiResponse(description="bad parameter"),
          404: OpenApiResponse(description="instrument or underlying unknown, or expiry not listed")}
ComputedSerializer = inline_serializer("HistoricalComputed", {
    "instrument_key": serializers.CharField(), "start_time": serializers.DateTimeField(),
    "end_time": serializers.DateTimeField(), "truncated": serializers.BooleanField(),
    "count": serializers.IntegerField(),
    "series": inline_serializer("HistoricalComputedPoint", {
        "time": serializers.DateTimeField(help_text="tick time"), "source_id": serializers.CharField(),
        "config_id": serializers.IntegerField(), "computation_type": serializers.CharField(),
        "name": serializers.CharField(), "results": serializers.JSONField(allow_null=True),
        "success": serializers.BooleanField(), "error": serializers.CharField(allow_null=True),
        "execution_time_ms": serializers.FloatField(allow_null=True),
    }, many=True),
})
LevelHistorySerializer = inline_serializer("HistoricalMoneynessLevel", {
    "underlying": serializers.CharField(), "expiry_date": serializers.DateField(), "level": serializers.CharField(),
    "timeframe": serializers.CharField(), "start_time": serializers.DateTimeField(),
    "end_time": serializers.DateTimeField(), "truncated": serializers.BooleanField(),
    "source": serializers.CharField(help_text="stored, or recomputed (priced from stored ticks for this answer)"),
    "series": serializers.ListField(child=serializers.DictField(),
                                    help_text="[{time, timestamp, atm_strike, spot, strikes, calls, puts, "
                                              "averages: {call, put}, reason?}]"),
})
MultiSerializer = inline_serializer("RealtimeMany", {
    "count": serializers.IntegerField(), "results": serializers.ListField(child=serializers.DictField()),
    "missing": serializers.ListField(child=serializers.CharField(), help_text="keys with no value"),
    "source": SOURCE_FIELD,
})


# --- views --------------------------------------------------------------------------------------------------------
class HistoricalComputedView(HistoryView):
    @extend_schema(summary="Stored results (indicators, functions, moneyness, Greeks) of an instrument over time",
                   parameters=[KEY, CONFIG_ID, *RANGE,
                               OpenApiParameter("name", OpenApiTypes.STR, description="computation name"),
                               OpenApiParameter("computation_type", OpenApiTypes.STR, enum=list(COMPUTATION_TYPES))],
                   responses={200: ComputedSerializer, **ERRORS})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = instrument_param(instrument_key)
        filters = {"config_id": config_id_param(request), "name": text_param(request, "name"),
                   "computation_type": text_param(request, "computation_type", COMPUTATION_TYPES)}
        known_instrument(key)
        start, end = stored_range(request, newest_tick_time(key))
        limit = int(settings.SIGNAL_GREEKS_HISTORY_MAX_POINTS)
        series = [] if filters["computation_type"] == "greeks" else computed_rows(key, start, end, filters, limit + 1)
        if "@options@" in key and filters["computation_type"] in (None, "greeks") and \
                filters["name"] in (None, "option_greeks"):
            series = sorted(series + greeks_rows(key, start, end, filters["config_id"], limit + 1),
                            key=lambda p: (p["time"], p["source_id"], p["config_id"], p["computation_type"]))
        return Response({"instrument_key": key, "start_time": start.isoformat(), "end_time": end.isoformat(),
                         "truncated": len(series) > limit, "count": min(len(series), limit),
                         "series": series[:limit]})


class HistoricalLevelView(HistoryView):
    @extend_schema(summary="A moneyness level's call/put Greeks and averages over time",
                   parameters=[EXPIRY, STRIKE_STEP, CONFIG_ID, *RANGE,
                               OpenApiParameter("timeframe", OpenApiTypes.STR, description="bucket (default 1m)")],
                   responses={200: LevelHistorySerializer, **ERRORS})
    def get(self, request: Request, underlying: str, level: str) -> Response:
        key = underlying_param(underlying)
        level = level_param(level)
        step = strike_step_param(request)
        tf = timeframe_param(request, "1m")
        config_id = config_id_param(request)
        expiry = expiry_param(request, key)
        start, end = stored_range(request, newest_tick_time(key))
        series, source = level_history.level_series(key, expiry, level, tf, start, end, config_id, step)
        limit = int(settings.SIGNAL_GREEKS_HISTORY_MAX_POINTS)
        return Response({"underlying": key, "expiry_date": expiry.isoformat(), "level": level, "timeframe": tf.name,
                         "start_time": start.isoformat(), "end_time": end.isoformat(),
                         "truncated": len(series) > limit, "source": source, "series": series[:limit]})


def _price_body(key: str, tick: dict[str, Any]) -> dict[str, Any]:
    return {"instrument_key": key, "timestamp": tick["timestamp"], **{name: tick.get(name) for name in TICK_FIELDS}}


def _prices_redis(keys: list[str]) -> dict[str, dict[str, Any]]:
    found = LatestStore(get_redis()).get_many(keys)  # one HGET per key: no multi-key command (Redis Cluster)
    return {key: tick for key, tick in zip(keys, found, strict=True) if tick is not None}


def _prices_database(keys: list[str]) -> dict[str, dict[str, Any]]:
    return {key: tick for key in keys if (tick := stored.latest_tick(key)) is not None}


def _greeks_redis(keys: list[str]) -> dict[str, dict[str, Any]]:
    pipe = get_redis().pipeline(transaction=False)
    for key in keys:
        pipe.get(redis_keys.latest_result("greeks", key))
    return {key: json.loads(raw) for key, raw in zip(keys, pipe.execute(), strict=True) if raw is not None}


def _many(found: dict[str, dict[str, Any]], keys: list[str], source: str, shape: Any) -> dict[str, Any]:
    results = [shape(key, found[key]) for key in keys if key in found]
    return {"count": len(results), "results": results, "missing": [k for k in keys if k not in found],
            "source": source}


@extend_schema_view(get=extend_schema(summary="Latest tick values of several instruments", parameters=[KEYS],
                                      operation_id="v2_signals_realtime_prices",
                                      responses={200: MultiSerializer, 400: ERRORS[400]}))
class RealtimePricesView(ReadView):
    renderer_classes = [FastJSONRenderer]

    @staticmethod
    def read(request: Request | QueryOnly) -> dict[str, Any]:
        keys = keys_param(request)
        found, source = latest_or_stored(lambda: _prices_redis(keys), lambda: _prices_database(keys))
        return _many(found, keys, source, _price_body)


@extend_schema_view(get=extend_schema(summary="Latest Greeks of several options", parameters=[KEYS],
                                      operation_id="v2_signals_realtime_greeks_many",
                                      responses={200: MultiSerializer, 400: ERRORS[400]}))
class RealtimeGreeksManyView(ReadView):
    renderer_classes = [FastJSONRenderer]

    @staticmethod
    def read(request: Request | QueryOnly) -> dict[str, Any]:
        keys = keys_param(request)
        for key in keys:
            if not parse_instrument_key(key).is_option:
                raise BadParameter(f"{key} is not an option; Greeks exist for option keys only", field="keys")
        found, source = latest_or_stored(lambda: _greeks_redis(keys), lambda: stored.latest_greeks(keys))
        return _many(found, keys, source, lambda key, body: {k: v for k, v in body.items() if k != "ts"})


urlpatterns = [
    path("historical/computed/<str:instrument_key>", HistoricalComputedView.as_view(), name="historical-computed"),
    path("historical/moneyness/<str:underlying>/greeks/<str:level>", HistoricalLevelView.as_view(),
         name="historical-moneyness-greeks"),
    path("realtime/price", RealtimePricesView.as_view(), name="realtime-prices"),
    path("realtime/greeks", RealtimeGreeksManyView.as_view(), name="realtime-greeks-many"),
]
