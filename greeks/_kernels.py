"""Compiled element loops behind :mod:`greeks.engine` (one option after another, single thread, no fastmath).

All arrays are 1-D float64 (``is_call`` bool) of equal length; the facade broadcasts and flattens. Units: prices
in the currency of S and K, ``t`` in years, ``r``/``q`` per year (decimal), ``sigma`` per √year (decimal); Greeks as
documented in :mod:`greeks.black_scholes_merton`.
"""

from __future__ import annotations

import math

import numpy as np

from greeks import black76 as b76
from greeks import black_scholes as bs
from greeks import black_scholes_merton as bsm
from greeks._numba import jit
from greeks.lets_be_rational import (
    DEFAULT_ITERATIONS,
    black,
    implied_normalised_volatility_otm_call,
    implied_normalised_volatility_otm_call_batch,
    normalised_vega,
)
from greeks.normal import DBL_EPSILON, DBL_MIN

# Model codes (index into engine.MODELS).
BLACK_SCHOLES = 0
BLACK_SCHOLES_MERTON = 1
BLACK76 = 2

# Status codes (mirror engine.Status; plain ints so the compiled code needs no enum support).
OK = 0
BELOW_INTRINSIC = 1
ABOVE_MAX_PRICE = 2
EXPIRED = 3
BAD_INPUT = 4
NO_TIME_VALUE = 5
ILL_CONDITIONED = 6

SOURCE_NONE = 0
SOURCE_IMPLIED = 1
SOURCE_FALLBACK = 2

PRICE_NOISE_ULPS = 4.0
"""Rounding noise assumed on a price, in ulps of the (undiscounted) price: covers the rounding of the price itself,
of discounting/undiscounting it and of subtracting the intrinsic value. Sub-normal prices (below 2.2e-308) have an
absolute quantum of 4.9e-324, which is added, so they are flagged rather than solved to a wrong IV."""

DBL_TRUE_MIN = 5e-324
"""Smallest positive (sub-normal) double."""

IV_REL_TOL = 1e-10
"""An implied volatility is reported only if that price noise moves it by at most this relative amount;
otherwise the price does not determine σ at double precision and the result is a flagged null."""


@jit
def _finite(v: float) -> bool:
    return not (math.isnan(v) or math.isinf(v))


@jit
def _bad_market(model: int, S: float, K: float, t: float, r: float, q: float) -> bool:
    """True if S, K are not finite positive numbers, or t, r (and q for BSM) are not finite."""
    if not (S > 0.0 and S < math.inf and K > 0.0 and K < math.inf):
        return True
    if not (_finite(t) and _finite(r)):
        return True
    if model == BLACK_SCHOLES_MERTON and not _finite(q):
        return True
    return False


@jit
def _setup(model: int, S: float, t: float, r: float, q: float) -> tuple[float, float, float, float]:
    """(F, df, dq, q_carry) for the model: forward, discount e^{−rt}, carry discount, carry yield per year."""
    if model == BLACK76:
        F, df, dq = b76.forward(S, t, r)
        return F, df, dq, r
    if model == BLACK_SCHOLES:
        F, df, dq = bs.forward(S, t, r)
        return F, df, dq, 0.0
    F, df, dq = bsm.forward(S, t, r, q)
    return F, df, dq, q


@jit
def _expired_values(S: float, K: float, theta: float) -> tuple[float, float]:
    """(intrinsic value, delta) at or after expiry; delta is ±1 in the money, ±0.5 at the money, 0 otherwise."""
    intrinsic = max(theta * (S - K), 0.0)
    if theta * (S - K) > 0:
        delta = theta
    elif S == K:
        delta = 0.5 * theta
    else:
        delta = 0.0
    return intrinsic, delta


SOLVE = -1  # internal: inputs valid, the normalised equation still has to be solved


