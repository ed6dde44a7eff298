"""Prices and Greeks: textbook values, vollib's analytical Greeks, central finite differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from vollib.black import black as vollib_black76
from vollib.black.greeks import analytical as v76
from vollib.black_scholes import black_scholes as vollib_bs
from vollib.black_scholes.greeks import analytical as vbs
from vollib.black_scholes_merton import black_scholes_merton as vollib_bsm
from vollib.black_scholes_merton.greeks import analytical as vbsm

from greeks import engine
from greeks.engine import MODELS

from ._cases import random_cases

GREEKS = ("delta", "gamma", "theta", "vega", "rho")


# --- textbook values -------------------------------------------------------------------------------------------


def test_hull_black_scholes_prices() -> None:
    """Hull, Options Futures and Other Derivatives: S=42, K=40, r=10 %, sigma=20 %, T=0.5 -> c=4.76, p=0.81."""
    c, p = engine.option_price(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, np.array([True, False]), model="black_scholes")
    assert round(float(c), 2) == 4.76
    assert round(float(p), 2) == 0.81


def test_hull_greeks_example() -> None:
    """Hull's Greek-letter examples (S=49, K=50, r=5 %, sigma=20 %, T=20 weeks = 0.3846 y, call).

    Hull: price 2.40, delta 0.522, gamma 0.066, theta -4.31 per year (-0.0118 per calendar day), vega 12.1 per
    unit of sigma (0.121 per vol point), rho 8.91 per unit of r (0.0891 per rate point).
    """
    args = (49.0, 50.0, 0.3846, 0.05, 0.0)
    for model in ("black_scholes", "black_scholes_merton"):
        assert round(float(engine.option_price(*args, 0.2, True, model=model)), 2) == 2.40
        g = engine.greeks(*args, 0.2, True, model=model)
        assert round(float(g.delta), 3) == 0.522
        assert round(float(g.gamma), 3) == 0.066
        assert round(float(g.theta) * 365.0, 2) == -4.31
        assert round(float(g.theta), 4) == -0.0118
        assert round(float(g.vega), 3) == 0.121
        assert round(float(g.rho), 4) == 0.0891


def test_haug_generalised_bsm_put() -> None:
    """Haug, The Complete Guide to Option Pricing Formulas, p. 4: S=100, K=95, T=0.5, r=10 %, q=5 %, sigma=20 %
    -> put 2.4648 (the example vollib's own doctest uses)."""
    p = engine.option_price(100.0, 95.0, 0.5, 0.1, 0.05, 0.2, False, model="black_scholes_merton")
    assert round(float(p), 4) == 2.4648


def test_black76_textbook() -> None:
    """Hull (futures options): F=20, K=20, r=9 %, T=4 months, sigma=25 % -> put 1.12 (1.1166);
    Haug (Black-76): F=19, K=19, T=0.75, r=10 %, sigma=28 % -> call = put = 1.7011."""
    c, p = engine.option_price(20.0, 20.0, 4.0 / 12.0, 0.09, 0.0, 0.25, np.array([True, False]), model="black76")
    assert round(float(p), 4) == 1.1166
    assert round(float(c), 4) == 1.1166
    c, p = engine.option_price(19.0, 19.0, 0.75, 0.10, 0.0, 0.28, np.array([True, False]), model="black76")
    assert round(float(c), 4) == 1.7011
    assert round(float(p), 4) == 1.7011


def test_put_call_parity() -> None:
    c = random_cases(20_000, seed=31, log_uniform=False)
    for model in MODELS:
        call = engine.option_price(c.S, c.K, c.t, c.r, c.q, c.sigma, True, model=model)
        put = engine.option_price(c.S, c.K, c.t, c.r, c.q, c.sigma, False, model=model)
        carry = {"black_scholes": 0.0, "black_scholes_merton": c.q, "black76": c.r}[model]
        parity = c.S * np.exp(-carry * c.t) - c.K * np.exp(-c.r * c.t)
        err = np.abs((call - put) - parity) / np.maximum(c.S, c.K)
        assert err.max() < 1e-13, (model, err.max())


# --- vollib's analytical Greeks ---------------------------------------------------------------------------------


def _vollib_row(model: str, flag: str, S: float, K: float, t: float, r: float, q: float, sigma: float) -> list[float]:
    if model == "black_scholes":
        price = vollib_bs(flag, S, K, t, r, sigma)
        g = [getattr(vbs, name)(flag, S, K, t, r, sigma) for name in GREEKS]
    elif model == "black_scholes_merton":
        price = vollib_bsm(flag, S, K, t, r, sigma, q)
        g = [getattr(vbsm, name)(flag, S, K, t, r, sigma, q) for name in GREEKS]
    else:
        price = vollib_black76(flag, S, K, t, r, sigma)
        g = [getattr(v76, name)(flag, S, K, t, r, sigma) for name in GREEKS]
    return [float(price), *(float(v) for v in g)]


@pytest.mark.parametrize("log_uniform", [False, True], ids=["uniform", "log-uniform"])
@pytest.mark.parametrize("model", MODELS)
def test_greeks_equal_vollib_analytical(model: str, log_uniform: bool) -> None:
    """6,000 random options per model and sampling (t from 1 minute to 2 years, sigma 1-300 %, K/S 0.5-2): the
    price and the five Greeks equal vollib's to 1e-9 relative or 1e-12 absolute."""
    c = random_cases(6000, seed=41 + MODELS.index(model) + 10 * log_uniform, log_uniform=log_uniform)
    t = c.t
    ours = engine.greeks(c.S, c.K, t, c.r, c.q, c.sigma, c.is_call, model=model)
    our_price = engine.option_price(c.S, c.K, t, c.r, c.q, c.sigma, c.is_call, model=model)
    ref = np.empty((c.S.size, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(c.S.size):
            ref[i] = _vollib_row(model, "c" if c.is_call[i] else "p", float(c.S[i]), float(c.K[i]), float(t[i]),
                                 float(c.r[i]), float(c.q[i]), float(c.sigma[i]))
    got = np.column_stack([our_price, *ours])
    for j, name in enumerate(("price", *GREEKS)):
        np.testing.assert_allclose(got[:, j], ref[:, j], rtol=1e-9, atol=1e-12, err_msg=f"{model} {name}")


# --- central finite differences of the price --------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_greeks_match_finite_differences(model: str) -> None:
    rng = np.random.default_rng(51 + MODELS.index(model))
    n = 2000
    S = 100.0 * np.exp(rng.uniform(-1, 1, n))
    K = S * rng.uniform(0.7, 1.4, n)
    t = rng.uniform(0.05, 2.0, n)
    r = rng.uniform(0.0, 0.15, n)
    q = rng.uniform(0.0, 0.05, n)
    sigma = rng.uniform(0.05, 1.0, n)
    call = rng.random(n) < 0.5

    def price(S_=S, t_=t, r_=r, sigma_=sigma) -> np.ndarray:
        return engine.option_price(S_, K, t_, r_, q, sigma_, call, model=model)

    g = engine.greeks(S, K, t, r, q, sigma, call, model=model)

    def d1(f, h):  # fourth-order central first derivative
        return (8.0 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12.0 * h)

    def d2(f, h):  # fourth-order central second derivative
        return (16.0 * (f(h) + f(-h)) - (f(2 * h) + f(-2 * h)) - 30.0 * f(0.0)) / (12.0 * h * h)

    hs = 1e-3 * S * sigma * np.sqrt(t)  # steps on the natural scale of each variable
    fd_delta = d1(lambda e: price(S_=S + e), hs)
    fd_gamma = d2(lambda e: price(S_=S + e), 3 * hs)
    fd_theta = -d1(lambda e: price(t_=t + e), 1e-4 * t) / 365.0  # per calendar day of time passing
    fd_vega = d1(lambda e: price(sigma_=sigma + e), 1e-4 * sigma) * 0.01
    fd_rho = d1(lambda e: price(r_=r + e), 1e-4) * 0.01
    def close(name: str, got: np.ndarray, fd: np.ndarray, rtol: float, atol: np.ndarray | float) -> None:
        err = np.abs(got - fd) - rtol * np.abs(fd) - atol
        i = int(np.argmax(err))
        assert err[i] <= 0, (model, name, got[i], fd[i], S[i], K[i], t[i], sigma[i], call[i])

    close("delta", g.delta, fd_delta, 1e-6, 1e-9)
    close("gamma", g.gamma, fd_gamma, 1e-5, 100 * np.finfo(float).eps * S / (3 * hs) ** 2)  # FD rounding noise
    close("theta", g.theta, fd_theta, 1e-6, S * 1e-10)
    close("vega", g.vega, fd_vega, 1e-6, S * 1e-10)
    close("rho", g.rho, fd_rho, 1e-6, S * 1e-10)


def test_black76_rho_is_minus_t_times_price() -> None:
    p = engine.option_price(100.0, 90.0, 0.5, 0.07, 0.0, 0.3, True, model="black76")
    g = engine.greeks(100.0, 90.0, 0.5, 0.07, 0.0, 0.3, True, model="black76")
    assert float(g.rho) == pytest.approx(-0.5 * float(p) * 0.01, rel=1e-14)


def test_black_scholes_ignores_q_and_black76_ignores_q() -> None:
    for model in ("black_scholes", "black76"):
        a = engine.greeks(100.0, 105.0, 0.3, 0.06, 0.0, 0.25, True, model=model)
        b = engine.greeks(100.0, 105.0, 0.3, 0.06, 0.04, 0.25, True, model=model)
        for x, y in zip(a, b, strict=True):
            assert float(x) == float(y)
    bsm = engine.greeks(100.0, 105.0, 0.3, 0.06, 0.0, 0.25, True, model="black_scholes_merton")
    bs = engine.greeks(100.0, 105.0, 0.3, 0.06, 0.0, 0.25, True, model="black_scholes")
    for x, y in zip(bsm, bs, strict=True):
        assert float(x) == pytest.approx(float(y), rel=1e-15)
