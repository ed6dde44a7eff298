"""The still-open bar of one instrument and timeframe, kept in Redis tick by tick (`signals.bars.tick_record`) and
seeded from SQL (``seed_open_bar.lua``), so a read of recent bars needs no SQL for the bar being formed.

The hash (`feed.keys.bars_open`), every number as `signals.bars.rows.lua_number` writes it (``""`` for none):
    ``b`` start (epoch seconds), ``d`` exchange date of its newest part, ``o``/``ot`` open and its time, ``h``,
    ``l``, ``c``/``ct`` close and its time, ``vm`` largest cumulative volume on date ``d``, ``vb`` running maximum
    of date ``d`` before the bar, ``va`` volume of the bar's earlier dates, ``oi``/``oit`` last open interest and
    its time, ``s`` = 1 when it is known to hold every tick of the bar (seeded from SQL, or rolled over while
    tracked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feed import keys
from feed.redis_client import lua_source
from signals.bars.rows import Bar, lua_number, redis_number
from signals.bars.sql import SqlBar

SEED_LUA = lua_source(__file__, "seed_open_bar.lua")


@dataclass
class OpenBar:
    start: int
    day: str
    open: float
    open_time: float
    high: float
    low: float
    close: float
    close_time: float
    vmax: float | None
    vbase: float | None
    vacc: float | None
    oi: float | None
    oi_time: float | None
    seeded: bool

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> OpenBar | None:
        if not raw or not raw.get(b"b"):
            return None
        g = {k.decode(): v for k, v in raw.items()}
        return cls(int(float(g["b"])), g.get("d", b"").decode(), float(g["o"]), float(g["ot"]), float(g["h"]),
                   float(g["l"]), float(g["c"]), float(g["ct"]), redis_number(g.get("vm")),
                   redis_number(g.get("vb")), redis_number(g.get("va")), redis_number(g.get("oi")),
                   redis_number(g.get("oit")), g.get("s") == b"1")

    @property
    def volume(self) -> float | None:
        run = self.run
        part = None if run is None else run - (self.vbase or 0.0)
        if part is None:
            return self.vacc
        return part + (self.vacc or 0.0)

    @property
    def run(self) -> float | None:
        return self.vmax if self.vbase is None else (self.vbase if self.vmax is None else max(self.vmax, self.vbase))

    def as_bar(self) -> Bar:
        return [self.start, self.open, self.high, self.low, self.close, self.volume, self.oi, self.run]


def seed_call(instrument_key: str, timeframe: str, bar: SqlBar, open_ttl: int,
              cache_ttl: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``seed_open_bar.lua`` for the open bar ``bar`` just computed from SQL.

    KEYS: the open bar hash, the timeframes set. ARGV: open_ttl, cache_ttl (seconds), timeframe, then the bar's
    fields b d o ot h l c ct vm vb va oi oit ("" for null). The script merges them with an open bar already there
    for the same start and date (ticks recorded meanwhile), ignores them when a later bar is open, and marks the
    result complete (``s`` = 1). Returns 1 when it wrote."""
    b = bar
    part = None if b.run_end is None else b.run_end - (b.vbase or 0.0)
    vacc = b.volume if part is None else (None if b.volume is None else b.volume - part)
    return ([keys.bars_open(timeframe, instrument_key), keys.bars_timeframes(instrument_key)],
            [open_ttl, cache_ttl, timeframe, b.start, b.last_day.isoformat(), lua_number(b.open),
             lua_number(b.first_time), lua_number(b.high), lua_number(b.low), lua_number(b.close),
             lua_number(b.last_time), lua_number(b.vmax), lua_number(b.vbase), lua_number(vacc), lua_number(b.oi),
             lua_number(b.oi_time)])
