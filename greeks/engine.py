"""Public facade of the Greeks engine: vectorised implied volatility, prices and Greeks.

Every function takes NumPy arrays or scalars that broadcast against each other and returns arrays of the
broadcast shape (0-d arrays when every input is a scalar). Nothing raises for bad data in a batch: each element
gets a :class:`Status` and NaN where no honest number exists. Only API misuse (unknown model, non-boolean
``is_call``) raises.

Units (the same as ``vollib``'s analytical Greeks):

* ``price`` — option premium in the currency of the underlying (discounted, i.e. what is paid today),
* ``S`` — spot price (``black_scholes``, ``black_scholes_merton``) or futures price F (``black76``),
* ``K`` — strike, same currency,
* ``t`` — time to expiry in years of 365 days (see :func:`greeks.expiry.time_to_expiry`); ``t <= 0`` is expired,
* ``r`` — continuously-compounded risk-free rate per year, decimal (0.07 = 7 %),
* ``q`` — continuous dividend yield per year, decimal (used by ``black_scholes_merton`` only),
* ``sigma`` / IV — volatility per √year, decimal (0.15 = 15 %),
* ``is_call`` — True for calls, False for puts,
* delta — per 1 unit of the underlying; gamma — per unit per unit; theta — per calendar day;
  vega — per 1 volatility percentage point; rho — per 1 rate percentage point.

Implied volatility uses :mod:`greeks.lets_be_rational` (Jäckel's algorithm: the out-of-the-money side in normalised
form), so it stays accurate to ~1e-15 relative even where the premium is 1e-300 of the spot.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from greeks import DEFAULT_MODEL, MODELS
from greeks import _kernels as k

"""Supported pricing models; ``black_scholes`` is BSM with q = 0, ``black76`` prices options on a future."""



class Status(enum.IntEnum):
    """Per-element outcome of an implied-volatility solve (stored as int8)."""

    OK = k.OK
    """IV solved; accurate to ~1e-12 relative or better."""
    BELOW_INTRINSIC = k.BELOW_INTRINSIC
    """Price below the discounted forward intrinsic value max(θ·(F − K), 0)·e^{−rt}: no volatility fits."""
    ABOVE_MAX_PRICE = k.ABOVE_MAX_PRICE
    """Price at or above the no-arbitrage bound: call ≥ S·e^{−qt} (F·e^{−rt}), put ≥ K·e^{−rt}."""
    EXPIRED = k.EXPIRED
    """t ≤ 0: the option is worth its intrinsic value and has no IV."""
    BAD_INPUT = k.BAD_INPUT
    """Non-finite or non-positive S, K or price, or non-finite t, r (or q for BSM)."""
    NO_TIME_VALUE = k.NO_TIME_VALUE
    """In the money and the time value is lost in the rounding of the price (price ≈ intrinsic to within a few
    ulps, or so close that those ulps move the IV by more than 1e-10 relative): IV is not determined."""
    ILL_CONDITIONED = k.ILL_CONDITIONED
    """The price does not determine the IV to 1e-10 relative for another reason: it equals the maximum price to
    within a few ulps (only for absurd total volatilities σ√t ≳ 10), or it is sub-normal (< 2.2e-308)."""


STATUS_NAMES: dict[int, str] = {int(s): s.name.lower() for s in Status}
"""Status code → wire name: "ok", "below_intrinsic", "above_max_price", "expired", "bad_input",
"no_time_value", "ill_conditioned"."""

UNSOLVABLE_STATUSES: frozenset[int] = frozenset(
    {Status.BELOW_INTRINSIC, Status.ABOVE_MAX_PRICE, Status.NO_TIME_VALUE, Status.ILL_CONDITIONED}
)
"""Statuses for which :func:`solve_chain` uses ``fallback_sigma`` (the market data are valid, the price is not
invertible)."""


class SigmaSource(enum.IntEnum):
    """Where the volatility used for a :class:`ChainResult` row came from."""

    NONE = 0
    IMPLIED = 1
    FALLBACK = 2


SIGMA_SOURCE_NAMES: dict[int, str] = {SigmaSource.NONE: "none", SigmaSource.IMPLIED: "implied",
                                       SigmaSource.FALLBACK: "indvix"}
"""sigma_source code → wire name (the fallback volatility is INDVIX in this service)."""


class Greeks(NamedTuple):
    """Greeks arrays (units in the module docstring)."""

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


class ChainResult(NamedTuple):
    """Result of :func:`solve_chain`; every field is an array of the broadcast shape."""

    iv: np.ndarray
    """Implied volatility (decimal per √year), NaN unless status is OK."""
    sigma: np.ndarray
    """Volatility used for price/Greeks: iv, the fallback, or NaN."""
    sigma_source: np.ndarray
    """int8: 0 none, 1 implied, 2 fallback ("indvix")."""
    status: np.ndarray
    """int8 :class:`Status` code of the IV solve."""
    price: np.ndarray
    """Model price at sigma: for implied rows the observed price itself (the model reproduces it at iv to ~1e-15
    relative, so it is not recomputed), for fallback rows the model price at the fallback sigma, the intrinsic
    value when expired, NaN otherwise."""
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


ArrayLike = npt.ArrayLike


def _model_code(model: str) -> int:
    try:
        return MODELS.index(model)
    except ValueError:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}") from None


def _as_bool(is_call: ArrayLike) -> np.ndarray:
    if type(is_call) is np.ndarray and is_call.dtype == np.bool_:
        return is_call
    arr = np.asarray(is_call)
    if arr.dtype.kind not in "bui":
        raise TypeError(f"is_call must be boolean (True = call), got dtype {arr.dtype}")
    return arr.astype(np.bool_, copy=False)


def _as_float(a: ArrayLike) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype == np.float64:
        return a
    return np.asarray(a, dtype=np.float64)


def _flat(a: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
    """a broadcast to shape, as a flat C-contiguous writeable array (no copy when it already is one).

    Read-only inputs (e.g. pandas' copy-on-write ``.to_numpy()``) are copied: numba would otherwise compile and
    cache a second specialisation of every kernel for read-only arrays."""
    if a.shape == shape and a.flags.c_contiguous and a.flags.writeable:
        return a.reshape(-1) if a.ndim != 1 else a
    if a.size == 1:
        out = np.empty(n, dtype=a.dtype)
        out.fill(a.reshape(-1)[0])
        return out
    return np.broadcast_to(a, shape).copy().reshape(-1)  # copy(): C-ordered and writeable


def _broadcast(*args: ArrayLike, is_call: ArrayLike) -> tuple[tuple[int, ...], list[np.ndarray], np.ndarray]:
    """Broadcast the float inputs and is_call; return (shape, flat contiguous float64 arrays, flat bool array)."""
    floats = [_as_float(a) for a in args]
    calls = _as_bool(is_call)
    shapes = {a.shape for a in floats}
    shapes.add(calls.shape)
    if len(shapes) > 1:
        shapes.discard(())
    if len(shapes) == 1:
        shape = shapes.pop()
    else:
        shape = np.broadcast_shapes(*(a.shape for a in floats), calls.shape)
    n = 1
    for d in shape:
        n *= d
    return shape, [_flat(a, shape, n) for a in floats], _flat(calls, shape, n)


def _shaped(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a if a.shape == shape else a.reshape(shape)


def implied_volatility(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
    model: str = DEFAULT_MODEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Implied volatility from option prices.

    Returns ``(sigma, status)``: sigma in decimal per √year (NaN where status is not OK) and the int8
    :class:`Status` codes. Never raises for bad data.
    """
    code = _model_code(model)
    shape, (p, s, kk, tt, rr, qq), calls = _broadcast(price, S, K, t, r, q, is_call=is_call)
    sigma = np.empty(p.shape[0], dtype=np.float64)
    status = np.empty(p.shape[0], dtype=np.int8)
    k.implied_vol_kernel(code, p, s, kk, tt, rr, qq, calls, k.DEFAULT_ITERATIONS, sigma, status)
    return _shaped(sigma, shape), _shaped(status, shape)


def option_price(
    S: ArrayLike,
    K: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    model: str = DEFAULT_MODEL,
) -> np.ndarray:
    """Discounted model price (currency of S). Intrinsic value max(±(S − K), 0) at t ≤ 0; NaN for bad inputs
    or sigma < 0 / non-finite. sigma = 0 gives the discounted forward intrinsic value."""
    code = _model_code(model)
    shape, (s, kk, tt, rr, qq, sg), calls = _broadcast(S, K, t, r, q, sigma, is_call=is_call)
    out = np.empty(s.shape[0], dtype=np.float64)
    k.price_kernel(code, s, kk, tt, rr, qq, sg, calls, out)
    return _shaped(out, shape)


def greeks(
    S: ArrayLike,
    K: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    model: str = DEFAULT_MODEL,
) -> Greeks:
    """Analytical Greeks at volatility sigma (units in the module docstring; identical to vollib's).

    At t ≤ 0: delta = ±1 in the money, ±0.5 exactly at the money, 0 out of the money; the other Greeks 0.
    NaN for bad inputs or sigma ≤ 0 / non-finite.
    """
    code = _model_code(model)
    shape, (s, kk, tt, rr, qq, sg), calls = _broadcast(S, K, t, r, q, sigma, is_call=is_call)
    n = s.shape[0]
    outs = [np.empty(n, dtype=np.float64) for _ in range(5)]
    k.greeks_kernel(code, s, kk, tt, rr, qq, sg, calls, *outs)
    return Greeks(*(_shaped(o, shape) for o in outs))


def solve_chain(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
    model: str = DEFAULT_MODEL,
    fallback_sigma: ArrayLike | None = None,
) -> ChainResult:
    """IV from price, then model price and the five Greeks at that IV, for a whole batch in one compiled loop.

    Where the IV is not solvable from valid market data (status BELOW_INTRINSIC, ABOVE_MAX_PRICE,
    NO_TIME_VALUE, ILL_CONDITIONED) and ``fallback_sigma`` (decimal, scalar or array; NaN = none) is positive
    and finite there, price and Greeks use it and ``sigma_source`` is 2 ("indvix"); otherwise they are NaN and
    ``sigma_source`` is 0. Expired rows get the intrinsic value and expiry Greeks (see :func:`greeks`), bad inputs
    NaN.
    """
    code = _model_code(model)
    fb = np.nan if fallback_sigma is None else fallback_sigma
    shape, (p, s, kk, tt, rr, qq, f), calls = _broadcast(price, S, K, t, r, q, fb, is_call=is_call)
    n = p.shape[0]
    iv = np.empty(n, dtype=np.float64)
    sigma = np.empty(n, dtype=np.float64)
    source = np.empty(n, dtype=np.int8)
    status = np.empty(n, dtype=np.int8)
    outs = [np.empty(n, dtype=np.float64) for _ in range(6)]
    k.chain_kernel(code, p, s, kk, tt, rr, qq, calls, f, k.DEFAULT_ITERATIONS, iv, sigma, source, status, *outs)
    return ChainResult(
        _shaped(iv, shape), _shaped(sigma, shape), _shaped(source, shape), _shaped(status, shape),
        *(_shaped(o, shape) for o in outs),
    )


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel for all three models; call once at service start."""
    for model in MODELS:
        solve_chain(np.array([10.0, 0.5]), 100.0, 100.0, 0.1, 0.05, 0.01, np.array([True, False]), model=model,
                    fallback_sigma=0.2)
        implied_volatility(10.0, 100.0, 100.0, 0.1, 0.05, 0.01, True, model=model)
        option_price(100.0, 100.0, 0.1, 0.05, 0.01, 0.2, True, model=model)
        greeks(100.0, 100.0, 0.1, 0.05, 0.01, 0.2, True, model=model)
