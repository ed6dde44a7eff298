"""The numba port of Let's Be Rational and its special functions, against independent references."""

from __future__ import annotations

import math

import numpy as np
import py_lets_be_rational as ref
import pytest
from numba import njit
from scipy import special

from greeks import lets_be_rational as lbr
from greeks import normal


@njit(cache=False)
def _vectorise(fn_code: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        if fn_code == 0:
            out[i] = normal.norm_cdf(a[i])
        elif fn_code == 1:
            out[i] = normal.erfcx_cody(a[i])
        elif fn_code == 2:
            out[i] = normal.inverse_norm_cdf(a[i])
        elif fn_code == 3:
            out[i] = lbr.normalised_black_call(a[i], b[i])
        elif fn_code == 4:
            out[i] = lbr.normalised_vega(a[i], b[i])
        elif fn_code == 5:
            out[i] = lbr.implied_normalised_volatility_otm_call(a[i], b[i], lbr.DEFAULT_ITERATIONS)
    return out


EPS = np.finfo(float).eps


def test_norm_cdf_relative_accuracy_against_scipy() -> None:
    """Relative accuracy in the lower tail down to Phi ~ 1e-300; both sides carry the exp(-z²/2) rounding
    (~z²·eps, Marsaglia), hence the z-dependent tolerance."""
    z = np.concatenate([np.linspace(-37.0, 8.0, 20001), -np.geomspace(1e-8, 37.0, 2000)])
    ours = _vectorise(0, z, z)
    ref_ = special.ndtr(z)
    rel = np.abs(ours / ref_ - 1.0)
    assert (rel <= 2 * EPS * (8.0 + z * z)).all(), float(rel.max())


def test_erfcx_against_scipy() -> None:
    x = np.concatenate([np.linspace(-26.0, 50.0, 20001), np.geomspace(50.0, 1e8, 100)])
    rel = np.abs(_vectorise(1, x, x) / special.erfcx(x) - 1.0)
    assert (rel <= EPS * (8.0 + np.where(x < 0, 2 * x * x, 0.0))).all(), float(rel.max())


def test_inverse_norm_cdf_against_scipy() -> None:
    u = np.concatenate([np.geomspace(1e-300, 0.5, 5000), 1.0 - np.geomspace(1e-16, 0.5, 2000)])
    np.testing.assert_allclose(_vectorise(2, u, u), special.ndtri(u), rtol=1e-14, atol=0)


def _sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = -np.abs(rng.normal(size=n)) * rng.choice([0.001, 0.05, 0.3, 1.0, 5.0], n)
    s = np.exp(rng.uniform(np.log(1e-4), np.log(8.0), n))
    return x, s


def test_normalised_black_and_vega_equal_reference_port() -> None:
    """Bit-level fidelity of the port: the same numbers as the pure-Python reference (py_lets_be_rational)."""
    x, s = _sample(5000, 1)
    b = _vectorise(3, x, s)
    v = _vectorise(4, x, s)
    b_ref = np.array([ref.normalised_black_call(float(a), float(c)) for a, c in zip(x, s, strict=True)])
    v_ref = np.array([ref.normalised_vega(float(a), float(c)) for a, c in zip(x, s, strict=True)])
    np.testing.assert_allclose(b, b_ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(v, v_ref, rtol=1e-15, atol=0)


def test_normalised_black_against_independent_formula() -> None:
    """Where the direct formula is well conditioned (no cancellation) it agrees with scipy's Phi."""
    x, s = _sample(20000, 2)
    h, t = x / s, 0.5 * s
    term1 = special.ndtr(h + t) * np.exp(0.5 * x)
    term2 = special.ndtr(h - t) * np.exp(-0.5 * x)
    direct = term1 - term2
    good = (h + t > -1.0) & (direct > 1e-6)  # away from the far tail where the direct formula is useless
    b = _vectorise(3, x[good], s[good])
    # the direct formula's own cancellation error bounds the comparison
    tol = 8 * EPS * (term1[good] + term2[good]) / direct[good]
    rel = np.abs(b / direct[good] - 1.0)
    assert (rel <= tol).all(), float((rel / tol).max())


def test_normalised_implied_volatility_round_trip_two_iterations() -> None:
    """2,000,000 (x, s) pairs, s up to 8: b(x, s) -> s to machine precision down to b = 1e-300.

    The bound is 16 ulps times the condition number max(1, b/(s·∂b/∂s)) of s as a function of b (which exceeds 1
    only where b approaches its maximum e^{x/2}, i.e. for total volatilities of several units)."""
    x, s = _sample(2_000_000, 3)
    b = _vectorise(3, x, s)
    keep = (b > 1e-300) & (b < np.exp(0.5 * x) * (1 - 1e-12))
    x, s, b = x[keep], s[keep], b[keep]
    cond = np.maximum(1.0, b / (_vectorise(4, x, s) * s))
    rel = np.abs(_vectorise(5, b, x) / s - 1.0)
    assert (rel <= 16 * EPS * cond).all(), float((rel / cond).max())
    assert rel[cond == 1.0].max() <= 16 * EPS


def test_batch_equals_scalar_bit_for_bit() -> None:
    x, s = _sample(50_000, 4)
    b = _vectorise(3, x, s)
    solve = (b > 0) & (b < np.exp(0.5 * x))
    out = np.full(x.size, np.nan)
    lbr.implied_normalised_volatility_otm_call_batch(b, x, lbr.DEFAULT_ITERATIONS, solve, out)
    scalar = _vectorise(5, b, x)
    np.testing.assert_array_equal(out[solve], scalar[solve])


@pytest.mark.parametrize(("F", "K", "sigma", "t", "theta"),
                         [(100.0, 100.0, 0.2, 0.5, 1.0), (100.0, 80.0, 0.3, 2.0, -1.0),
                          (100.0, 150.0, 0.05, 0.01, 1.0), (100.0, 60.0, 0.01, 1e-5, 1.0)])
def test_black_matches_reference(F: float, K: float, sigma: float, t: float, theta: float) -> None:
    assert lbr.black(F, K, sigma, t, theta) == pytest.approx(ref.black(F, K, sigma, t, theta), rel=1e-15, abs=0)


def test_solver_edge_values() -> None:
    assert lbr.implied_normalised_volatility_otm_call(math.exp(-0.05), -0.1, 2) == math.inf  # at b_max
    assert lbr.implied_normalised_volatility_otm_call(0.0, -0.1, 2) == 0.0
    s = lbr.implied_normalised_volatility_otm_call(lbr.normalised_black_call(0.0, 0.3), 0.0, 2)  # ATM
    assert s == pytest.approx(0.3, rel=1e-15)
