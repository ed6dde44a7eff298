"""Moneyness and option-chain views of a `ChainSnapshot` (docs/REFERENCE.md §4): a level's strikes and Greeks,
the ATM implied volatility, the whole chain. The strike arithmetic is in :mod:`greeks.moneyness` (no Django).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from greeks import GREEK_NAMES, moneyness
from signals.options.chains import ChainSnapshot


class LevelError(ValueError):
    """A moneyness level that is not ATM, ITM, OTM, ITMn, OTMn or Dnn."""


def parse_level(text: str) -> str:
    """Validate a level and return its canonical spelling (``atm`` -> ``ATM``, ``d25`` -> ``D25``)."""
    try:
        level = moneyness.parse_level(text)
    except ValueError as exc:
        raise LevelError(str(exc)) from None
    if level.kind == "DELTA":
        return f"D{level.n}"
    return level.kind + (str(level.n) if level.n is not None else "")


def _option_view(snapshot: ChainSnapshot, right: str, strike: float) -> dict[str, Any]:
    key = (snapshot.calls if right == "call" else snapshot.puts).get(strike)
    return option_view(key, strike, snapshot.entries.get(key) if key else None)


def option_view(key: str | None, strike: float, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One side of a chain row: the option's latest Greeks entry as the option chain (REST and WebSocket) shows it."""
    view: dict[str, Any] = {"instrument_key": key, "strike": strike_number(strike)}
    if entry is None:
        view.update({name: None for name in GREEK_NAMES})
        view.update({"option_price": None, "underlying_price": None, "sigma_source": None, "oi": None,
                     "status": "no_greeks" if key else "not_listed", "timestamp": None})
        return view
    view.update(entry.get("greeks") or {name: None for name in GREEK_NAMES})
    view.update({"option_price": entry.get("option_price"), "underlying_price": entry.get("underlying_price"),
                 "sigma_source": entry.get("sigma_source"), "oi": entry.get("oi"), "status": entry.get("status"),
                 "stale_underlying": entry.get("stale_underlying", False), "timestamp": entry.get("timestamp")})
    return view


def strike_number(strike: float) -> float | int:
    """A strike for JSON: whole strikes as integers (22500, not 22500.0)."""
    return int(strike) if float(strike).is_integer() else float(strike)


