"""Greeks, moneyness and option-chain endpoints (docs/REFERENCE.md §6, issue 3), under /api/v2/signals/.

Realtime answers come from the latest Greeks cached per option by the pipeline (and the instrument registry for
chains); historical ones from the typed ``signal_greeks`` table, bucketed with ``date_bin`` aligned to the session
open (last value per bucket). Bad parameters answer 400 naming the field; unknown instruments 404.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
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
from rest_framework.views import APIView

from feed import keys
from feed.instruments import Instrument, InstrumentKeyError, parse_expiry, parse_instrument_key
from feed.redis_client import get_redis
from feed.ticks import QUOTE_FIELDS
from greeks import GREEK_NAMES
from indicators.timeframes import parse_timeframe
from signals import instrument_registry
from signals.api.realtime import SOURCE_FIELD, latest_or_stored
from signals.options import history as greeks_history
from signals.options import levels, stored
from signals.options.chains import ChainSnapshot, load_chain
from webapi.errors import BadParameter, NotFound
from webapi.lane import QueryOnly, ReadView
from webapi.limits import LimitError, check_date
from webapi.params import int_param, time_param

DEFAULT_HISTORY_SPAN = timedelta(days=1)


# --- parameters -------------------------------------------------------------------------------------------------
def option_param(value: str) -> Instrument:
    try:
        inst = parse_instrument_key(value)
    except InstrumentKeyError as exc:
        raise BadParameter(str(exc), field="instrument_key") from None
    if not inst.is_option:
        raise BadParameter(f"{inst.key} is not an option; Greeks exist for option keys only",
                           field="instrument_key")
    return inst


def underlying_param(value: str) -> str:
    try:
        inst = parse_instrument_key(value)
    except InstrumentKeyError as exc:
        raise BadParameter(str(exc), field="underlying") from None
    if inst.product not in ("index", "equities"):
        raise BadParameter(f"{inst.key} is not an underlying; use the index or equity key, e.g. NSE@NIFTY@index",
                           field="underlying")
    return inst.key


def expiry_param(request: Request | QueryOnly, underlying: str) -> date:
    text = request.query_params.get("expiry_date")
    if not text:
        raise BadParameter("expiry_date is required (e.g. 2025-06-26)", field="expiry_date")
    try:
        expiry = check_date(parse_expiry(text))
    except (InstrumentKeyError, LimitError) as exc:
        raise BadParameter(str(exc), field="expiry_date") from None
    if not instrument_registry.chain_instruments(underlying, expiry):
        if not instrument_registry.underlying_known(underlying):
            raise NotFound(f"no instruments known for underlying {underlying}")
        listed = ", ".join(e.isoformat() for e in instrument_registry.expiries(underlying)[:20]) or "none"
        raise NotFound(f"no options of {underlying} expiring on {expiry.isoformat()} (listed expiries: {listed})")
    return expiry


def level_param(value: str) -> str:
    try:
        return levels.parse_level(value)
    except levels.LevelError as exc:
        raise BadParameter(str(exc), field="level") from None


def strike_step_param(request: Request | QueryOnly) -> float | None:
    text = request.query_params.get("strike_step")
    if not text:
        return None
    try:
        step = float(text)
    except ValueError:
        step = float("nan")
    if not step > 0 or step == float("inf"):
        raise BadParameter(f"strike_step {text!r} must be a positive number", field="strike_step")
    return step


def timeframe_param(request: Request, default: str | None) -> Any:
    text = request.query_params.get("timeframe") or default
    if not text:
        return None
    try:
        return parse_timeframe(text)
    except ValueError as exc:
        raise BadParameter(str(exc), field="timeframe") from None


def time_range(request: Request) -> tuple[datetime, datetime]:
    start, end = time_param(request, "start_time"), time_param(request, "end_time")
    end = end or (start + DEFAULT_HISTORY_SPAN if start else datetime.now(UTC))
    start = start or end - DEFAULT_HISTORY_SPAN
    if start >= end:
        raise BadParameter("start_time must be before end_time", field="start_time")
    return start, end


def price_field_param(request: Request) -> str:
    field = request.query_params.get("price_field") or "ltp"
    if field not in QUOTE_FIELDS:
        raise BadParameter(f"price_field must be one of {', '.join(QUOTE_FIELDS)}", field="price_field")
    return field


def config_id_param(request: Request) -> int | None:
    return int_param(request, "config_id", 1, 2**31 - 1)


# --- schema -----------------------------------------------------------------------------------------------------
EXPIRY = OpenApiParameter("expiry_date", OpenApiTypes.DATE, required=True, description="Option expiry, 2025-06-26")
TIMEFRAME = OpenApiParameter("timeframe", OpenApiTypes.STR, description="Bucket size (1m 5m 1h 1d custom_13 ...); "
                             "last value per bucket")
START = OpenApiParameter("start_time", OpenApiTypes.DATETIME, description="ISO-8601 with offset (default end - 1 day)")
END = OpenApiParameter("end_time", OpenApiTypes.DATETIME, description="ISO-8601 with offset (default now)")
PRICE_FIELD = OpenApiParameter("price_field", OpenApiTypes.STR, enum=list(QUOTE_FIELDS),
                               description="Which price the Greeks were solved from (default ltp)")
CONFIG_ID = OpenApiParameter("config_id", OpenApiTypes.INT, description="Only rows of this config")
STRIKE_STEP = OpenApiParameter("strike_step", OpenApiTypes.NUMBER,
                               description="ITMn/OTMn in multiples of this step instead of listed strikes")
ERRORS = {400: OpenApiResponse(description="bad parameter: {error: {code, message, field}}"),
          404: OpenApiResponse(description="unknown instrument, or nothing computed yet")}

def _greeks_fields() -> dict[str, serializers.Field]:
    return {name: serializers.FloatField(allow_null=True) for name in GREEK_NAMES}


RealtimeGreeksSerializer = inline_serializer("RealtimeGreeks", {
    "instrument_key": serializers.CharField(),
    "timestamp": serializers.DateTimeField(),
    "price_field": serializers.CharField(),
    "greeks": inline_serializer("Greeks", _greeks_fields()),
    "underlying_key": serializers.CharField(),
    "underlying_price": serializers.FloatField(allow_null=True),
    "option_price": serializers.FloatField(allow_null=True),
    "oi": serializers.IntegerField(allow_null=True, required=False, help_text="open interest of the tick"),
    "model_price": serializers.FloatField(allow_null=True),
    "sigma": serializers.FloatField(allow_null=True),
    "sigma_source": serializers.ChoiceField(choices=["implied", "indvix"], allow_null=True),
    "status": serializers.CharField(),
    "stale_underlying": serializers.BooleanField(),
    "reason": serializers.CharField(allow_null=True),
    "time_to_expiry": serializers.FloatField(allow_null=True),
    "model": serializers.CharField(),
    "fields": serializers.DictField(help_text="Every configured price field's results"),
    "source": SOURCE_FIELD,
})


# declared with type(): the Greek fields come from GREEK_NAMES
MoneynessOptionSerializer = type("MoneynessOptionSerializer", (serializers.Serializer,), {
    "instrument_key": serializers.CharField(allow_null=True),
    "strike": serializers.FloatField(),
    **_greeks_fields(),
    "option_price": serializers.FloatField(allow_null=True),
    "underlying_price": serializers.FloatField(allow_null=True),
    "sigma_source": serializers.CharField(allow_null=True),
    "oi": serializers.IntegerField(allow_null=True, required=False, help_text="open interest of the latest tick"),
    "status": serializers.CharField(help_text="ok, below_intrinsic, ..., no_greeks (none computed), not_listed"),
    "stale_underlying": serializers.BooleanField(required=False),
    "timestamp": serializers.DateTimeField(allow_null=True),
})
MoneynessAverageSerializer = type("MoneynessAverageSerializer", (serializers.Serializer,), {
    **_greeks_fields(),
    "count": serializers.IntegerField(help_text="options with Greeks in the average"),
})


def _option_view(**kwargs: Any) -> serializers.Serializer:
    return MoneynessOptionSerializer(**kwargs)


def _average() -> serializers.Serializer:
    return MoneynessAverageSerializer()


LevelSerializer = inline_serializer("MoneynessLevel", {
    "underlying": serializers.CharField(), "expiry_date": serializers.DateField(), "level": serializers.CharField(),
    "model": serializers.CharField(), "spot": serializers.FloatField(allow_null=True),
    "spot_key": serializers.CharField(), "atm_strike": serializers.FloatField(allow_null=True),
    "timestamp": serializers.DateTimeField(allow_null=True),
    "strikes": serializers.ListField(child=serializers.FloatField()),
    "calls": _option_view(many=True), "puts": _option_view(many=True),
    "averages": inline_serializer("MoneynessAverages", {"call": _average(), "put": _average()}),
    "reason": serializers.CharField(required=False),
    "source": SOURCE_FIELD,
})
AtmIvSerializer = inline_serializer("AtmIv", {
    "underlying": serializers.CharField(), "expiry_date": serializers.DateField(),
    "iv": serializers.FloatField(allow_null=True), "call_iv": serializers.FloatField(allow_null=True),
    "put_iv": serializers.FloatField(allow_null=True), "atm_strike": serializers.FloatField(allow_null=True),
    "spot": serializers.FloatField(allow_null=True), "timestamp": serializers.DateTimeField(allow_null=True),
    "reason": serializers.CharField(required=False),
    "source": SOURCE_FIELD,
})
ChainSerializer = inline_serializer("OptionChain", {
    "underlying": serializers.CharField(), "expiry_date": serializers.DateField(),
    "spot": serializers.FloatField(allow_null=True), "atm_strike": serializers.FloatField(allow_null=True),
    "timestamp": serializers.DateTimeField(allow_null=True),
    "strikes": inline_serializer("ChainStrike", {"strike": serializers.FloatField(),
                                                 "call": _option_view(allow_null=True),
                                                 "put": _option_view(allow_null=True)}, many=True),
    "source": SOURCE_FIELD,
})
HistoryGreeksSerializer = inline_serializer("HistoricalGreeks", {
    "instrument_key": serializers.CharField(), "timeframe": serializers.CharField(allow_null=True),
    "price_field": serializers.CharField(), "start_time": serializers.DateTimeField(),
    "end_time": serializers.DateTimeField(), "truncated": serializers.BooleanField(),
    "series": inline_serializer("HistoricalGreeksPoint", {
        "time": serializers.DateTimeField(help_text="bucket start (or the tick time without timeframe)"),
        "tick_time": serializers.DateTimeField(required=False, help_text="time of the bucket's last row"),
        **_greeks_fields(),
        "option_price": serializers.FloatField(allow_null=True),
        "underlying_price": serializers.FloatField(allow_null=True), "sigma": serializers.FloatField(allow_null=True),
        "sigma_source": serializers.CharField(allow_null=True), "status": serializers.CharField(),
        "stale_underlying": serializers.BooleanField(),
        "time_to_expiry": serializers.FloatField(allow_null=True), "config_id": serializers.IntegerField(),
    }, many=True),
})
HistoryAtmIvSerializer = inline_serializer("HistoricalAtmIv", {
    "underlying": serializers.CharField(), "expiry_date": serializers.DateField(),
    "timeframe": serializers.CharField(), "start_time": serializers.DateTimeField(),
    "end_time": serializers.DateTimeField(), "truncated": serializers.BooleanField(),
    "series": inline_serializer("HistoricalAtmIvPoint", {
        "time": serializers.DateTimeField(), "iv": serializers.FloatField(allow_null=True),
        "call_iv": serializers.FloatField(allow_null=True), "put_iv": serializers.FloatField(allow_null=True),
        "atm_strike": serializers.FloatField(allow_null=True), "spot": serializers.FloatField(allow_null=True),
    }, many=True),
})


# --- views ------------------------------------------------------------------------------------------------------
@extend_schema_view(get=extend_schema(summary="Latest Greeks of an option",
                                      responses={200: RealtimeGreeksSerializer, **ERRORS}))
class RealtimeGreeksView(ReadView):
    @staticmethod
    def read(request: Request | QueryOnly, instrument_key: str) -> dict[str, Any]:
        key = option_param(instrument_key).key
        body, source = latest_or_stored(lambda: _cached_greeks(key), lambda: stored.latest_greeks([key]).get(key))
        if body is None:
            if not instrument_registry.instrument_known(key):
                raise NotFound(f"unknown instrument {key}")
            raise NotFound(f"no Greeks computed yet for {key} (is a config with option_greeks enabled matching it?)")
        body.pop("ts", None)
        body["source"] = source
        return body


def _cached_greeks(key: str) -> dict[str, Any] | None:
    raw = get_redis().get(keys.latest_result("greeks", key))
    return json.loads(raw) if raw is not None else None


@extend_schema_view(get=extend_schema(
    summary="Greeks of a moneyness level (ATM, ITMn, OTMn, ITM, OTM, Dnn) from the latest chain",
    parameters=[EXPIRY, STRIKE_STEP], responses={200: LevelSerializer, **ERRORS}))
class MoneynessGreeksView(ReadView):
    @staticmethod
    def read(request: Request | QueryOnly, underlying: str, level: str) -> dict[str, Any]:
        key = underlying_param(underlying)
        level = level_param(level)
        step = strike_step_param(request)
        snapshot, source = latest_chain(request, key)
        return {**levels.level_view(snapshot, level, step), "source": source}


def latest_chain(request: Request | QueryOnly, underlying: str) -> tuple[ChainSnapshot, str]:
    """(the latest chain of the ``underlying`` path parameter for the ``expiry_date`` query parameter, its
    source): from Redis, or from the stored values while Redis cannot be reached."""
    key = underlying_param(underlying)
    expiry = expiry_param(request, key)
    return latest_or_stored(lambda: load_chain(get_redis(), key, expiry), lambda: stored.stored_chain(key, expiry))


@extend_schema_view(get=extend_schema(
    summary="ATM implied volatility: IV at the spot, interpolated between the bracketing strikes",
    parameters=[EXPIRY], responses={200: AtmIvSerializer, **ERRORS}))
class AtmIvView(ReadView):
    @staticmethod
    def read(request: Request | QueryOnly, underlying: str) -> dict[str, Any]:
        snapshot, source = latest_chain(request, underlying)
        return {**levels.atm_iv_view(snapshot), "source": source}


@extend_schema_view(get=extend_schema(summary="Every strike's call and put Greeks, the spot and the ATM strike",
                                      parameters=[EXPIRY], responses={200: ChainSerializer, **ERRORS}))
class OptionChainView(ReadView):
    @staticmethod
    def read(request: Request | QueryOnly, underlying: str) -> dict[str, Any]:
        snapshot, source = latest_chain(request, underlying)
        return {**levels.chain_view(snapshot), "source": source}


class HistoricalGreeksView(APIView):
    @extend_schema(summary="Greeks time series of an option (last value per bucket, or every row without timeframe)",
                   parameters=[TIMEFRAME, START, END, PRICE_FIELD, CONFIG_ID],
                   responses={200: HistoryGreeksSerializer, **ERRORS})
    def get(self, request: Request, instrument_key: str) -> Response:
        key = option_param(instrument_key).key
        tf = timeframe_param(request, None)
        start, end = time_range(request)
        field = price_field_param(request)
        config_id = config_id_param(request)
        limit = settings.SIGNAL_GREEKS_HISTORY_MAX_POINTS
        series = greeks_history.greeks_series(key, tf, start, end, field, config_id, limit + 1)
        if not series and not instrument_registry.instrument_known(key):
            raise NotFound(f"unknown instrument {key}")
        return Response({"instrument_key": key, "timeframe": tf.name if tf else None, "price_field": field,
                         "start_time": start.isoformat(), "end_time": end.isoformat(),
                         "truncated": len(series) > limit, "series": series[:limit]})


class HistoricalAtmIvView(APIView):
    @extend_schema(summary="ATM IV time series (per bucket: each option's last IV, interpolated at the spot)",
                   parameters=[EXPIRY, TIMEFRAME, START, END, CONFIG_ID],
                   responses={200: HistoryAtmIvSerializer, **ERRORS})
    def get(self, request: Request, underlying: str) -> Response:
        key = underlying_param(underlying)
        tf = timeframe_param(request, "1m")
        start, end = time_range(request)
        expiry = expiry_param(request, key)
        config_id = config_id_param(request)
        limit = settings.SIGNAL_GREEKS_HISTORY_MAX_POINTS
        series = greeks_history.atm_iv_series(key, expiry, tf, start, end, config_id)
        return Response({"underlying": key, "expiry_date": expiry.isoformat(), "timeframe": tf.name,
                         "start_time": start.isoformat(), "end_time": end.isoformat(),
                         "truncated": len(series) > limit, "series": series[:limit]})


urlpatterns = [
    path("realtime/greeks/<str:instrument_key>", RealtimeGreeksView.as_view(), name="realtime-greeks"),
    path("realtime/moneyness/<str:underlying>/greeks/<str:level>", MoneynessGreeksView.as_view(),
         name="realtime-moneyness-greeks"),
    path("realtime/moneyness/<str:underlying>/atm-iv", AtmIvView.as_view(), name="realtime-moneyness-atm-iv"),
    path("option-chain/<str:underlying>", OptionChainView.as_view(), name="option-chain"),
    path("historical/greeks/<str:instrument_key>", HistoricalGreeksView.as_view(), name="historical-greeks"),
    path("historical/moneyness/<str:underlying>/atm-iv", HistoricalAtmIvView.as_view(),
         name="historical-moneyness-atm-iv"),
]
