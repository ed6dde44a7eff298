"""Indicators over stored bars: warm-up sizing, historical series and the latest-indicators cache (issue 5).

Warm-up
    Recursive indicators (EMA, RSI, ATR, MACD…) depend on every bar before the one evaluated. A value is computed
    with ``warmup_bars`` bars before it: ``max(SIGNAL_INDICATOR_WARMUP_MIN, SIGNAL_INDICATOR_WARMUP_FACTOR ×
    the longest period)`` (capped by ``SIGNAL_INDICATOR_WARMUP_MAX``), where the longest period is the largest of
    the indicator's integer parameters and of the bars TA-Lib needs before its first value. With the default
    factor 20, what the truncated history changes is below 1e-8 of the value for EMA/RSI/ATR/MACD, so the first
    value of a historical range is the value a full-history computation gives; the live path uses the same count,
    so historical and live values agree.

Latest-indicators cache (written by `signals.pipeline.computations.indicators`, read by the realtime API and the
``indicators`` WebSocket snapshot): ``latest_result("indicators", key, f"{timeframe}:{config_id}")`` per config
and ``latest_result("indicators", key, timeframe)`` for the newest of any config.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db import connection

from configs.models import SignalConfig
from configs.registry import registry
from feed import keys
from feed.instruments import key_matches
from indicators.compute import IndicatorSet, compile_indicators
from indicators.timeframes import parse_timeframe
from signals.bars.rows import bars_frame
from signals.bars.store import BarsService, get_service

_NOT_PERIODS = frozenset({"offset", "ddof", "drift", "scalar", "c", "std", "multiplier", "percent"})


def indicator_periods(indicators: IndicatorSet) -> list[int]:
    """The longest period of each compiled indicator (see the module docstring)."""
    out = []
    for ind in indicators.indicators:
        ints = [int(v) for k, v in ind.spec.parameters
                if k not in _NOT_PERIODS and isinstance(v, int | float) and not isinstance(v, bool) and v >= 1
                and float(v).is_integer()]
        longest = max(ints, default=0)
        if ind.fast is not None:
            longest = max(longest, ind.fast.min_bars)
        elif not ints:
            longest = 30  # pandas_ta defaults: periods up to ~30 bars
        out.append(longest)
    return out


def warmup_bars(indicators: IndicatorSet) -> int:
    longest = max(indicator_periods(indicators), default=0)
    factor = int(settings.SIGNAL_INDICATOR_WARMUP_FACTOR)
    return int(min(max(int(settings.SIGNAL_INDICATOR_WARMUP_MIN), factor * longest),
                   int(settings.SIGNAL_INDICATOR_WARMUP_MAX)))


def indicator_series(instrument_key: str, timeframe: str, start: float, end: float, specs: list[dict[str, Any]],
                     service: BarsService | None = None) -> dict[str, Any]:
    """Indicator values for every bar starting in ``[start, end)``, computed with ``warmup_bars`` bars before
    ``start``. Raises `indicators.specs.IndicatorConfigError` for bad specs."""
    service = service or get_service()
    compiled = compile_indicators(specs)
    tf = parse_timeframe(timeframe)
    warmup = warmup_bars(compiled)
    history = service.bars_before(instrument_key, tf, start, warmup)
    bars = service.bars(instrument_key, tf, start, end)
    frame = compiled.compute(bars_frame(history + bars))
    keys_out = compiled.output_keys
    values = frame.to_numpy(dtype="float64")[len(history):]
    cells = values.astype(object)
    cells[~np.isfinite(values)] = None  # warm-up NaN (and any infinity) -> null
    rows = [{"time": iso(bar[0]), **dict(zip(keys_out, row, strict=True))}
            for bar, row in zip(bars, cells.tolist(), strict=True)]
    return {"instrument_key": instrument_key, "timeframe": tf.name, "output_keys": keys_out,
            "warmup_bars": warmup, "warmup_available": len(history), "values": rows}


def cache_keys(instrument_key: str, timeframe: str, config_id: int) -> tuple[str, str]:
    """(per-config key, per instrument+timeframe key) of the latest-indicators cache."""
    return (keys.latest_result("indicators", instrument_key, f"{timeframe}:{config_id}"),
            keys.latest_result("indicators", instrument_key, timeframe))


def latest_entries(client: Any, instrument_key: str, timeframe: str) -> list[dict[str, Any]]:
    """Every cached latest-indicators entry for the instrument and timeframe: one per enabled config computing
    there (registry), plus the shared newest entry; newest first."""
    registry.refresh()
    wanted = [keys.latest_result("indicators", instrument_key, timeframe)]
    for config in registry.all():
        doc = config.document
        if doc.get("technical_indicators") and key_matches(config.pattern, instrument_key):
            try:
                interval = parse_timeframe(doc.get("interval", "1m")).name
            except ValueError:
                continue
            if interval == timeframe:
                wanted.append(cache_keys(instrument_key, timeframe, config.id)[0])
    entries = [json.loads(raw) for raw in client.mget(wanted) if raw]
    return sorted(entries, key=lambda e: e.get("timestamp") or "", reverse=True)


# the newest successful indicator results of an instrument at one timeframe; the pipeline stores them in
# signal_computed as computation_type "technical_indicators" with the timeframe in the results
_STORED_SQL = """
SELECT time, config_id, results FROM signal_computed
WHERE instrument_key = %s AND computation_type = 'technical_indicators' AND success AND results->>'timeframe' = %s
ORDER BY time DESC LIMIT %s
"""


def stored_entries(instrument_key: str, timeframe: str, scan: int = 500) -> list[dict[str, Any]]:
    """`latest_entries` from PostgreSQL (for when Redis is unreachable): each config's newest stored result among
    the instrument's ``scan`` newest at that timeframe; newest first."""
    with connection.cursor() as cursor:
        cursor.execute(_STORED_SQL, [instrument_key, timeframe, scan])
        rows = cursor.fetchall()
    newest: dict[int, tuple[Any, dict[str, Any]]] = {}
    for time, config_id, results in rows:
        newest.setdefault(config_id, (time, json.loads(results) if isinstance(results, str) else results))
    names = dict(SignalConfig.objects.filter(id__in=newest).values_list("id", "name"))
    return [{"instrument_key": instrument_key, "timeframe": timeframe, "timestamp": time.isoformat(),
             "bar_time": results.get("bar_time"), "config_id": config_id, "config_name": names.get(config_id),
             "values": results.get("values") or {}}
            for config_id, (time, results) in newest.items()]


def merged_latest(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Entries (newest first) merged by output key: each key's value from the newest entry that has it."""
    if not entries:
        return None
    values: dict[str, Any] = {}
    configs: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for entry in entries:
        for key, value in (entry.get("values") or {}).items():
            values.setdefault(key, value)
        if entry.get("config_id") not in seen:
            seen.add(entry.get("config_id"))
            configs.append({"config_id": entry.get("config_id"), "config_name": entry.get("config_name"),
                            "timestamp": entry.get("timestamp"), "bar_time": entry.get("bar_time")})
    newest = entries[0]
    return {"instrument_key": newest["instrument_key"], "timeframe": newest["timeframe"],
            "timestamp": newest.get("timestamp"), "bar_time": newest.get("bar_time"), "values": values,
            "configs": configs}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def json_bytes(value: Any) -> bytes:
    """JSON for Redis (orjson: NaN and infinities become null)."""
    return orjson.dumps(value)
