"""Moneyness helpers (docs/REFERENCE.md §4): ATM strike, strike levels, ATM implied volatility. Pure functions, no I/O.

Prices and strikes are in the currency of the underlying; for ``black76`` chains pass the future as ``spot``.
Implied volatilities are decimals. Strike lists may be unsorted and contain duplicates or NaN (ignored).

Level strings (case-insensitive, surrounding blanks ignored):

* ``"ATM"`` — the ATM strike;
* ``"ITMn"`` / ``"OTMn"`` (n ≥ 1) — the strike n listed steps from ATM towards in / out of the money: for calls ITM
  is below ATM and OTM above it; for puts it is mirrored (ITM above, OTM below);
* ``"ITM"`` / ``"OTM"`` — every listed strike strictly in / out of the money relative to ATM (sorted ascending);
* ``"Dnn"`` (1 ≤ nn ≤ 99, e.g. ``"D25"``, ``"D10"``) — the strike whose |delta| is nearest nn/100, given the deltas of
  that right's options at each strike (NaN deltas ignored; a tie goes to the lower strike).
"""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

Right = Literal["call", "put"]
_LEVEL_RE = re.compile(r"^(ATM|ITM|OTM)(\d*)$|^D(\d{1,2})$")
_CALL_NAMES = {"c", "call", "ce"}
_PUT_NAMES = {"p", "put", "pe"}


class Level(NamedTuple):
    """A parsed level: kind is "ATM", "ITM", "OTM" or "DELTA"; n is the step count (None = all such strikes)
    for ITM/OTM, the delta in percent for DELTA, None for ATM."""

    kind: str
    n: int | None


def parse_level(level: str) -> Level:
    """Parse and validate a level string; raise ValueError with the accepted forms otherwise."""
    if not isinstance(level, str):
        raise ValueError(f"level must be a string, got {type(level).__name__}")
    text = level.strip().upper()
    m = _LEVEL_RE.match(text)
    if m is None:
        raise ValueError(f"invalid level {level!r}: expected 'ATM', 'ITM', 'OTM', 'ITMn', 'OTMn' (n >= 1) or "
                         f"'Dnn' (delta in percent, 1..99, e.g. 'D25')")
    kind, steps, delta = m.groups()
    if delta is not None:
        d = int(delta)
        if not 1 <= d <= 99:
            raise ValueError(f"invalid level {level!r}: delta level must be between D1 and D99")
        return Level("DELTA", d)
    if kind == "ATM":
        if steps:
            raise ValueError(f"invalid level {level!r}: 'ATM' takes no step count")
        return Level("ATM", None)
    if steps == "":
        return Level(kind, None)
    n = int(steps)
    if n < 1:
        raise ValueError(f"invalid level {level!r}: the step count must be >= 1 (use 'ATM' for 0)")
    return Level(kind, n)


def parse_right(right: str) -> Right:
    """Normalise an option right: 'c'/'call'/'CE' → "call", 'p'/'put'/'PE' → "put" (ValueError otherwise)."""
    key = str(right).strip().lower()
    if key in _CALL_NAMES:
        return "call"
    if key in _PUT_NAMES:
        return "put"
    raise ValueError(f"invalid option right {right!r}: expected 'call'/'c'/'CE' or 'put'/'p'/'PE'")