def _average(views: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in GREEK_NAMES:
        values = [v[name] for v in views if v.get(name) is not None]
        out[name] = math.fsum(values) / len(values) if values else None
    out["count"] = sum(1 for v in views if v.get("iv") is not None or v.get("delta") is not None)
    return out


def atm_index(snapshot: ChainSnapshot) -> int | None:
    """Index in ``snapshot.strikes`` of the listed strike nearest the reference price (lower strike on a tie)."""
    if snapshot.reference_price is None or snapshot.strikes.size == 0:
        return None
    strike = moneyness.atm_strike(snapshot.strikes, float(snapshot.reference_price))
    if not math.isfinite(strike):
        return None
    return int(np.flatnonzero(snapshot.strikes == strike)[0])


def level_strikes(snapshot: ChainSnapshot, level: str, strike_step: float | None = None
                  ) -> tuple[list[float], list[float], str | None]:
    """(call strikes, put strikes, reason when both are empty) of a level (see :mod:`greeks.moneyness`).

    ITMn/OTMn count listed strikes from ATM; with ``strike_step`` they are ATM ± n·step instead (empty when that
    strike is not listed). Dnn uses the deltas of the latest Greeks."""
    level = parse_level(level)
    atm = atm_index(snapshot)
    if atm is None:
        reason = "no listed strikes" if snapshot.strikes.size == 0 else \
            f"no price for {snapshot.reference_key} to find the ATM strike"
        return [], [], reason
    atm_k = float(snapshot.strikes[atm])
    sides: dict[str, list[float]] = {}
    for right in ("call", "put"):
        deltas = snapshot.greeks_array(right, "delta") if level.startswith("D") else None
        if strike_step and level[:3] in ("ITM", "OTM") and len(level) > 3:
            n = int(level[3:])
            up = (level[:3] == "OTM") == (right == "call")
            target = atm_k + (n if up else -n) * strike_step
            listed = snapshot.strikes[np.isclose(snapshot.strikes, target, rtol=0, atol=1e-6)]
            sides[right] = [float(k) for k in listed[:1]]
        else:
            sides[right] = [float(k) for k in moneyness.level_strikes(snapshot.strikes, atm_k, level, right, deltas)]
    calls, puts = sides["call"], sides["put"]
    if calls or puts:
        return calls, puts, None
    if level.startswith("D"):
        return calls, puts, "no option of this expiry has a delta yet"
    return calls, puts, f"no listed strike at {level} for this expiry"


def level_view(snapshot: ChainSnapshot, level: str, strike_step: float | None = None) -> dict[str, Any]:
    """A level's strikes and their call/put Greeks, plus averages of each side."""
    calls, puts, reason = level_strikes(snapshot, level, strike_step)
    atm = atm_index(snapshot)
    call_views = [_option_view(snapshot, "call", k) for k in calls]
    put_views = [_option_view(snapshot, "put", k) for k in puts]
    body = {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "level": level.upper(),
        "model": snapshot.model, "spot": snapshot.reference_price, "spot_key": snapshot.reference_key,
        "atm_strike": strike_number(float(snapshot.strikes[atm])) if atm is not None else None,
        "timestamp": snapshot.timestamp,
        "strikes": sorted({strike_number(k) for k in calls + puts}),
        "calls": call_views, "puts": put_views,
        "averages": {"call": _average(call_views), "put": _average(put_views)},
    }
    if reason:
        body["reason"] = reason
    return body


def atm_iv_view(snapshot: ChainSnapshot) -> dict[str, Any]:
    """IV at the reference price, interpolated between the bracketing strikes (call and put averaged where both
    solve): ``{iv, call_iv, put_iv, atm_strike, spot, timestamp, ...}``."""
    atm = atm_index(snapshot)
    body: dict[str, Any] = {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "model": snapshot.model,
        "iv": None, "call_iv": None, "put_iv": None,
        "atm_strike": strike_number(float(snapshot.strikes[atm])) if atm is not None else None,
        "spot": snapshot.reference_price, "spot_key": snapshot.reference_key, "timestamp": snapshot.timestamp,
    }
    if atm is None:
        body["reason"] = "no listed strikes" if snapshot.strikes.size == 0 else \
            f"no price for {snapshot.reference_key}"
        return body
    body.update(interpolate_atm_iv(snapshot.strikes, snapshot.greeks_array("call", "iv"),
                                   snapshot.greeks_array("put", "iv"), float(snapshot.reference_price)))
    if body["iv"] is None:
        body["reason"] = "no implied volatility on both sides of the spot (no extrapolation)"
    return body


def interpolate_atm_iv(strikes: np.ndarray, call_iv: np.ndarray, put_iv: np.ndarray, spot: float
                       ) -> dict[str, float | None]:
    """``{iv, call_iv, put_iv}`` at ``spot``: call and put averaged per strike where both solve, and each side
    alone (:func:`greeks.moneyness.atm_iv`); None where the spot is not bracketed."""
    none = np.full(strikes.shape, np.nan)
    found = {"iv": moneyness.atm_iv(strikes, call_iv, put_iv, spot),
             "call_iv": moneyness.atm_iv(strikes, call_iv, none, spot),
             "put_iv": moneyness.atm_iv(strikes, none, put_iv, spot)}
    return {name: (float(v) if math.isfinite(v) else None) for name, v in found.items()}


def chain_view(snapshot: ChainSnapshot) -> dict[str, Any]:
    """Every listed strike with its call and put Greeks, the spot and the ATM strike."""
    atm = atm_index(snapshot)
    rows = [{"strike": strike_number(float(k)), "call": _option_view(snapshot, "call", float(k)) if float(k) in
             snapshot.calls else None, "put": _option_view(snapshot, "put", float(k)) if float(k) in
             snapshot.puts else None} for k in snapshot.strikes]
    return {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "model": snapshot.model,
        "spot": snapshot.reference_price, "spot_key": snapshot.reference_key,
        "atm_strike": strike_number(float(snapshot.strikes[atm])) if atm is not None else None,
        "timestamp": snapshot.timestamp, "strikes": rows,
    }
