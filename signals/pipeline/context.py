"""What a batch's computations share: the Redis client, previous ticks, and lazily loaded bars."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from signals.pipeline.latest import LatestStore


@dataclass
class BatchContext:
    client: redis.Redis
    latest: LatestStore
    previous: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # source_id -> tick just before it
    bars_cache: dict[tuple[str, str, float], list[dict[str, Any]]] = field(default_factory=dict)
    greeks_rows: list[dict[str, Any]] = field(default_factory=list)  # typed Greeks history rows to store
    cache_writes: list[tuple[str, str, int]] = field(default_factory=list)  # (key, json, ttl) for the realtime API
    # (key, json, ttl, instrument key, tick time): latest results of one instrument, written only while no newer
    # tick of it is held (checked in Redis, so a concurrent or re-delivered older batch cannot move them back)
    guarded_cache_writes: list[tuple[str, bytes, int, str, float]] = field(default_factory=list)
    held_ts: dict[str, float] = field(default_factory=dict)  # latest tick time per instrument before the batch
    ws_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # extra (group, message) events
    listened: dict[str, int] = field(default_factory=dict)  # subscriber counts of WebSocket topics, read up front

    def bars(self, instrument_key: str, timeframe: str, until_ts: float, count: int = 200) -> list[dict[str, Any]]:
        """The config's recent bars (oldest first) up to tick time ``until_ts``, loaded once per batch and tick time.

        Keyed by the exact tick time: the last bar is the open one as of that tick, so a tick must never be handed
        the bars of a later tick of the same minute (that would let it see the future in a replay)."""
        cache_key = (instrument_key, timeframe, until_ts)
        found = self.bars_cache.get(cache_key)
        if found is None:
            from signals.bars.store import recent_bars

            found = recent_bars(instrument_key, timeframe, until_ts, count)
            self.bars_cache[cache_key] = found
        return found
