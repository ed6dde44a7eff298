"""WebSocket channels (docs/REFERENCE.md §6): how a subscription maps to a Channels group, and what its snapshot is.

Each channel declares how to normalise a subscription's instrument key and params, and how to read a snapshot of
the latest value (sent on subscribe and on request, so a client that saw a ``seq`` gap can resynchronise).
Issues that add computations register their channels here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis

from feed import keys
from feed.instruments import normalise_key

Snapshot = Callable[[aredis.Redis, str, dict[str, Any]], Awaitable[Any]]


class SubscriptionError(ValueError):
    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    snapshot: Snapshot
    normalise_params: Callable[[dict[str, Any]], dict[str, Any]] = lambda params: {}
    normalise_instrument: Callable[[str], str] = normalise_key


CHANNELS: dict[str, ChannelSpec] = {}


def register(spec: ChannelSpec) -> ChannelSpec:
    CHANNELS[spec.name] = spec
    return spec


def resolve(channel: Any, instrument_key: Any, params: Any) -> tuple[ChannelSpec, str, dict[str, Any], str]:
    """Validate a subscribe/unsubscribe request: returns (spec, key, params, group) or raises SubscriptionError."""
    spec = CHANNELS.get(channel) if isinstance(channel, str) else None
    if spec is None:
        raise SubscriptionError("unknown_channel", f"channel must be one of {', '.join(sorted(CHANNELS))}")
    if not isinstance(instrument_key, str) or not instrument_key:
        raise SubscriptionError("bad_instrument_key", "instrument_key is required")
    try:
        key = spec.normalise_instrument(instrument_key)
    except ValueError as exc:
        raise SubscriptionError("bad_instrument_key", str(exc)) from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise SubscriptionError("bad_params", "params must be an object")
    try:
        params = spec.normalise_params(params)
    except ValueError as exc:
        raise SubscriptionError("bad_params", str(exc)) from None
    return spec, key, params, keys.topic_group(spec.name, key, params or None)


async def _computed_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    raw = await client.lindex(keys.output_list(instrument_key), 0)
    return json.loads(raw) if raw else None


register(ChannelSpec("computed", _computed_snapshot))


def _load_channel_modules() -> None:
    """Channels defined by other areas register themselves on import."""
    import importlib

    for module in ("signals.delivery.ws_greeks", "signals.delivery.ws_indicators"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_load_channel_modules()
