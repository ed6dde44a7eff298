"""Realtime read endpoints backed by the latest values in Redis, or, while Redis is unreachable, by the newest
values stored in PostgreSQL (``"source": "redis"`` or ``"database"`` in every answer, docs/REFERENCE.md §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from feed.instruments import InstrumentKeyError, normalise_key
from feed.latest import LatestStore
from feed.redis_client import get_redis
from signals.options import stored
from webapi.dependencies import REDIS_DOWN
from webapi.errors import BadParameter, NotFound
from webapi.lane import QueryOnly, ReadView

TICK_FIELDS = ("ltp", "open", "high", "low", "close", "volume", "oi", "bid", "ask", "ltq")
SOURCE_FIELD = serializers.ChoiceField(
    choices=["redis", "database"],
    help_text="redis: the latest values the pipeline keeps; database: the newest stored ones (Redis unreachable)")
T = TypeVar("T")


def latest_or_stored(from_redis: Callable[[], T], from_database: Callable[[], T]) -> tuple[T, str]:
    """(value, source): Redis's latest value, or the stored one while Redis cannot be reached."""
    try:
        return from_redis(), "redis"
    except REDIS_DOWN:
        return from_database(), "database"


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
    "source": SOURCE_FIELD,
})


@extend_schema_view(get=extend_schema(
    summary="Latest tick values of an instrument",
    responses={200: PriceSerializer, 400: OpenApiResponse(description="bad instrument key"),
               404: OpenApiResponse(description="no tick seen for this instrument")}))
class RealtimePriceView(ReadView):
    @staticmethod
    def read(request: Request | QueryOnly, instrument_key: str) -> dict[str, Any]:
        key = instrument_param(instrument_key)
        tick, source = latest_or_stored(lambda: LatestStore(get_redis()).get(key), lambda: stored.latest_tick(key))
        if tick is None:
            raise NotFound(f"no tick seen for {key}")
        body: dict[str, Any] = {"instrument_key": key, "timestamp": tick["timestamp"]}
        body.update({name: tick.get(name) for name in TICK_FIELDS})
        body["source"] = source
        return body
