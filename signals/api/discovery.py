"""Discovery (docs/REFERENCE.md §6, issue 18): what instruments exist, and an underlying's expiries and strikes.

* ``instruments/?exchange=&underlying=&product=&expiry=&search=&limit=&offset=`` — the instrument registry,
  paginated, each row with the tick times of its first and last stored tick.
* ``instruments/{underlying}/expiries/?expiry=`` — the underlying's option expiries (and futures), each strike's
  call and put with whether it has live data (a latest tick held in Redis within ``SIGNAL_LIVE_DATA_MAX_AGE_S`` of
  tick time of the newest tick of that underlying's family) and its first/last stored tick times.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feed.instruments import PRODUCT_ALIASES, InstrumentKeyError, parse_expiry, parse_instrument_key
from feed.latest import LatestStore
from feed.redis_client import get_redis
from signals.api.greeks_api import underlying_param
from signals.models import InstrumentRecord
from signals.options.levels import strike_number
from webapi.dependencies import REDIS_DOWN
from webapi.errors import BadParameter, NotFound
from webapi.limits import LimitError, check_date, check_text
from webapi.params import Pagination

# the first and last rows by the primary key (instrument_key, time, ...): two index probes per instrument (on a
# hypertable, ordered chunk appends stop at the first chunk holding one)
_SEEN_SQL = """
SELECT k.key,
       (SELECT time FROM signal_ticks WHERE instrument_key = k.key ORDER BY time LIMIT 1),
       (SELECT time FROM signal_ticks WHERE instrument_key = k.key ORDER BY time DESC LIMIT 1)
FROM unnest(%s::text[]) AS k(key)
"""


def seen_times(instrument_keys: list[str]) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Instrument key -> (first, last) tick time stored in ``signal_ticks`` (None, None without ticks)."""
    if not instrument_keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_SEEN_SQL, [list(instrument_keys)])
        return {key: (first, last) for key, first, last in cursor.fetchall()}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def latest_times(instrument_keys: list[str]) -> dict[str, float] | None:
    """Instrument key -> tick time of its latest tick held in Redis (one HGET each, pipelined); None while Redis
    cannot be reached."""
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key in instrument_keys:
            LatestStore.queue_time(pipe, key)
        replies = pipe.execute()
    except REDIS_DOWN:
        return None
    return {key: float(raw) for key, raw in zip(instrument_keys, replies, strict=True) if raw is not None}


# --- parameters -------------------------------------------------------------------------------------------------
def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return check_text(value.strip(), name)
    except LimitError as exc:
        raise BadParameter.from_limit(exc) from None


def expiry_filter(request: Request, name: str = "expiry") -> date | None:
    text = _text(request, name)
    if text is None:
        return None
    try:
        return check_date(parse_expiry(text), name)
    except (InstrumentKeyError, LimitError) as exc:
        raise BadParameter(f"{name}: {exc}", field=name) from None


def filtered_instruments(request: Request) -> Any:
    query = InstrumentRecord.objects.all().order_by("key")
    exchange = _text(request, "exchange")
    if exchange is not None:
        query = query.filter(exchange=exchange.upper())
    underlying = _text(request, "underlying")
    if underlying is not None:
        try:
            query = query.filter(underlying_key=parse_instrument_key(underlying).key)
        except InstrumentKeyError as exc:
            raise BadParameter(str(exc), field="underlying") from None
    product = _text(request, "product")
    if product is not None:
        canonical = PRODUCT_ALIASES.get(product.lower())
        if canonical is None:
            raise BadParameter(f"product {product[:40]!r} must be one of index, equities, futures, options",
                               field="product")
        query = query.filter(product=canonical)
    expiry = expiry_filter(request)
    if expiry is not None:
        query = query.filter(expiry=expiry)
    search = _text(request, "search")
    if search is not None:
        query = query.filter(key__icontains=search[:128])
    return query


# --- schema -----------------------------------------------------------------------------------------------------
InstrumentSerializer = inline_serializer("Instrument", {
    "instrument_key": serializers.CharField(), "exchange": serializers.CharField(),
    "symbol": serializers.CharField(), "product": serializers.CharField(),
    "underlying_key": serializers.CharField(), "expiry": serializers.DateField(allow_null=True),
    "right": serializers.CharField(allow_null=True), "strike": serializers.FloatField(allow_null=True),
    "first_seen": serializers.DateTimeField(allow_null=True, help_text="tick time of its first stored tick"),
    "last_seen": serializers.DateTimeField(allow_null=True, help_text="tick time of its last stored tick"),
})
InstrumentPageSerializer = inline_serializer("InstrumentPage", {
    "count": serializers.IntegerField(), "next": serializers.CharField(allow_null=True),
    "previous": serializers.CharField(allow_null=True), "results": InstrumentSerializer.__class__(many=True),
})
ContractSerializer = inline_serializer("ExpiryContract", {
    "instrument_key": serializers.CharField(),
    "live": serializers.BooleanField(allow_null=True, help_text="a recent latest tick is held (null: Redis down)"),
    "first_seen": serializers.DateTimeField(allow_null=True), "last_seen": serializers.DateTimeField(allow_null=True),
}, allow_null=True)
ExpirySerializer = inline_serializer("UnderlyingExpiry", {
    "expiry": serializers.DateField(), "future": serializers.CharField(allow_null=True),
    "strike_count": serializers.IntegerField(), "live_count": serializers.IntegerField(),
    "first_seen": serializers.DateTimeField(allow_null=True), "last_seen": serializers.DateTimeField(allow_null=True),
    "strikes": inline_serializer("ExpiryStrike", {"strike": serializers.FloatField(), "call": ContractSerializer,
                                                  "put": ContractSerializer}, many=True),
})
ExpiriesSerializer = inline_serializer("UnderlyingExpiries", {
    "underlying": serializers.CharField(), "live_max_age_s": serializers.FloatField(),
    "reference_time": serializers.DateTimeField(allow_null=True,
                                                help_text="newest latest tick of the family, by tick time"),
    "count": serializers.IntegerField(), "expiries": ExpirySerializer.__class__(many=True),
})
FILTERS = [
    OpenApiParameter("exchange", OpenApiTypes.STR, description="NSE, BSE …"),
    OpenApiParameter("underlying", OpenApiTypes.STR, description="underlying key, e.g. NSE@NIFTY@index"),
    OpenApiParameter("product", OpenApiTypes.STR, description="index, equities, futures, options (any §3.1 spelling)"),
    OpenApiParameter("expiry", OpenApiTypes.DATE, description="derivatives of this expiry"),
    OpenApiParameter("search", OpenApiTypes.STR, description="part of the key, any case"),
]


