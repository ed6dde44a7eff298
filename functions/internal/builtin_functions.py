"""The built-in internal functions: ``price``, ``vwap_deviation``, ``zscore``, ``oi_change``, ``put_call_ratio``.

Each registers itself with :func:`functions.internal.registry.register` when this module is imported (the
:mod:`functions.internal` package does that).  Signature, ``tick``/``bars``/``params`` contents and the result
convention: see :mod:`functions.internal.registry`.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from decimal import Decimal
from numbers import Real
from typing import Any

from functions.internal.registry import Param, register


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, bool, non-numeric, NaN/inf)."""
    if type(value) is float:  # the common case, checked first: ABC isinstance checks cost microseconds
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (Real, Decimal)):
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return f if math.isfinite(f) else None
    return None


def _ts(value: Any) -> str | None:
    """A timestamp as an ISO-8601 string (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)


def _pct(change: float | None, base: float | None) -> float | None:
    if change is None or base is None or base == 0:
        return None
    return change / abs(base) * 100.0


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _bar_value(bar: Any, key: str) -> float | None:
    return _num(bar.get(key)) if isinstance(bar, Mapping) else None


# ----------------------------------------------------------------------------------------------------------------
# built-in internal functions


@register("price", params={}, needs_bars=False)
def price(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Last traded price and its change since the previous tick.

    Returns ``ltp``, ``previous_ltp``, ``change`` (ltp − previous ltp), ``change_pct`` (change / |previous| ×
    100; ``None`` when the previous ltp is 0 or unknown), ``timestamp`` (tick time, ISO) and
    ``previous_timestamp``.  The previous tick comes from ``tick["previous"]`` (``{"ltp", "timestamp"}`` or None).
    """
    ltp = _num(tick.get("ltp"))
    previous = tick.get("previous")
    prev_ltp = _num(previous.get("ltp")) if isinstance(previous, Mapping) else None
    prev_ts = previous.get("timestamp") if isinstance(previous, Mapping) else None
    change = _diff(ltp, prev_ltp)
    return {
        "ltp": ltp,
        "previous_ltp": prev_ltp,
        "change": change,
        "change_pct": _pct(change, prev_ltp),
        "timestamp": _ts(tick.get("timestamp")),
        "previous_timestamp": _ts(prev_ts),
    }


