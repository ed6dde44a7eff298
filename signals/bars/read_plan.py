"""How one read of bars is served: from the chunks already cached, from SQL over the tick ranges they do not cover,
and from the open bar in Redis; then what the SQL results add to the cache (see `signals.bars.store`).

Pure functions of what was read from Redis and computed in SQL: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from signals.bars.chunk_cache import ChunkEntry
from signals.bars.grid import Grid
from signals.bars.open_bar import OpenBar
from signals.bars.rows import Bar, combine_same_start, merge_open_bar
from signals.bars.sql import SqlBar

Range = tuple[date, float, float]  # (chunk, lo, hi): ticks of the chunk in [lo, hi) to compute


@dataclass
class ReadPlan:
    """What a read needs: cached bars per chunk, and the tick ranges to compute."""

    cached: dict[date, ChunkEntry] = field(default_factory=dict)
    ranges: list[Range] = field(default_factory=list)

    @classmethod
    def build(cls, grid: Grid, chunks: list[date], raw_entries: list[bytes | None], until: float | None,
              open_start: int | None, tick_end: float) -> ReadPlan:
        """The plan for ``chunks`` given their cache entries as read (``raw_entries``, None where missing), for
        ticks before ``tick_end``; ``open_start`` is the start of the bar containing ``until`` (or of the live
        open bar)."""
        plan = cls()
        for chunk, raw in zip(chunks, raw_entries, strict=True):
            lo, hi = grid.chunk_bounds(chunk)
            need_hi = min(hi, tick_end)
            if lo >= need_hi:
                continue
            entry = None
            if raw:
                entry = ChunkEntry.from_json(raw)
                if until is not None and open_start is not None and entry.upto > open_start:
                    # a replay before the end of what is cached: keep the bars closed by ``until`` only
                    kept = [b for b in entry.bars if b[0] < open_start]
                    run = kept[-1][7] if kept and grid.size is not None else None
                    entry = ChunkEntry(float(max(lo, open_start)), run, kept)
            if entry is not None:
                plan.cached[chunk] = entry
                if entry.upto >= need_hi:
                    continue
                plan.ranges.append((chunk, entry.upto, need_hi))
            else:
                plan.ranges.append((chunk, float(lo), need_hi))
        return plan

    def take_open_bar(self, grid: Grid, live: OpenBar | None, open_start: int | None,
                      until: float | None) -> bool:
        """Whether the open bar ``live`` serves the bar starting at ``open_start``: it must hold every tick of it
        (seeded), none after ``until``, and fall in the last range to compute, which then stops before it."""
        use_live = (live is not None and live.seeded and open_start is not None and live.start == open_start
                    and (until is None or live.close_time <= until) and bool(self.ranges)
                    and self.ranges[-1][1] <= open_start < self.ranges[-1][2]
                    and grid.chunk_of(open_start) == self.ranges[-1][0])
        if use_live:
            chunk, lo, _ = self.ranges[-1]
            if lo < open_start:
                self.ranges[-1] = (chunk, lo, float(open_start))
            else:
                self.ranges.pop()
        return use_live

    def contiguous_ranges(self) -> list[list[Range]]:
        """The ranges to compute, grouped where one ends where the next begins (one SQL query per group)."""
        groups: list[list[Range]] = []
        for item in self.ranges:
            if groups and abs(groups[-1][-1][2] - item[1]) < 1e-9:
                groups[-1].append(item)
            else:
                groups.append([item])
        return groups

    def cache_updates(self, grid: Grid, computed: dict[date, list[SqlBar]],
                      limit: float) -> list[tuple[date, ChunkEntry]]:
        """What the ranges just computed add to each chunk, up to the last bar boundary before ``limit`` (settled
        and before ``until``)."""
        out: list[tuple[date, ChunkEntry]] = []
        for chunk, _, hi in self.ranges:
            start, end = grid.chunk_bounds(chunk)
            edge = min(hi, limit)
            if edge >= end:
                upto = float(end)
            elif edge <= start:
                continue
            else:
                upto = float(max(start, grid.bucket(edge)))
            entry = self.cached.get(chunk)
            if upto <= (entry.upto if entry is not None else float(start)):
                continue
            new_bars = [b.as_bar() for b in computed.get(chunk, []) if b.start < upto]
            bars = (entry.bars if entry is not None else []) + new_bars
            run = new_bars[-1][7] if new_bars else (entry.run if entry is not None else None)
            out.append((chunk, ChunkEntry(upto, run, bars)))
        return out

    def assemble(self, chunks: list[date], computed: dict[date, list[SqlBar]], live: OpenBar | None) -> list[Bar]:
        """Every bar of ``chunks``: cached, then computed, combined across midnight, with the open bar merged."""
        bars: list[Bar] = []
        for chunk in chunks:
            entry = self.cached.get(chunk)
            if entry is not None:
                bars.extend(entry.bars)
            bars.extend(b.as_bar() for b in computed.get(chunk, []))
        bars = combine_same_start(bars)
        if live is not None:
            bars = merge_open_bar(bars, live.as_bar())
        return bars
