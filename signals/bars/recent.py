"""Recent bars for computations (internal/external functions, docs/REFERENCE.md §3.4): `signals.bars.service` — the Redis bar
cache, continuous aggregates or date_bin over raw ticks, merged with the still-open bar."""

from __future__ import annotations

from typing import Any


def recent_bars(instrument_key: str, timeframe: str, until_ts: float, count: int) -> list[dict[str, Any]]:
    """The last ``count`` bars of ``timeframe`` up to tick time ``until_ts`` (the last one is the bar containing
    it, as of that tick), oldest first: ``{time (ISO-8601 UTC bar start), open, high, low, close, volume, oi}``
    with None where a value is missing (volume before any cumulative volume was seen, oi for spot)."""
    from signals.bars.service import bar_dicts, get_service

    return bar_dicts(get_service().recent(instrument_key, timeframe, until_ts, count))
