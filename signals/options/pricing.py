"""Pricing of option quotes against their underlying, shared by the live pipeline and the history command.

Plain NumPy over :func:`greeks.engine.solve_chain`: no Django, no Redis. A caller gathers every (option tick, price
field) of a batch into arrays — option price, the underlying's matching value and time, the strike, expiry and
right, INDVIX — and gets one `Priced` back from a single vectorised solve. Rows that cannot be priced honestly get
NaN numbers and a status naming the reason, never a made-up figure:

* ``no_price`` — the tick has no value for that price field (e.g. no ``open``);
* ``no_underlying`` — no underlying value (of the matching field) at or before the tick's time;
* the engine's statuses (``ok``, ``below_intrinsic``, ``above_max_price``, ``expired``, ``bad_input``,
  ``no_time_value``, ``ill_conditioned``; see :class:`greeks.engine.Status`).

Where the IV cannot be solved from valid market data and INDVIX is allowed (``use_indvix``) and known at the tick's
time, price and Greeks use INDVIX/100 and ``sigma_source`` is ``"indvix"``; ``iv`` stays null because no implied
volatility exists for that price. ``stale_underlying`` flags rows whose underlying value is older than the
staleness tolerance (in tick time); their figures are computed but must be read with that flag.

Units are vollib's (see :mod:`greeks.engine`): theta per calendar day, vega and rho per percentage point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np

from feed.instruments import Instrument
from greeks import GREEK_NAMES
from greeks.engine import SIGMA_SOURCE_NAMES, STATUS_NAMES, UNSOLVABLE_STATUSES, Status, solve_chain
from greeks.expiry import SECONDS_PER_YEAR, expiry_cutoff

NO_PRICE = "no_price"
NO_UNDERLYING = "no_underlying"
STALE_FLAG = "stale_underlying"

_NO_PRICE_CODE = 100
_NO_UNDERLYING_CODE = 101
_STATUS_TEXT = {**STATUS_NAMES, _NO_PRICE_CODE: NO_PRICE, _NO_UNDERLYING_CODE: NO_UNDERLYING}
_REASONS = {
    int(Status.BELOW_INTRINSIC): "option price is below its intrinsic value",
    int(Status.ABOVE_MAX_PRICE): "option price is at or above its no-arbitrage maximum",
    int(Status.EXPIRED): "option has expired: intrinsic value, no implied volatility",
    int(Status.BAD_INPUT): "non-positive or non-finite price, strike or underlying",
    int(Status.NO_TIME_VALUE): "time value is lost in the rounding of the price: volatility is not determined",
    int(Status.ILL_CONDITIONED): "price too close to its maximum: volatility is not determined",
    _NO_PRICE_CODE: "the tick has no value for this price field",
    _NO_UNDERLYING_CODE: "no underlying value at or before the tick's time",
}


@lru_cache(maxsize=4096)
def expiry_timestamp(expiry: date) -> float:
    """Epoch seconds of the expiry cut-off, 15:30 IST on the expiry date (`greeks.expiry.expiry_cutoff`)."""
    return expiry_cutoff(expiry).timestamp()


def time_to_expiry(tick_ts: np.ndarray | float, expiry_ts: np.ndarray | float) -> np.ndarray:
    """Years of 365 days from tick time to the expiry cut-off (<= 0 once expired), vectorised; the same
    arithmetic as `greeks.expiry.time_to_expiry`, on pre-computed cut-off instants."""
    return (np.asarray(expiry_ts, dtype=np.float64) - np.asarray(tick_ts, dtype=np.float64)) / SECONDS_PER_YEAR


@dataclass
class Priced:
    """Per-row results of `price_quotes`; every array has one element per input row."""

    option_price: np.ndarray
    underlying_price: np.ndarray
    time_to_expiry: np.ndarray
    iv: np.ndarray
    sigma: np.ndarray
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray
    status: np.ndarray  # int16 codes, named in _STATUS_TEXT
    sigma_source: np.ndarray  # int8: 0 none, 1 implied, 2 indvix
    stale: np.ndarray  # bool
    use_indvix: bool
    vix_known: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.status.shape[0])

    def reason(self, i: int) -> str | None:
        """Why the figures of row i are null (or came from INDVIX), in words; None for a clean solve."""
        code = int(self.status[i])
        text = _REASONS.get(code)
        if text is None:
            return None
        if code in UNSOLVABLE_STATUSES:
            if int(self.sigma_source[i]) == 2:
                return text + "; priced with INDVIX/100"
            if not self.use_indvix:
                return text + "; INDVIX fallback is disabled for this config"
            if not self.vix_known[i]:
                return text + "; no INDVIX value at or before the tick's time"
        return text

    def _columns(self) -> dict[str, list[Any]]:
        """Every column as a Python list (NaN -> None), built once: rows are then plain list lookups."""
        cols = self.__dict__.get("_cols")
        if cols is None:
            cols = {name: _pylist(getattr(self, name)) for name in _FLOAT_COLUMNS}
            cols["time_to_expiry"] = _pylist(np.maximum(self.time_to_expiry, 0.0))
            cols["status"] = [_STATUS_TEXT[c] for c in self.status.tolist()]
            cols["sigma_source"] = [SIGMA_SOURCE_NAMES[c] if c else None for c in self.sigma_source.tolist()]
            cols["stale"] = self.stale.tolist()
            self.__dict__["_cols"] = cols
        return cols

    def row(self, i: int, calculate: tuple[str, ...] | list[str] = GREEK_NAMES) -> dict[str, Any]:
        """Row i as the JSON object of one price field (docs/REFERENCE.md §3.5): only the ``calculate`` Greeks; None not NaN."""
        c = self._columns()
        out: dict[str, Any] = {name: c[name][i] for name in calculate}
        out["price"] = c["price"][i]
        out["option_price"] = c["option_price"][i]
        out["underlying_price"] = c["underlying_price"][i]
        out["time_to_expiry"] = c["time_to_expiry"][i]
        out["sigma"] = c["sigma"][i]
        out["sigma_source"] = c["sigma_source"][i]
        status = out["status"] = c["status"][i]
        out["stale_underlying"] = c["stale"][i]
        if status != "ok":
            out["reason"] = self.reason(i)
        return out

    def rows(self, calculate: tuple[str, ...] | list[str] = GREEK_NAMES) -> list[dict[str, Any]]:
        """Every row as `row` gives it, built column-wise (a batch prices thousands of rows: per-row lookups of
        every column cost more than the solve)."""
        c = self._columns()
        names = (*calculate, "price", "option_price", "underlying_price", "time_to_expiry", "sigma", "sigma_source",
                 "status", "stale_underlying")
        columns = [c[name] for name in calculate]
        columns += [c["price"], c["option_price"], c["underlying_price"], c["time_to_expiry"], c["sigma"],
                    c["sigma_source"], c["status"], c["stale"]]
        out = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        for i, status in enumerate(c["status"]):
            if status != "ok":
                out[i]["reason"] = self.reason(i)
        return out

    def db_row(self, i: int, calculate: tuple[str, ...] | list[str] = GREEK_NAMES) -> dict[str, Any]:
        """Row i for the typed Greeks table: the Greeks not calculated are null; a stale underlying is recorded in
        the status column as ``"<status>|stale_underlying"``."""
        c = self._columns()
        status = c["status"][i]
        if c["stale"][i]:
            status += "|" + STALE_FLAG
        out = {name: (c[name][i] if name in calculate else None) for name in GREEK_NAMES}
        out.update(option_price=c["option_price"][i], underlying_price=c["underlying_price"][i],
                   time_to_expiry=c["time_to_expiry"][i], sigma=c["sigma"][i],
                   sigma_source=c["sigma_source"][i] or "", status=status)
        return out


_FLOAT_COLUMNS = (*GREEK_NAMES, "price", "option_price", "underlying_price", "sigma")


def _pylist(values: np.ndarray) -> list[float | None]:
    """Floats as a list, non-finite values as None (JSON has no NaN)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


