"""WebSocket channels (docs/REFERENCE.md §6): what a channel declares, and the ``computed`` channel.

Each channel declares how to normalise a subscription's instrument key and params, and how to read a snapshot of
the latest value (sent on subscribe and on request, so a client that saw a ``seq`` gap can resynchronise). The
channels a client can subscribe to are listed in `signals.delivery.subscriptions`.
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


async def _computed_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    raw = await client.lindex(keys.output_list(instrument_key), 0)
    return json.loads(raw) if raw else None


COMPUTED = ChannelSpec("computed", _computed_snapshot)
