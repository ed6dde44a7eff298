"""Bars of a backtest run, built from the run's replayed ticks only and held in memory (never the live bars cache,
open bars or the stored bars): the ``bars_service`` a replayed batch's computations read, answering
`signals.bars.store.BarsService.recent` with the same bars the live service builds from stored ticks (same grid,
same volume rule: the day-cumulative volume's running maximum per exchange date, differenced; ``oi`` the last
non-null value; ticks of one instant ordered by ``source_id``)."""

from __future__ import annotations

import bisect
from typing import Any
from zoneinfo import ZoneInfo

from signals.bars.grid import Alignment, Grid, exchange_day
from signals.bars.rows import Bar

# a replayed tick as the bars need it: [ts, source_id, ltp, cumulative day volume or None, oi or None]
BarTick = list[Any]


class RunBars:
    def __init__(self, ticks: dict[str, list[BarTick]] | None = None, alignment: Alignment | None = None):
        self.ticks: dict[str, list[BarTick]] = ticks if ticks is not None else {}
        self.alignment = alignment or Alignment.from_settings()
        self.zone = ZoneInfo(self.alignment.tz)
        self._grids: dict[str, Grid] = {}

    def grid(self, timeframe: Any) -> Grid:
        name = timeframe if isinstance(timeframe, str) else timeframe.name
        found = self._grids.get(name)
        if found is None:
            found = self._grids[name] = Grid(timeframe, self.alignment)
        return found

    def add(self, tick: dict[str, Any]) -> None:
        row = [tick["ts"], tick["source_id"], tick["ltp"], tick.get("volume"), tick.get("oi")]
        held = self.ticks.setdefault(tick["instrument_key"], [])
        if not held or (held[-1][0], held[-1][1]) < (row[0], row[1]):
            held.append(row)
        else:  # a late tick: in its place by (time, source id), as every bar path orders them
            position = bisect.bisect_left([(t[0], t[1]) for t in held], (row[0], row[1]))
            if position < len(held) and held[position][:2] == row[:2]:
                return
            held.insert(position, row)

    def recent(self, instrument_key: str, timeframe: Any, until: float, count: int,
               include_open: bool = True) -> list[Bar]:
        """The last ``count`` bars up to tick time ``until`` (later ticks ignored); the last one is the bar holding
        ``until`` (as of that tick) unless ``include_open`` is false."""
        held = self.ticks.get(instrument_key) or []
        grid = self.grid(timeframe)
        end = bisect.bisect_right(held, until, key=lambda t: t[0])
        open_start = grid.bucket(until)
        spans: list[tuple[int, int, int]] = []  # (first tick, last tick, bar start), newest first
        i = end - 1
        while i >= 0 and len(spans) < count:
            start = grid.bucket(held[i][0])
            first = i
            while first > 0 and grid.bucket(held[first - 1][0]) == start:
                first -= 1
            if start < open_start or include_open:
                spans.append((first, i, start))
            i = first - 1
        if not spans:
            return []
        running = self._running(held, spans[-1][0], spans[0][1])
        bars = []
        for first, last, start in reversed(spans):
            prices = [held[k][2] for k in range(first, last + 1)]
            oi = next((held[k][4] for k in range(last, first - 1, -1) if held[k][4] is not None), None)
            run_end, _ = running[last]
            before = running.get(first - 1)
            base = before[0] if before is not None and before[1] == running[first][1] else None
            volume = None if run_end is None else run_end - (base or 0.0)
            bars.append([start, prices[0], max(prices), min(prices), prices[-1], volume, oi, run_end])
        return bars

    def _running(self, held: list[BarTick], lo: int, hi: int) -> dict[int, tuple[float | None, str]]:
        """Tick index -> (running maximum of the cumulative day volume up to it within its exchange date, that
        date), from the first tick of ``lo``'s date up to ``hi``."""
        day = exchange_day(held[lo][0], self.zone)
        while lo > 0 and exchange_day(held[lo - 1][0], self.zone) == day:
            lo -= 1
        out: dict[int, tuple[float | None, str]] = {}
        best: float | None = None
        current = ""
        for k in range(lo, hi + 1):
            day = exchange_day(held[k][0], self.zone)
            if day != current:
                current, best = day, None
            value = held[k][3]
            if value is not None and (best is None or value > best):
                best = float(value)
            out[k] = (best, day)
        return out