def price_quotes(
    option_price: np.ndarray,
    underlying_price: np.ndarray,
    underlying_ts: np.ndarray,
    tick_ts: np.ndarray,
    strike: np.ndarray,
    expiry_ts: np.ndarray,
    is_call: np.ndarray,
    vix: np.ndarray,
    *,
    model: str,
    r: float,
    q: float,
    use_indvix: bool,
    staleness_s: float,
) -> Priced:
    """Price every row in one :func:`solve_chain` call.

    Missing values are NaN: ``option_price`` (no such field on the tick), ``underlying_price`` / ``underlying_ts``
    (no underlying value at or before the tick), ``vix`` (INDVIX level in points, e.g. 14.2, not yet divided).
    """
    option_price = np.asarray(option_price, dtype=np.float64)
    n = option_price.shape[0]
    underlying_price = np.asarray(underlying_price, dtype=np.float64)
    underlying_ts = np.asarray(underlying_ts, dtype=np.float64)
    tick_ts = np.asarray(tick_ts, dtype=np.float64)
    t = time_to_expiry(tick_ts, expiry_ts)
    vix = np.asarray(vix, dtype=np.float64)
    vix_known = np.isfinite(vix) & (vix > 0)
    has_price = np.isfinite(option_price)
    has_under = np.isfinite(underlying_price)
    solvable = has_price & has_under

    nan = np.full(n, np.nan)
    out = {name: nan.copy() for name in (*GREEK_NAMES, "sigma", "price")}
    status = np.where(has_price, _NO_UNDERLYING_CODE, _NO_PRICE_CODE).astype(np.int16)
    source = np.zeros(n, dtype=np.int8)
    if solvable.any():
        idx = np.flatnonzero(solvable)
        fallback = np.where(vix_known[idx], vix[idx] / 100.0, np.nan) if use_indvix else None
        res = solve_chain(option_price[idx], underlying_price[idx], np.asarray(strike, dtype=np.float64)[idx],
                          t[idx], r, q, np.asarray(is_call, dtype=np.bool_)[idx], model=model,
                          fallback_sigma=fallback)
        for name in out:
            out[name][idx] = getattr(res, name)
        status[idx] = res.status
        source[idx] = res.sigma_source
    stale = has_under & (underlying_ts < tick_ts - staleness_s)
    return Priced(option_price=option_price, underlying_price=underlying_price, time_to_expiry=t, status=status,
                  sigma_source=source, stale=stale, use_indvix=use_indvix, vix_known=vix_known, **out)


def underlying_for(inst: Instrument, model: str, index_symbols: frozenset[str]) -> str | None:
    """The instrument an option is priced against: the same-expiry future for black76, else the spot (an index's
    symbol is one of ``index_symbols``)."""
    if model == "black76":
        return inst.future_key()
    return inst.underlying_key(index_symbols)
