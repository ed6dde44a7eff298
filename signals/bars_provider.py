"""Recent bars for computations. The bars issue replaces the body with the cached/aggregate path; until then bars
come straight from raw ticks with date_bin aligned to the session open."""

from __future__ import annotations

from typing import Any


def recent_bars(instrument_key: str, timeframe: str, until_ts: float, count: int) -> list[dict[str, Any]]:
    return []