# --- views ------------------------------------------------------------------------------------------------------
def instrument_row(record: InstrumentRecord, seen: tuple[datetime | None, datetime | None]) -> dict[str, Any]:
    return {"instrument_key": record.key, "exchange": record.exchange, "symbol": record.symbol,
            "product": record.product, "underlying_key": record.underlying_key,
            "expiry": record.expiry.isoformat() if record.expiry else None, "right": record.right or None,
            "strike": strike_number(float(record.strike)) if record.strike is not None else None,
            "first_seen": _iso(seen[0]), "last_seen": _iso(seen[1])}


class InstrumentListView(APIView):
    pagination_class = Pagination

    @extend_schema(summary="Instruments in the registry (filter by exchange, underlying, product, expiry)",
                   parameters=FILTERS, responses={200: InstrumentPageSerializer,
                                                  400: OpenApiResponse(description="bad filter")})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(filtered_instruments(request), request, view=self)
        seen = seen_times([record.key for record in page])
        return paginator.get_paginated_response([instrument_row(record, seen[record.key]) for record in page])


def _contract(key: str | None, seen: dict[str, Any], latest: dict[str, float] | None, since: float | None
              ) -> dict[str, Any] | None:
    if key is None:
        return None
    first, last = seen.get(key, (None, None))
    live = None if latest is None else (key in latest and since is not None and latest[key] >= since)
    return {"instrument_key": key, "live": live, "first_seen": _iso(first), "last_seen": _iso(last)}


def expiry_views(underlying: str, only: date | None) -> tuple[list[dict[str, Any]], float | None]:
    """Each expiry's strikes with their contracts, and the reference tick time liveness is judged against."""
    options = InstrumentRecord.objects.filter(underlying_key=underlying, product__in=("options", "futures")) \
        .exclude(expiry=None).order_by("expiry", "strike", "right")
    if only is not None:
        options = options.filter(expiry=only)
    rows = list(options.values_list("key", "product", "expiry", "right", "strike"))
    family = [underlying, *(key for key, *_ in rows)]
    seen = seen_times(family)
    latest = latest_times(family)
    newest = max(latest.values()) if latest else None
    since = newest - float(settings.SIGNAL_LIVE_DATA_MAX_AGE_S) if newest is not None else None
    by_expiry: dict[date, dict[str, Any]] = {}
    for key, product, expiry, right, strike in rows:
        view = by_expiry.setdefault(expiry, {"expiry": expiry.isoformat(), "future": None, "strikes": {}})
        if product == "futures":
            view["future"] = key
            continue
        slot = view["strikes"].setdefault(float(strike), {"strike": strike_number(float(strike)), "call": None,
                                                          "put": None})
        slot[right] = _contract(key, seen, latest, since)
    out = []
    for expiry in sorted(by_expiry):
        view = by_expiry[expiry]
        strikes = [view["strikes"][k] for k in sorted(view["strikes"])]
        contracts = [c for s in strikes for c in (s["call"], s["put"]) if c is not None]
        firsts = [c["first_seen"] for c in contracts if c["first_seen"]]
        lasts = [c["last_seen"] for c in contracts if c["last_seen"]]
        out.append({"expiry": view["expiry"], "future": view["future"], "strike_count": len(strikes),
                    "live_count": sum(1 for c in contracts if c["live"]),
                    "first_seen": min(firsts) if firsts else None, "last_seen": max(lasts) if lasts else None,
                    "strikes": strikes})
    return out, newest


class UnderlyingExpiriesView(APIView):
    @extend_schema(summary="An underlying's expiries with their strikes, live-data flags and first/last tick times",
                   parameters=[OpenApiParameter("expiry", OpenApiTypes.DATE, description="only this expiry")],
                   responses={200: ExpiriesSerializer, 400: OpenApiResponse(description="bad underlying or expiry"),
                              404: OpenApiResponse(description="underlying unknown, or no such expiry")})
    def get(self, request: Request, underlying: str) -> Response:
        key = underlying_param(underlying)
        only = expiry_filter(request)
        if not InstrumentRecord.objects.filter(underlying_key=key).exists():
            raise NotFound(f"no instruments known for underlying {key}")
        expiries, newest = expiry_views(key, only)
        if only is not None and not expiries:
            raise NotFound(f"no derivatives of {key} expiring on {only.isoformat()}")
        reference = datetime.fromtimestamp(newest, UTC).isoformat() if newest is not None else None
        return Response({"underlying": key, "live_max_age_s": float(settings.SIGNAL_LIVE_DATA_MAX_AGE_S),
                         "reference_time": reference, "count": len(expiries), "expiries": expiries})

urlpatterns = [
    path("instruments/", InstrumentListView.as_view(), name="instruments"),
    path("instruments/<str:underlying>/expiries/", UnderlyingExpiriesView.as_view(), name="underlying-expiries"),
]
