"""What a batch's computations share: the Redis client, previous ticks, bars read once per batch, what the
computations queue for delivery (`Outbox`), and what one computation leaves for a later one (the Greeks just
computed, for moneyness)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis

from feed.latest import LatestStore
from signals.bars.store import BarsService, recent_bars
from signals.delivery.outputs import Outbox
from signals.instrument_registry import option_keys

# (instrument key, timeframe, tick time, open bar included, count) -> bars as `BarsService.recent` returns them
IndicatorBarsKey = tuple[str, str, float, bool, int]


@dataclass
class BatchContext:
    client: redis.Redis
    latest: LatestStore
    previous: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # source_id -> tick just before it
    outbox: Outbox = field(default_factory=Outbox)
    held_ts: dict[str, float] = field(default_factory=dict)  # latest tick time per instrument before the batch
    bars_cache: dict[tuple[str, str, float], list[dict[str, Any]]] = field(default_factory=dict)  # see `bars`
    # bars of the indicators computation, shared by the configs of a batch that evaluate the same instrument,
    # timeframe and tick time
    indicator_bars: dict[IndicatorBarsKey, list[list[Any]]] = field(default_factory=dict)
    # latest-Greeks entries the Greeks computation made in this batch, not yet in Redis (instrument key -> entry):
    # moneyness, which runs after it, joins them with the cached chain
    fresh_greeks: dict[str, dict[str, Any]] = field(default_factory=dict)
    chains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # see `option_chain`

    def option_chain(self, underlying_key: str) -> list[dict[str, Any]]:
        """Every registered option of the underlying that has a latest tick: ``{instrument_key, right, expiry,
        strike, oi, volume, timestamp}``, read once per batch (after the batch's own ticks updated the latest
        values). For chain-level functions such as ``put_call_ratio``."""
        found = self.chains.get(underlying_key)
        if found is None:
            keys = option_keys(underlying_key)
            found = []
            for key, tick in zip(keys, self.latest.get_many(keys) if keys else [], strict=True):
                if tick is None:
                    continue
                _, _, _, expiry, right, strike = key.split("@")
                found.append({"instrument_key": key, "right": right, "expiry": expiry, "strike": float(strike),
                              "oi": tick.get("oi"), "volume": tick.get("volume"), "timestamp": tick["timestamp"]})
            self.chains[underlying_key] = found
        return found

    @cached_property
    def bars_service(self) -> BarsService:
        """The batch's bars reader and recorder (the pipeline's open bars, `bars`, the indicators), made on first
        use."""
        return BarsService(self.client)

    def bars(self, instrument_key: str, timeframe: str, until_ts: float, count: int = 200) -> list[dict[str, Any]]:
        """The config's recent bars (oldest first) up to tick time ``until_ts``, loaded once per batch and tick time.

        Keyed by the exact tick time: the last bar is the open one as of that tick, so a tick must never be handed
        the bars of a later tick of the same minute (that would let it see the future in a replay)."""
        cache_key = (instrument_key, timeframe, until_ts)
        found = self.bars_cache.get(cache_key)
        if found is None:
            found = recent_bars(instrument_key, timeframe, until_ts, count, self.bars_service)
            self.bars_cache[cache_key] = found
        return found
