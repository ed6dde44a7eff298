"""Black-Scholes model (no dividend yield) — scalar numba kernels.

Identical to :mod:`greeks.black_scholes_merton` with ``q = 0``: ``S`` spot, ``K`` strike (same currency),
``t`` years (365-day), ``r`` continuously-compounded rate per year (decimal), ``sigma`` volatility per √year
(decimal), ``theta`` +1.0 call / −1.0 put.

Greeks follow ``vollib.black_scholes.greeks.analytical``: delta and gamma per unit of the underlying, theta per
calendar day, vega per 1 volatility point, rho per 1 rate point.
"""

from __future__ import annotations

import math

from greeks import black_scholes_merton as bsm
from greeks._numba import jit


@jit
def forward(S: float, t: float, r: float) -> tuple[float, float, float]:
    """Return (F, df, dq) = (S·e^{rt}, e^{−rt}, 1)."""
    return S * math.exp(r * t), math.exp(-r * t), 1.0


@jit
def price(S: float, K: float, t: float, r: float, sigma: float, theta: float) -> float:
    """Discounted option price in the currency of S and K."""
    return bsm.price(S, K, t, r, 0.0, sigma, theta)


@jit
def greeks(S: float, K: float, t: float, r: float, sigma: float, theta: float) -> tuple[float, float, float, float, float]:
    """(delta, gamma, theta, vega, rho) in vollib's units (see module docstring)."""
    return bsm.greeks(S, K, t, r, 0.0, sigma, theta)