def _listed(strikes: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(strikes, dtype=np.float64).reshape(-1)
    return np.unique(arr[np.isfinite(arr)])


def atm_strike(strikes: npt.ArrayLike, spot: float) -> float:
    """The listed strike nearest to ``spot``; on an exact tie between two strikes, the **lower** one.

    Returns NaN if ``spot`` is not a finite positive number or no finite strike is listed.
    """
    listed = _listed(strikes)
    if listed.size == 0 or not (math.isfinite(spot) and spot > 0):
        return math.nan
    i = int(np.searchsorted(listed, spot))  # listed[i-1] < spot <= listed[i]
    if i == 0:
        return float(listed[0])
    if i == listed.size:
        return float(listed[-1])
    lo, hi = listed[i - 1], listed[i]
    return float(hi) if hi - spot < spot - lo else float(lo)


def level_strikes(
    strikes: npt.ArrayLike,
    atm: float,
    level: str,
    right: str,
    deltas: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Strikes selected by ``level`` for options of ``right`` ("call"/"put"), around the ATM strike ``atm``.

    Returns a sorted float64 array: one strike for ATM/ITMn/OTMn/Dnn, all such strikes for ITM/OTM; empty when the
    level falls outside the listed strikes (or no finite delta is given). ``atm`` must be a listed strike
    (normally :func:`atm_strike`). ``deltas`` (required for Dnn) are aligned with ``strikes``.
    """
    parsed = parse_level(level)
    side = parse_right(right)
    if parsed.kind == "DELTA":
        if deltas is None:
            raise ValueError(f"level {level!r} needs the deltas of the {side} options at each strike")
        k = np.asarray(strikes, dtype=np.float64).reshape(-1)
        d = np.asarray(deltas, dtype=np.float64).reshape(-1)
        if k.shape != d.shape:
            raise ValueError(f"strikes and deltas differ in length ({k.size} != {d.size})")
        ok = np.isfinite(k) & np.isfinite(d)
        if not ok.any():
            return np.empty(0)
        k, d = k[ok], d[ok]
        order = np.argsort(k, kind="stable")
        k, d = k[order], d[order]
        dist = np.abs(np.abs(d) - parsed.n / 100.0)
        return np.array([k[int(np.argmin(dist))]])  # argmin returns the first (lowest strike) on ties
    listed = _listed(strikes)
    pos = np.flatnonzero(listed == atm)
    if pos.size == 0:
        raise ValueError(f"atm strike {atm!r} is not among the listed strikes")
    i = int(pos[0])
    if parsed.kind == "ATM":
        return listed[i:i + 1].copy()
    # Direction in strike order: +1 = higher strikes. Calls: ITM below (−1), OTM above (+1); puts mirrored.
    towards_higher = (parsed.kind == "OTM") == (side == "call")
    if parsed.n is None:
        return listed[i + 1:].copy() if towards_higher else listed[:i].copy()
    j = i + parsed.n if towards_higher else i - parsed.n
    if j < 0 or j >= listed.size:
        return np.empty(0)
    return listed[j:j + 1].copy()


def atm_iv(
    strikes: npt.ArrayLike, call_iv: npt.ArrayLike, put_iv: npt.ArrayLike, spot: float
) -> float:
    """Implied volatility at the spot, linearly interpolated in strike between the bracketing strikes.

    At each strike the IV is the mean of the call and put IVs where both are finite (solved), else whichever is
    finite, else the strike is skipped. The bracket is the nearest usable strike at or below the spot and the
    nearest at or above it; if the spot is exactly on a usable strike its IV is returned. Returns NaN when the spot
    is not bracketed by usable strikes (no extrapolation) or is not a finite positive number. Decimal IV.
    """
    k = np.asarray(strikes, dtype=np.float64).reshape(-1)
    c = np.broadcast_to(np.asarray(call_iv, dtype=np.float64).reshape(-1), k.shape)
    p = np.broadcast_to(np.asarray(put_iv, dtype=np.float64).reshape(-1), k.shape)
    if not (math.isfinite(spot) and spot > 0):
        return math.nan
    both = np.isfinite(c) & np.isfinite(p)
    iv = np.where(both, 0.5 * (c + p), np.where(np.isfinite(c), c, p))
    ok = np.isfinite(k) & np.isfinite(iv)
    if not ok.any():
        return math.nan
    k, iv = k[ok], iv[ok]
    order = np.argsort(k, kind="stable")
    k, iv = k[order], iv[order]
    # Duplicated strikes (several rows per strike): average them.
    uk, inverse = np.unique(k, return_inverse=True)
    if uk.size != k.size:
        iv = np.bincount(inverse, weights=iv) / np.bincount(inverse)
        k = uk
    i = int(np.searchsorted(k, spot))  # k[i-1] < spot <= k[i]
    if i < k.size and k[i] == spot:
        return float(iv[i])
    if i == 0 or i == k.size:
        return math.nan
    k0, k1 = k[i - 1], k[i]
    w = (spot - k0) / (k1 - k0)
    return float(iv[i - 1] + w * (iv[i] - iv[i - 1]))
