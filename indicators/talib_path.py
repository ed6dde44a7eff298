"""Fast path: indicators computed by calling TA-Lib directly on float64 arrays (no Django).

Indicators with a TA-Lib equivalent (:data:`FAST_INDICATORS`) are computed here, reproducing exactly (bit for bit)
the columns pandas_ta produces with its TA-Lib backend (its default), including its quirks: ``atr`` is TA-Lib's
Wilder ATR and is named ``ATRr_{n}``; ``bbands`` uses TA-Lib's population standard deviation (``ddof`` has no
effect, as in pandas_ta) and pandas_ta's epsilon guard for ``BBB``/``BBP``; ``macd`` swaps ``fast``/``slow`` if
given reversed; ``stoch`` passes ``d`` as TA-Lib's slow-%K period (``smooth_k`` only selects the TA-Lib path when
> 2); ``adx``'s ``DMP``/``DMN`` are TA-Lib's ``PLUS_DM``/``MINUS_DM``. ``supertrend`` (no TA-Lib equivalent) is a
NumPy port of pandas_ta's loop on TA-Lib's ATR, again identical. A spec with any parameter outside a fast path's
list (``offset``, ``fillna``, ``talib: false``, a non-default ``mamode``…) has no plan here and is computed by
pandas_ta itself (:mod:`indicators.pandas_ta_path`), as is every other indicator — including ``kama`` (pandas_ta's
own recursion, not TA-Lib's KAMA) and ``trix`` (EMA chain + pandas rolling mean, not TA-Lib's TRIX), whose values
TA-Lib would not match.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import talib

from indicators.catalogue import catalog, is_int, is_number

__all__ = ["FAST_INDICATORS", "FastPlan", "fast_plan"]

_EPS = sys.float_info.epsilon


@dataclass(frozen=True)
class FastPlan:
    columns: tuple[str, ...]
    min_bars: int  # pandas_ta returns nothing below this many bars → all-NaN columns
    inputs: tuple[str, ...]  # bar columns read, in order
    fn: Callable[..., list[np.ndarray]]


def _pos(params: Mapping[str, Any], key: str, default: Any) -> Any:
    """pandas_ta's ``v_pos_default``: the given value if > 0 (keeping its int/float type), else default."""
    value = params.get(key)
    if value is None or not is_number(value) or value <= 0:
        return default
    return int(value) if is_int(value) else float(value)


def _nzr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pandas_ta ``non_zero_range``: a - b, plus machine epsilon everywhere if any difference is exactly 0."""
    diff = a - b
    if (diff == 0).any():
        diff = diff + _EPS
    return diff


def _sources(params: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(params.get(n, n)) for n in names)


def _fast_rsi(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan((f"RSI_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.RSI(c, n)])


def _fast_sma(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 10)
    if n <= 1:
        return None
    return FastPlan((f"SMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.SMA(c, n)])


def _fast_ema(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 10)
    if n <= 1:
        return None
    return FastPlan((f"EMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.EMA(c, n)])


def _fast_wma(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"WMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.WMA(c, n)])


def _fast_dema(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"DEMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.DEMA(c, n)])


def _fast_tema(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"TEMA_{n}",), 3 * n, _sources(p, ("close",)), lambda c: [talib.TEMA(c, n)])


def _fast_roc(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"ROC_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.ROC(c, n)])


def _fast_mom(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"MOM_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.MOM(c, n)])


def _fast_macd(p: Mapping[str, Any]) -> FastPlan:
    fast, slow, signal = _pos(p, "fast", 12), _pos(p, "slow", 26), _pos(p, "signal", 9)
    if slow < fast:
        fast, slow = slow, fast
    props = f"_{fast}_{slow}_{signal}"

    def fn(c: np.ndarray) -> list[np.ndarray]:
        macd, sig, hist = talib.MACD(c, fast, slow, signal)
        return [macd, hist, sig]

    return FastPlan(
        (f"MACD{props}", f"MACDh{props}", f"MACDs{props}"), slow + signal - 1, _sources(p, ("close",)), fn
    )


def _fast_bbands(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("mamode", "sma")).lower() != "sma":
        return None
    n = _pos(p, "length", 5)
    std = _pos(p, "std", 2.0)
    props = f"_{n}_{std}"

    def fn(c: np.ndarray) -> list[np.ndarray]:
        upper, mid, lower = talib.BBANDS(c, n, std, std, talib.MA_Type.SMA)
        ulr = _nzr(upper, lower)
        return [lower, mid, upper, 100 * ulr / mid, _nzr(c, lower) / ulr]

    cols = tuple(f"{x}{props}" for x in ("BBL", "BBM", "BBU", "BBB", "BBP"))
    return FastPlan(cols, n, _sources(p, ("close",)), fn)


def _fast_atr(p: Mapping[str, Any]) -> FastPlan | None:
    if p.get("mamode", "rma") != "rma":  # pandas_ta names it ATR{mamode[0]}: only "rma" gives ATRr
        return None
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"ATRr_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.ATR(h, lo, c, n)],
    )


def _fast_natr(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"NATR_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.NATR(h, lo, c, n)],
    )


def _fast_willr(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"WILLR_{n}",), n, _sources(p, ("high", "low", "close")), lambda h, lo, c: [talib.WILLR(h, lo, c, n)]
    )


def _fast_cci(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    cval = _pos(p, "c", 0.015)
    return FastPlan(
        (f"CCI_{n}_{cval}",),
        n,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.CCI(h, lo, c, n)],
    )


def _fast_mfi(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"MFI_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close", "volume")),
        lambda h, lo, c, v: [talib.MFI(h, lo, c, v, n)],
    )


def _fast_obv(p: Mapping[str, Any]) -> FastPlan:
    return FastPlan(("OBV",), 1, _sources(p, ("close", "volume")), lambda c, v: [talib.OBV(c, v)])


def _fast_stoch(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("mamode", "sma")).lower() != "sma":
        return None
    k, d, smooth_k = _pos(p, "k", 14), _pos(p, "d", 3), _pos(p, "smooth_k", 3)
    if smooth_k <= 2:
        return None
    props = f"_{k}_{d}_{smooth_k}"

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        sk, sd = talib.STOCH(h, lo, c, k, d, talib.MA_Type.SMA, d, talib.MA_Type.SMA)
        return [sk, sd, sk - sd]

    cols = (f"STOCHk{props}", f"STOCHd{props}", f"STOCHh{props}")
    return FastPlan(cols, k + d + smooth_k, _sources(p, ("high", "low", "close")), fn)


def _fast_adx(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 14)
    if n <= 1:
        return None
    lensig = _pos(p, "lensig", n)
    adxr_n = _pos(p, "adxr_length", 2)

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        adx = talib.ADX(h, lo, c, n)
        prev = np.full_like(adx, np.nan)
        if adxr_n < adx.size:
            prev[adxr_n:] = adx[:-adxr_n]
        return [adx, 0.5 * (adx + prev), talib.PLUS_DM(h, lo, n), talib.MINUS_DM(h, lo, n)]

    cols = (f"ADX_{lensig}", f"ADXR_{lensig}_{adxr_n}", f"DMP_{n}", f"DMN_{n}")
    return FastPlan(cols, max(n + 1, lensig, adxr_n), _sources(p, ("high", "low", "close")), fn)


def _supertrend_loop(
    close: np.ndarray, lb: np.ndarray, ub: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pandas_ta 0.4.25 ``supertrend`` loop, verbatim on NumPy arrays (lb/ub modified in place)."""
    m = close.size
    dir_ = np.ones(m)
    trend = np.zeros(m)
    long = np.full(m, np.nan)
    short = np.full(m, np.nan)
    cl, lbl, ubl = close.tolist(), lb.tolist(), ub.tolist()
    d = 1.0
    for i in range(1, m):
        if cl[i] > ubl[i - 1]:
            d = 1.0
        elif cl[i] < lbl[i - 1]:
            d = -1.0
        else:
            if d > 0 and lbl[i] < lbl[i - 1]:
                lbl[i] = lbl[i - 1]
            if d < 0 and ubl[i] > ubl[i - 1]:
                ubl[i] = ubl[i - 1]
        dir_[i] = d
        if d > 0:
            trend[i] = long[i] = lbl[i]
        else:
            trend[i] = short[i] = ubl[i]
    trend[0] = np.nan
    dir_[:length] = np.nan
    return trend, dir_, long, short


