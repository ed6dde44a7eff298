"""Option ticks held back, briefly, for the underlying's tick that is still on its way (docs/RELIABILITY.md).

Ticks of an option and of its underlying (or INDVIX) come on different streams and can arrive in either order. An
option tick whose underlying, as far as the bridge knows, is stale at the option's time (older than
``SIGNAL_UNDERLYING_STALENESS_S``) waits up to ``SIGNAL_UNDERLYING_WAIT_MS`` for a fresh one. The spot and the
option share an underlying, so they share a batch: the fresh tick read during the wait is processed with the
option, before it is priced. INDVIX has its own batch; so that an option is priced with the INDVIX tick its wait
brought whichever batch a worker finishes first, the newest INDVIX tick read since a group's last batch also travels
in it as context (`context_for`: written to the latest values and history only). An instrument never seen
(neither read by this bridge nor held in Redis) is not waited for; after the wait, the option is priced with what
is held and flagged stale as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import redis

from feed import keys
from feed.instruments import InstrumentKeyError, parse_instrument_key

Need = tuple[tuple[str, ...], float]  # (instrument keys, any of which must reach this tick time)


@dataclass
class UnderlyingWaits:
    client: redis.Redis
    wait_s: float
    staleness_s: float
    vix_key: str
    index_symbols: frozenset[str]
    seen: dict[str, float | None] = field(default_factory=dict)  # newest tick time known (None: never ticked)
    needs: dict[str, list[Need]] = field(default_factory=dict)  # symbol group -> what its options wait for
    deadlines: dict[str, float] = field(default_factory=dict)  # symbol group -> monotonic time the wait ends
    vix_tick: dict[str, Any] | None = None  # the newest INDVIX tick read
    vix_given: dict[str, float] = field(default_factory=dict)  # symbol group -> time of the INDVIX tick it was given

    def note(self, ticks: list[dict[str, Any]], now: float) -> None:
        """Take in a read's parsed ticks: the underlyings' times, and what its option ticks must wait for."""
        for tick in ticks:
            if "@options@" not in tick["instrument_key"]:
                self.seen[tick["instrument_key"]] = max(tick["ts"], self.seen.get(tick["instrument_key"]) or -math.inf)
            if tick["instrument_key"] == self.vix_key and (self.vix_tick is None or tick["ts"] >= self.vix_tick["ts"]):
                self.vix_tick = tick
        if self.wait_s <= 0:
            return
        wanted = [(tick, self._required(tick["instrument_key"])) for tick in ticks
                  if "@options@" in tick["instrument_key"]]
        self._look_up({k for _, required in wanted for group in required for k in group})
        for tick, required in wanted:
            for group in required:
                known = [t for t in (self.seen.get(k) for k in group) if t is not None]
                if known and max(known) < tick["ts"] - self.staleness_s:
                    self.needs.setdefault(tick["symbol_key"], []).append((group, tick["ts"] - self.staleness_s))
                    self.deadlines.setdefault(tick["symbol_key"], now + self.wait_s)

    def waiting(self, symbol_key: str, now: float) -> bool:
        """Whether the group still waits: something it needs has not come, and its wait has not run out."""
        needs = self.needs.get(symbol_key)
        if not needs:
            return False
        left = [(group, ts) for group, ts in needs if max(self.seen.get(k) or -math.inf for k in group) < ts]
        if not left or now >= self.deadlines[symbol_key]:
            self.forget(symbol_key)
            return False
        self.needs[symbol_key] = left
        return True

    def context_for(self, symbol_key: str, ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The INDVIX tick to send along with a group's batch of option ticks (a copy marked ``context``), if one
        was read since the group's last batch."""
        vix = self.vix_tick
        if vix is None or vix["ts"] <= self.vix_given.get(symbol_key, -math.inf):
            return []
        if not any("@options@" in tick["instrument_key"] for tick in ticks):
            return []
        self.vix_given[symbol_key] = vix["ts"]
        return [{**vix, "context": True}]

    def forget(self, symbol_key: str) -> None:
        self.needs.pop(symbol_key, None)
        self.deadlines.pop(symbol_key, None)

    def _required(self, instrument_key: str) -> list[tuple[str, ...]]:
        try:
            inst = parse_instrument_key(instrument_key)
        except InstrumentKeyError:
            return []
        spot = (inst.underlying_key(self.index_symbols), inst.future_key())
        return [tuple(k for k in spot if k), (self.vix_key,)]

    def _look_up(self, instrument_keys: set[str]) -> None:
        """Fetch from Redis, once per instrument, the held tick time of instruments this bridge has not read."""
        unknown = sorted(k for k in instrument_keys if k not in self.seen)
        if not unknown:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in unknown:
            pipe.hget(keys.latest_tick(key), "ts")
        for key, held in zip(unknown, pipe.execute(), strict=True):
            self.seen[key] = float(held) if held is not None else None