@jit
def _prepare(
    model: int, price: float, S: float, K: float, t: float, r: float, q: float, theta: float
) -> tuple[int, float, float, float, float, float, float, float]:
    """Validate one option and map it to the normalised out-of-the-money problem.

    Returns (status, F, df, dq, q_carry, beta, x, noise_beta) with x = ln(F/K); status is SOLVE when
    b(−|x|, s) = beta must be solved, otherwise the final status. noise_beta is the price noise in normalised
    units.
    """
    nan = math.nan
    if _bad_market(model, S, K, t, r, q):
        return BAD_INPUT, nan, nan, nan, nan, nan, nan, nan
    if t <= 0.0:
        return EXPIRED, nan, nan, nan, nan, nan, nan, nan
    F, df, dq, q_carry = _setup(model, S, t, r, q)
    if not (F > 0.0 and F < math.inf and df > 0.0 and df < math.inf):
        return BAD_INPUT, F, df, dq, q_carry, nan, nan, nan
    x = math.log(F / K)
    if not (price > 0.0 and price < math.inf):
        return BAD_INPUT, F, df, dq, q_carry, nan, x, nan
    pf = price / df  # undiscounted (forward) price
    if (theta > 0 and pf >= F) or (theta < 0 and pf >= K):
        return ABOVE_MAX_PRICE, F, df, dq, q_carry, nan, x, nan
    intrinsic = theta * (F - K)
    fk = F * K
    sqrt_fk = math.sqrt(fk) if (fk > DBL_MIN and fk < math.inf) else math.sqrt(F) * math.sqrt(K)
    # Rounding noise of the price in forward units: a few ulps of pf, at least a few subnormal quanta.
    noise = PRICE_NOISE_ULPS * DBL_EPSILON * pf
    if price < 1e-290:
        noise += PRICE_NOISE_ULPS * DBL_TRUE_MIN / df
    inv_sqrt_fk = 1.0 / sqrt_fk
    if intrinsic > 0.0:
        time_value = pf - intrinsic
        if time_value < -noise:
            return BELOW_INTRINSIC, F, df, dq, q_carry, nan, x, nan
        if time_value <= noise:
            return NO_TIME_VALUE, F, df, dq, q_carry, nan, x, nan
        beta = time_value * inv_sqrt_fk
    else:
        beta = pf * inv_sqrt_fk
    if beta >= math.exp(-0.5 * math.fabs(x)):
        return ABOVE_MAX_PRICE, F, df, dq, q_carry, nan, x, nan
    return SOLVE, F, df, dq, q_carry, beta, x, noise * inv_sqrt_fk + PRICE_NOISE_ULPS * DBL_TRUE_MIN


@jit
def _conclude(s: float, beta: float, x_otm: float, noise_beta: float, t: float, itm: bool) -> tuple[float, int]:
    """(sigma, status) from the solved total volatility s, after the conditioning check.

    Conditioning: the price noise moves s by |ds/s| = noise_beta / (s·∂b/∂s); above IV_REL_TOL the price does not
    determine sigma. That is NO_TIME_VALUE for an in-the-money option whose time value is the smaller part of the
    possible range (beta < b_max/2), else ILL_CONDITIONED (price at the maximum to within rounding, or sub-normal).
    """
    vega_s = normalised_vega(x_otm, s) * s
    if not (noise_beta <= IV_REL_TOL * vega_s) or not (s > 0.0 and s < math.inf):
        near_intrinsic = itm and beta < 0.5 * math.exp(0.5 * x_otm)
        return math.nan, (NO_TIME_VALUE if near_intrinsic else ILL_CONDITIONED)
    return s / math.sqrt(t), OK


@jit
def implied_vol_scalar(
    model: int, price: float, S: float, K: float, t: float, r: float, q: float, theta: float, n_iterations: int
) -> tuple[float, int]:
    """Implied volatility of one option: (sigma, status); sigma is NaN unless status is OK."""
    status, F, _, _, _, beta, x, noise_beta = _prepare(model, price, S, K, t, r, q, theta)
    if status != SOLVE:
        return math.nan, status
    x_otm = -math.fabs(x)
    s = implied_normalised_volatility_otm_call(beta, x_otm, n_iterations)
    return _conclude(s, beta, x_otm, noise_beta, t, theta * (F - K) > 0.0)


