"""Bars as plain lists (the form the cache, the SQL and the open bar share), how they combine, and what they turn
into for callers: a pandas frame for `indicators`, JSON-ready dicts for the APIs (docs/REFERENCE.md §3.4, §6).

No pandas on the hot path: combining and merging work on lists; the equivalence with `indicators.bars.merge_bars`
is tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from indicators.bars import BAR_COLUMNS

# [start epoch seconds, open, high, low, close, volume, oi, run] with None for missing values; ``run`` (internal) is
# the running maximum of the cumulative day volume at the bar's end, the volume base of the next bar that day.
Bar = list[Any]


def lua_number(value: float | None) -> str:
    """A number as the Lua scripts and Redis hashes hold it: ``repr`` of the float, ``""`` for none."""
    return "" if value is None else repr(float(value))


def redis_number(raw: Any) -> float | None:
    """The inverse of :func:`lua_number` on what Redis returns (bytes or str; None or empty for none)."""
    if raw is None or raw in (b"", ""):
        return None
    return float(raw)


def combine_same_start(bars: Sequence[Bar]) -> list[Bar]:
    """Bars sorted by start; bars of two chunks with the same start (ticks on both sides of local midnight in one
    bucket) combined: open of the earlier, close/oi of the later, high/low extremes, volumes added. Bars are not
    copied unless combined (the caller must not mutate them)."""
    ordered = bars if all(bars[i][0] < bars[i + 1][0] for i in range(len(bars) - 1)) else sorted(
        bars, key=lambda b: b[0])
    out: list[Bar] = []
    for bar in ordered:
        if out and out[-1][0] == bar[0]:
            prev = out[-1]
            volume = None if prev[5] is None and bar[5] is None else (prev[5] or 0.0) + (bar[5] or 0.0)
            out[-1] = [prev[0], prev[1], max(prev[2], bar[2]), min(prev[3], bar[3]), bar[4], volume,
                       bar[6] if bar[6] is not None else prev[6], bar[7]]
        else:
            out.append(bar)
    return out


def merge_open_bar(bars: list[Bar], live: Bar) -> list[Bar]:
    """`indicators.bars.merge_bars` for one open bar on plain lists (no pandas on the hot path; the equivalence is
    tested): a bar with the same start is combined (database open, high/low extremes, the open bar's close and
    oi where it has them, the larger volume), otherwise the open bar is inserted in time order."""
    def nanmax(a: float | None, b: float | None) -> float | None:
        return b if a is None else (a if b is None else max(a, b))

    def nanmin(a: float | None, b: float | None) -> float | None:
        return b if a is None else (a if b is None else min(a, b))

    for i, bar in enumerate(bars):
        if bar[0] == live[0]:
            merged = [bar[0], bar[1] if bar[1] is not None else live[1], nanmax(bar[2], live[2]),
                      nanmin(bar[3], live[3]), live[4] if live[4] is not None else bar[4], nanmax(bar[5], live[5]),
                      live[6] if live[6] is not None else bar[6], nanmax(bar[7], live[7])]
            return bars[:i] + [merged] + bars[i + 1:]
    out = [*bars, list(live)]
    return sorted(out, key=lambda b: b[0]) if bars and bars[-1][0] > live[0] else out


def bars_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """Bars as the frame `indicators` uses: ``time`` (tz-aware UTC bar start), float64 OHLCV + OI (NaN = none)."""
    if not bars:
        frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS[1:]})
        frame.insert(0, "time", pd.Series(pd.DatetimeIndex([], tz="UTC")))
        return frame
    # column by column (None -> NaN): no per-bar temporaries
    columns = {name: np.array([bar[i] for bar in bars], dtype="float64")
               for i, name in enumerate(BAR_COLUMNS[1:], start=1)}
    frame = pd.DataFrame(columns)
    frame.insert(0, "time", pd.to_datetime(np.array([bar[0] for bar in bars], dtype="int64"), unit="s", utc=True))
    return frame


def bar_dicts(bars: Sequence[Bar]) -> list[dict[str, Any]]:
    """Bars as JSON-ready dicts (docs/REFERENCE.md §3.4/§6): time ISO-8601 UTC, numbers or None."""
    out = []
    for t, o, h, lo, c, v, oi, *_ in bars:
        out.append({"time": datetime.fromtimestamp(t, UTC).isoformat(), "open": o, "high": h, "low": lo, "close": c,
                    "volume": v, "oi": oi})
    return out
