"""Black-76 model (option on a futures contract of the same expiry) — scalar numba kernels.

Inputs: ``F`` futures price, ``K`` strike (same currency), ``t`` years (365-day), ``r`` continuously-compounded
rate per year (decimal), used only for discounting, ``sigma`` volatility per √year (decimal), ``theta`` +1.0 call /
−1.0 put. The price is ``e^{−rt}·Black(F, K, σ, t)``.

Greeks follow ``vollib.black.greeks.analytical``: delta = ∂price/∂F and gamma = ∂²price/∂F² per unit of the
futures price, theta per calendar day (holding F fixed), vega per 1 volatility point, and rho per 1 rate point
holding F fixed, i.e. ``rho = −t·price·0.01`` (only the discount factor depends on r).
"""

from __future__ import annotations

import math

from greeks import black_scholes_merton as bsm
from greeks._numba import jit
from greeks.lets_be_rational import black


@jit
def forward(F: float, t: float, r: float) -> tuple[float, float, float]:
    """Return (F, df, dq) = (F, e^{−rt}, e^{−rt}): the futures price is the forward, carry equals the rate."""
    df = math.exp(-r * t)
    return F, df, df


@jit
def price(F: float, K: float, t: float, r: float, sigma: float, theta: float) -> float:
    """Discounted option price in the currency of F and K."""
    return math.exp(-r * t) * black(F, K, sigma, t, theta)


@jit
def greeks(F: float, K: float, t: float, r: float, sigma: float, theta: float) -> tuple[float, float, float, float, float]:
    """(delta, gamma, theta, vega, rho) in vollib's units (see module docstring)."""
    _, df, dq = forward(F, t, r)
    delta, gamma, theta_day, vega, _ = bsm.greeks_core(F, K, math.log(F / K), t, r, r, df, dq, sigma, theta)
    rho = -t * price(F, K, t, r, sigma, theta) * bsm.PERCENT
    return delta, gamma, theta_day, vega, rho