@jit
def _implied_vols_block(
    model: int, price: np.ndarray, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray,
    is_call: np.ndarray, n_iterations: int, out_sigma: np.ndarray, out_status: np.ndarray, F: np.ndarray,
    df: np.ndarray, dq: np.ndarray, q_carry: np.ndarray, x: np.ndarray,
) -> None:
    """Stage-wise IV of one block (prepare all, solve all, conclude all); also fills F, df, dq, q_carry, x."""
    n = price.shape[0]
    beta = np.empty(n)
    x_otm = np.empty(n)
    noise_beta = np.empty(n)
    s = np.empty(n)
    solve = np.empty(n, dtype=np.bool_)
    for i in range(n):
        theta = 1.0 if is_call[i] else -1.0
        status, F[i], df[i], dq[i], q_carry[i], beta[i], x[i], noise_beta[i] = _prepare(
            model, price[i], S[i], K[i], t[i], r[i], q[i], theta)
        x_otm[i] = -math.fabs(x[i])
        solve[i] = status == SOLVE
        out_status[i] = status
    implied_normalised_volatility_otm_call_batch(beta, x_otm, n_iterations, solve, s)
    for i in range(n):
        if solve[i]:
            itm = (F[i] - K[i] > 0.0) if is_call[i] else (K[i] - F[i] > 0.0)
            out_sigma[i], out_status[i] = _conclude(s[i], beta[i], x_otm[i], noise_beta[i], t[i], itm)
        else:
            out_sigma[i] = math.nan


BLOCK = 512
"""Elements per stage-wise block: large enough for the CPU to overlap consecutive options, small enough for the
per-element solver state to stay in the L1/L2 cache."""


@jit
def _implied_vols(
    model: int, price: np.ndarray, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray,
    is_call: np.ndarray, n_iterations: int, out_sigma: np.ndarray, out_status: np.ndarray, F: np.ndarray,
    df: np.ndarray, dq: np.ndarray, q_carry: np.ndarray, x: np.ndarray,
) -> None:
    """:func:`_implied_vols_block` over consecutive blocks of at most BLOCK elements."""
    n = price.shape[0]
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        _implied_vols_block(model, price[a:b], S[a:b], K[a:b], t[a:b], r[a:b], q[a:b], is_call[a:b], n_iterations,
                            out_sigma[a:b], out_status[a:b], F[a:b], df[a:b], dq[a:b], q_carry[a:b], x[a:b])


@jit
def _greeks_from_setup(
    model: int, S: float, K: float, t: float, r: float, sigma: float, theta: float, F: float, df: float,
    dq: float, q_carry: float, x: float, price: float,
) -> tuple[float, float, float, float, float, float]:
    """(price, delta, gamma, theta, vega, rho) at volatility sigma > 0 for t > 0; x = ln(F/K).

    ``price`` is the model price at sigma if already known (the observed price when sigma is its implied
    volatility), else NaN and it is computed here.
    """
    if math.isnan(price):
        price = df * black(F, K, sigma, t, theta)
    delta, gamma, theta_day, vega, rho = bsm.greeks_core(S, K, x, t, r, q_carry, df, dq, sigma, theta)
    if model == BLACK76:
        rho = -t * price * bsm.PERCENT
    return price, delta, gamma, theta_day, vega, rho


@jit
def implied_vol_kernel(
    model: int, price: np.ndarray, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray,
    is_call: np.ndarray, n_iterations: int, out_sigma: np.ndarray, out_status: np.ndarray,
) -> None:
    """Fill out_sigma (NaN unless OK) and out_status (int8) for each element."""
    n = price.shape[0]
    _implied_vols(model, price, S, K, t, r, q, is_call, n_iterations, out_sigma, out_status, np.empty(n),
                  np.empty(n), np.empty(n), np.empty(n), np.empty(n))


@jit
def price_kernel(
    model: int, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray, sigma: np.ndarray,
    is_call: np.ndarray, out: np.ndarray,
) -> None:
    """Fill out with the discounted model price (intrinsic value at t ≤ 0, NaN for bad inputs or sigma < 0)."""
    for i in range(S.shape[0]):
        theta = 1.0 if is_call[i] else -1.0
        if _bad_market(model, S[i], K[i], t[i], r[i], q[i]):
            out[i] = math.nan
        elif t[i] <= 0.0:
            out[i] = max(theta * (S[i] - K[i]), 0.0)
        elif not (sigma[i] >= 0.0 and sigma[i] < math.inf):
            out[i] = math.nan
        else:
            F, df, _, _ = _setup(model, S[i], t[i], r[i], q[i])
            out[i] = df * black(F, K[i], sigma[i], t[i], theta)