@register(
    "vwap_deviation",
    params={
        "length": Param(
            "int",
            minimum=1,
            maximum=100_000,
            nullable=True,
            description="use only the last N bars (default: all)",
        )
    },
)
def vwap_deviation(
    tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Deviation of the last price from the VWAP of the bars.

    VWAP = Σ(typical price × volume) / Σ volume with typical price = (high + low + close) / 3, over all bars or
    the last ``length``; bars with a missing value or non-positive volume are skipped.  Returns ``vwap``,
    ``ltp`` (tick ltp, else the last bar's close), ``deviation`` (ltp − vwap), ``deviation_pct``
    (deviation / vwap × 100) and ``bars_used``; values are ``None`` when no volume traded.
    """
    length = params.get("length")
    window = bars[-length:] if length else bars
    weighted = 0.0
    volume_total = 0.0
    used = 0
    for bar in window:
        high, low, close, volume = (_bar_value(bar, k) for k in ("high", "low", "close", "volume"))
        if high is None or low is None or close is None or volume is None or volume <= 0:
            continue
        weighted += (high + low + close) / 3.0 * volume
        volume_total += volume
        used += 1
    vwap = weighted / volume_total if volume_total > 0 else None
    ltp = _num(tick.get("ltp"))
    if ltp is None and bars:
        ltp = _bar_value(bars[-1], "close")
    deviation = _diff(ltp, vwap)
    return {
        "vwap": vwap,
        "ltp": ltp,
        "deviation": deviation,
        "deviation_pct": _pct(deviation, vwap),
        "bars_used": used,
    }


@register(
    "zscore",
    params={
        "length": Param("int", default=20, minimum=2, maximum=10_000, description="window length in bars"),
        "ddof": Param(
            "int", default=1, choices=(0, 1), description="1 = sample std (pandas), 0 = population"
        ),
    },
)
def zscore(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Rolling z-score of the close over the last ``length`` bars (default 20).

    ``zscore`` = (latest close − mean) / std of the last ``length`` closes (the latest close is ``bars[-1]``,
    the still-open bar, i.e. the current price); std uses ``ddof`` (default 1, like pandas' rolling std).
    Returns ``zscore``, ``close``, ``mean``, ``std``, ``length``; all ``None`` (except ``length``) until
    ``length`` closes exist, and ``zscore`` is ``None`` when std is 0.
    """
    length = int(params.get("length", 20))
    ddof = int(params.get("ddof", 1))
    closes = [c for c in (_bar_value(bar, "close") for bar in bars) if c is not None]
    window = closes[-length:]
    if len(window) < length or len(window) - ddof <= 0:
        return {
            "zscore": None,
            "close": window[-1] if window else None,
            "mean": None,
            "std": None,
            "length": length,
        }
    mean = math.fsum(window) / len(window)
    variance = math.fsum((x - mean) ** 2 for x in window) / (len(window) - ddof)
    std = math.sqrt(variance)
    last = window[-1]
    z = (last - mean) / std if std > 0 else None
    return {"zscore": z, "close": last, "mean": mean, "std": std, "length": length}


@register("oi_change", params={})
def oi_change(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Open-interest change versus the first bar of the window and versus the previous (last completed) bar.

    Current OI = ``tick["oi"]``, else the last bar's OI.  The first bar is ``bars[0]``; the previous bar is
    ``bars[-2]`` (``bars[-1]`` is the still-open current bar, docs/REFERENCE.md §5).  Returns ``oi``, ``first_oi``,
    ``previous_oi``, ``oi_change_first``, ``oi_change_first_pct``, ``oi_change_prev``, ``oi_change_prev_pct``
    (percent of |base|; ``None`` when the base is 0 or unknown).
    """
    oi = _num(tick.get("oi"))
    if oi is None and bars:
        oi = _bar_value(bars[-1], "oi")
    first_oi = _bar_value(bars[0], "oi") if bars else None
    previous_oi = _bar_value(bars[-2], "oi") if len(bars) >= 2 else None
    change_first = _diff(oi, first_oi)
    change_prev = _diff(oi, previous_oi)
    return {
        "oi": oi,
        "first_oi": first_oi,
        "previous_oi": previous_oi,
        "oi_change_first": change_first,
        "oi_change_first_pct": _pct(change_first, first_oi),
        "oi_change_prev": change_prev,
        "oi_change_prev_pct": _pct(change_prev, previous_oi),
    }


_RIGHTS = {"call": "call", "ce": "call", "c": "call", "put": "put", "pe": "put", "p": "put"}


def _chain_right_and_expiry(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    right = entry.get("right")
    expiry = entry.get("expiry") or entry.get("expiry_date")
    key = entry.get("instrument_key")
    if isinstance(key, str):
        parts = key.split("@")  # EXCHANGE@SYMBOL@options@EXPIRY@RIGHT@STRIKE
        if len(parts) >= 5:
            right = right or parts[4]
            expiry = expiry or parts[3]
    normalised = _RIGHTS.get(right.strip().lower()) if isinstance(right, str) else None
    return normalised, _ts(expiry)


@register(
    "put_call_ratio",
    params={
        "chain": Param(
            "list", nullable=True, description="chain snapshot (if the pipeline passes none in the tick)"
        ),
        "expiry": Param("str", nullable=True, description="only contracts of this expiry (YYYY-MM-DD)"),
    },
    needs_bars=False,
    needs_chain=True,
)
def put_call_ratio(
    tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Put/call ratios of an underlying's option chain: by open interest and by volume.

    The chain snapshot is ``params["chain"]`` when a config gives one, else ``tick["chain"]`` (the pipeline's: the
    latest tick of every listed option of the tick's underlying): a list of ``{"right": "call"|"put" (CE/PE accepted), "oi": …, "volume": …}``; ``right``
    and ``expiry`` may instead come from an ``instrument_key``.  With ``params["expiry"]`` only that expiry
    counts.  Returns ``oi_pcr`` = put OI / call OI and ``volume_pcr`` = put volume / call volume (``None`` when
    the call side is 0 or no chain is available), the four totals and ``contracts`` (entries counted).
    """
    chain = params.get("chain")
    if chain is None:
        chain = tick.get("chain")
    totals = {"call_oi": 0.0, "put_oi": 0.0, "call_volume": 0.0, "put_volume": 0.0}
    contracts = 0
    if chain is not None and not isinstance(chain, (list, tuple)):
        raise ValueError("the chain snapshot must be a list of {right, oi, volume} objects")
    wanted_expiry = params.get("expiry")
    for entry in chain or []:
        if not isinstance(entry, Mapping):
            continue
        right, expiry = _chain_right_and_expiry(entry)
        if right is None:
            continue
        if wanted_expiry and (expiry or "")[:10] != wanted_expiry:
            continue
        contracts += 1
        totals[f"{right}_oi"] += _num(entry.get("oi")) or 0.0
        totals[f"{right}_volume"] += _num(entry.get("volume")) or 0.0
    available = chain is not None
    return {
        "oi_pcr": totals["put_oi"] / totals["call_oi"] if totals["call_oi"] > 0 else None,
        "volume_pcr": totals["put_volume"] / totals["call_volume"] if totals["call_volume"] > 0 else None,
        **{k: (v if available else None) for k, v in totals.items()},
        "contracts": contracts,
    }
