"""Black-Scholes-Merton model (continuous dividend yield) — scalar numba kernels.

Inputs and units, shared by every function here:

* ``S`` spot price of the underlying, ``K`` strike (same currency, > 0),
* ``t`` time to expiry in years (365-day years, > 0),
* ``r`` continuously-compounded risk-free rate per year (decimal: 0.05 = 5 %),
* ``q`` continuous dividend yield per year (decimal),
* ``sigma`` volatility per √year (decimal: 0.2 = 20 %),
* ``theta`` the option type as a float: +1.0 call, −1.0 put (Jäckel's θ).

The forward is ``F = S·e^{(r−q)t}``, the discount factor ``df = e^{−rt}`` and the carry discount
``dq = e^{−qt}``; the price is ``df·Black(F, K, σ, t)`` computed with the normalised Black function of
:mod:`greeks.lets_be_rational` (accurate time value however deep the option is in or out of the money).

Greeks use exactly the conventions of ``vollib.black_scholes_merton.greeks.analytical``:

* delta — ∂price/∂S, per 1 unit of the underlying,
* gamma — ∂²price/∂S², per unit of the underlying per unit of the underlying,
* theta — −∂price/∂t per **calendar day** (÷ 365),
* vega — ∂price/∂σ per **1 percentage point** of volatility (× 0.01),
* rho — ∂price/∂r per **1 percentage point** of the rate (× 0.01), S and q held fixed.
"""

from __future__ import annotations

import math

from greeks._numba import jit
from greeks.lets_be_rational import black
from greeks.normal import ONE_OVER_SQRT_TWO, norm_pdf

DAYS_PER_YEAR = 365.0
ONE_DAY = 1.0 / DAYS_PER_YEAR
PERCENT = 0.01


@jit
def forward(S: float, t: float, r: float, q: float) -> tuple[float, float, float]:
    """Return (F, df, dq): forward price F = S·e^{(r−q)t}, discount e^{−rt}, carry discount e^{−qt}."""
    return S * math.exp((r - q) * t), math.exp(-r * t), math.exp(-q * t)


@jit
def price(S: float, K: float, t: float, r: float, q: float, sigma: float, theta: float) -> float:
    """Discounted option price in the currency of S and K (t > 0, sigma ≥ 0)."""
    F, df, _ = forward(S, t, r, q)
    return df * black(F, K, sigma, t, theta)


@jit
def _norm_cdf_greeks(z: float) -> float:
    """Φ(z) for the Greeks: libm erfc (≤ ~1e-15 relative from Cody's Φ used by vollib, slightly faster)."""
    return 0.5 * math.erfc(-z * ONE_OVER_SQRT_TWO)


@jit
def greeks_core(
    X: float, K: float, x: float, t: float, r: float, q_carry: float, df: float, dq: float, sigma: float,
    theta: float,
) -> tuple[float, float, float, float, float]:
    """Generic Black-type Greeks for an underlying X with carry yield ``q_carry`` (``dq = e^{−q_carry·t}``).

    ``x = ln(F/K)`` is the log-moneyness of the forward. Shared by the three models: BSM (X = S, q_carry = q),
    Black-Scholes (q_carry = 0) and Black-76 (X = F, q_carry = r). Returns (delta, gamma, theta, vega, rho_bsm)
    in the units of the module docstring, where rho_bsm = θ·t·K·df·Φ(θ·d2)·0.01 is the spot-model rho.
    """
    sqrt_t = math.sqrt(t)
    s = sigma * sqrt_t
    inv_s = 1.0 / s
    d1 = x * inv_s + 0.5 * s
    d2 = d1 - s
    nd1 = _norm_cdf_greeks(theta * d1)
    nd2 = _norm_cdf_greeks(theta * d2)
    pdf1 = norm_pdf(d1)
    x_dq = X * dq
    x_dq_pdf1 = x_dq * pdf1
    k_df = K * df
    delta = theta * dq * nd1
    gamma = dq * pdf1 * inv_s / X
    vega = x_dq_pdf1 * sqrt_t * PERCENT
    # σ/(2√t) = ½·σ²/s: one division fewer (the divider is the bottleneck of the batch loops)
    theta_day = (-0.5 * x_dq_pdf1 * sigma * sigma * inv_s + theta * (q_carry * x_dq * nd1 - r * k_df * nd2)) * ONE_DAY
    rho = theta * t * k_df * nd2 * PERCENT
    return delta, gamma, theta_day, vega, rho


@jit
def greeks(
    S: float, K: float, t: float, r: float, q: float, sigma: float, theta: float
) -> tuple[float, float, float, float, float]:
    """(delta, gamma, theta, vega, rho) of a BSM option; units as in the module docstring (t > 0, sigma > 0)."""
    F, df, dq = forward(S, t, r, q)
    return greeks_core(S, K, math.log(F / K), t, r, q, df, dq, sigma, theta)