def _fast_supertrend(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("atr_mamode", "rma")).lower() != "rma":
        return None
    n = _pos(p, "length", 7)
    atr_n = _pos(p, "atr_length", n)
    mult = _pos(p, "multiplier", 3.0)
    props = f"_{n}_{mult}"

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        hl2 = 0.5 * (h + lo)
        matr = mult * talib.ATR(h, lo, c, atr_n)
        return list(_supertrend_loop(c, hl2 - matr, hl2 + matr, n))

    cols = tuple(f"{x}{props}" for x in ("SUPERT", "SUPERTd", "SUPERTl", "SUPERTs"))
    return FastPlan(cols, max(n, atr_n) + 1, _sources(p, ("high", "low", "close")), fn)


_FAST: dict[str, tuple[frozenset[str], Callable[[Mapping[str, Any]], FastPlan | None]]] = {
    "rsi": (frozenset({"length"}), _fast_rsi),
    "sma": (frozenset({"length"}), _fast_sma),
    "ema": (frozenset({"length"}), _fast_ema),
    "wma": (frozenset({"length"}), _fast_wma),
    "dema": (frozenset({"length"}), _fast_dema),
    "tema": (frozenset({"length"}), _fast_tema),
    "roc": (frozenset({"length"}), _fast_roc),
    "mom": (frozenset({"length"}), _fast_mom),
    "macd": (frozenset({"fast", "slow", "signal"}), _fast_macd),
    "bbands": (frozenset({"length", "std", "ddof", "mamode"}), _fast_bbands),
    "atr": (frozenset({"length", "mamode"}), _fast_atr),
    "natr": (frozenset({"length"}), _fast_natr),
    "willr": (frozenset({"length"}), _fast_willr),
    "cci": (frozenset({"length", "c"}), _fast_cci),
    "mfi": (frozenset({"length"}), _fast_mfi),
    "obv": (frozenset(), _fast_obv),
    "stoch": (frozenset({"k", "d", "smooth_k", "mamode"}), _fast_stoch),
    "adx": (frozenset({"length", "lensig", "adxr_length"}), _fast_adx),
    "supertrend": (frozenset({"length", "atr_length", "multiplier", "atr_mamode"}), _fast_supertrend),
}
#: Indicators with a direct TA-Lib/NumPy path (used when all parameters are in that path's list).
FAST_INDICATORS: tuple[str, ...] = tuple(sorted(_FAST))


def fast_plan(name: str, params: Mapping[str, Any]) -> FastPlan | None:
    """The fast path for a normalised spec, or None when pandas_ta must compute it (see the module docstring)."""
    entry = _FAST.get(name)
    if entry is None:
        return None
    allowed, factory = entry
    info = catalog()[name]
    for key, value in params.items():
        if key == "talib" and value is True:
            continue
        if info.params.get(key) is not None and info.params[key].kind == "source":
            continue
        if key not in allowed:
            return None
    return factory(params)
