"""Shared generators of option cases for the Greeks tests (plain NumPy, no database)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ONE_MINUTE = 1.0 / (365.0 * 24.0 * 60.0)
TWO_YEARS = 2.0


class Cases(NamedTuple):
    S: np.ndarray
    K: np.ndarray
    t: np.ndarray
    r: np.ndarray
    q: np.ndarray
    sigma: np.ndarray
    is_call: np.ndarray


def random_cases(n: int, seed: int, log_uniform: bool) -> Cases:
    """K/S in 0.5-2, t from 1 minute to 2 years, sigma 1 %-300 %, r 0-15 %, q 0-5 %, calls and puts.

    ``log_uniform`` samples K/S, t and sigma uniformly in their logarithm (stressing the extremes: 1-minute
    options, 1 % vols); otherwise uniformly in the values themselves.
    """
    rng = np.random.default_rng(seed)
    if log_uniform:
        m = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
        t = np.exp(rng.uniform(np.log(ONE_MINUTE), np.log(TWO_YEARS), n))
        sigma = np.exp(rng.uniform(np.log(0.01), np.log(3.0), n))
    else:
        m = rng.uniform(0.5, 2.0, n)
        t = rng.uniform(ONE_MINUTE, TWO_YEARS, n)
        sigma = rng.uniform(0.01, 3.0, n)
    S = 100.0 * np.exp(rng.uniform(-2.0, 8.0, n))  # spots from 13 to 300,000
    return Cases(S, S * m, t, rng.uniform(0.0, 0.15, n), rng.uniform(0.0, 0.05, n), sigma, rng.random(n) < 0.5)


def grid_cases() -> Cases:
    """Dense grid: 25 K/S x 20 t x 20 sigma x 3 r x 2 q x call/put = 120,000 cases (log-spaced K/S, t, sigma)."""
    m = np.geomspace(0.5, 2.0, 25)
    t = np.geomspace(ONE_MINUTE, TWO_YEARS, 20)
    sigma = np.geomspace(0.01, 3.0, 20)
    r = np.array([0.0, 0.07, 0.15])
    q = np.array([0.0, 0.05])
    call = np.array([True, False])
    mm, tt, ss, rr, qq, cc = (a.reshape(-1) for a in np.meshgrid(m, t, sigma, r, q, call, indexing="ij"))
    S = np.full(mm.shape, 22000.0)
    return Cases(S, S * mm, tt, rr, qq, ss, cc)


def forward_and_discount(model: str, c: Cases) -> tuple[np.ndarray, np.ndarray]:
    """(F, df) as the engine defines them for each model."""
    df = np.exp(-c.r * c.t)
    if model == "black76":
        return c.S.copy(), df
    q = 0.0 if model == "black_scholes" else c.q
    return c.S * np.exp((c.r - q) * c.t), df