@jit
def greeks_kernel(
    model: int, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray, sigma: np.ndarray,
    is_call: np.ndarray, out_delta: np.ndarray, out_gamma: np.ndarray, out_theta: np.ndarray,
    out_vega: np.ndarray, out_rho: np.ndarray,
) -> None:
    """Fill the five Greek arrays (expiry values at t ≤ 0, NaN for bad inputs or sigma ≤ 0)."""
    nan = math.nan
    for i in range(S.shape[0]):
        theta = 1.0 if is_call[i] else -1.0
        if _bad_market(model, S[i], K[i], t[i], r[i], q[i]):
            d, g, th, v, rh = nan, nan, nan, nan, nan
        elif t[i] <= 0.0:
            _, d = _expired_values(S[i], K[i], theta)
            g, th, v, rh = 0.0, 0.0, 0.0, 0.0
        elif not (sigma[i] > 0.0 and sigma[i] < math.inf):
            d, g, th, v, rh = nan, nan, nan, nan, nan
        else:
            F, df, dq, q_carry = _setup(model, S[i], t[i], r[i], q[i])
            _, d, g, th, v, rh = _greeks_from_setup(model, S[i], K[i], t[i], r[i], sigma[i], theta, F, df, dq,
                                                    q_carry, math.log(F / K[i]), math.nan)
        out_delta[i] = d
        out_gamma[i] = g
        out_theta[i] = th
        out_vega[i] = v
        out_rho[i] = rh


@jit
def chain_kernel(
    model: int, price: np.ndarray, S: np.ndarray, K: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray,
    is_call: np.ndarray, fallback: np.ndarray, n_iterations: int, out_iv: np.ndarray, out_sigma: np.ndarray,
    out_source: np.ndarray, out_status: np.ndarray, out_price: np.ndarray, out_delta: np.ndarray,
    out_gamma: np.ndarray, out_theta: np.ndarray, out_vega: np.ndarray, out_rho: np.ndarray,
) -> None:
    """IV from price, then price and Greeks at the implied (or fallback) volatility, element by element."""
    nan = math.nan
    n = price.shape[0]
    F_ = np.empty(n)
    df_ = np.empty(n)
    dq_ = np.empty(n)
    qc_ = np.empty(n)
    x_ = np.empty(n)
    _implied_vols(model, price, S, K, t, r, q, is_call, n_iterations, out_iv, out_status, F_, df_, dq_, qc_, x_)
    for i in range(n):
        theta = 1.0 if is_call[i] else -1.0
        iv = out_iv[i]
        status = out_status[i]
        F, df, dq, q_carry = F_[i], df_[i], dq_[i], qc_[i]
        sigma = nan
        source = SOURCE_NONE
        if status == OK:
            sigma = iv
            source = SOURCE_IMPLIED
        elif status == BELOW_INTRINSIC or status == ABOVE_MAX_PRICE or status == NO_TIME_VALUE \
                or status == ILL_CONDITIONED:
            fb = fallback[i]
            if fb > 0.0 and fb < math.inf:
                sigma = fb
                source = SOURCE_FALLBACK
        out_sigma[i] = sigma
        out_source[i] = source
        if status == EXPIRED:
            p, d = _expired_values(S[i], K[i], theta)
            g, th, v, rh = 0.0, 0.0, 0.0, 0.0
        elif source == SOURCE_NONE:
            p, d, g, th, v, rh = nan, nan, nan, nan, nan, nan
        else:
            # At the implied volatility the model price is the observed price (to the IV's ~1e-15 accuracy).
            known = price[i] if source == SOURCE_IMPLIED else nan
            p, d, g, th, v, rh = _greeks_from_setup(model, S[i], K[i], t[i], r[i], sigma, theta, F, df, dq,
                                                    q_carry, x_[i], known)
        out_price[i] = p
        out_delta[i] = d
        out_gamma[i] = g
        out_theta[i] = th
        out_vega[i] = v
        out_rho[i] = rh


__all__ = [
    "DEFAULT_ITERATIONS",
    "chain_kernel",
    "greeks_kernel",
    "implied_vol_kernel",
    "implied_vol_scalar",
    "price_kernel",
]
