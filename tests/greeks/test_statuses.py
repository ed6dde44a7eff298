"""Statuses, expiry, bad inputs, broadcasting and the solve_chain fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greeks import engine
from greeks.engine import MODELS, STATUS_NAMES, ChainResult, Greeks, Status

S, K, T, R, Q = 100.0, 90.0, 0.5, 0.07, 0.02


def _fwd(model: str) -> tuple[float, float]:
    df = math.exp(-R * T)
    if model == "black76":
        return S, df
    q = 0.0 if model == "black_scholes" else Q
    return S * math.exp((R - q) * T), df


def test_status_names() -> None:
    assert STATUS_NAMES == {
        0: "ok", 1: "below_intrinsic", 2: "above_max_price", 3: "expired", 4: "bad_input", 5: "no_time_value",
        6: "ill_conditioned",
    }
    assert engine.SIGMA_SOURCE_NAMES == {0: "none", 1: "implied", 2: "indvix"}


@pytest.mark.parametrize("model", MODELS)
def test_below_intrinsic(model: str) -> None:
    F, df = _fwd(model)
    intrinsic_call = (F - K) * df  # discounted forward intrinsic value of the 90 call
    iv, st = engine.implied_volatility([intrinsic_call * 0.999, intrinsic_call - 1e-6], S, K, T, R, Q, True,
                                       model=model)
    assert st.tolist() == [Status.BELOW_INTRINSIC] * 2
    assert np.isnan(iv).all()
    # puts: K = 110
    intrinsic_put = (110.0 - F) * df
    iv, st = engine.implied_volatility(intrinsic_put * 0.99, S, 110.0, T, R, Q, False, model=model)
    assert st == Status.BELOW_INTRINSIC and np.isnan(iv)


@pytest.mark.parametrize("model", MODELS)
def test_at_intrinsic_is_no_time_value(model: str) -> None:
    F, df = _fwd(model)
    iv, st = engine.implied_volatility((F - K) * df, S, K, T, R, Q, True, model=model)
    assert st == Status.NO_TIME_VALUE and np.isnan(iv)


@pytest.mark.parametrize("model", MODELS)
def test_above_max_price(model: str) -> None:
    F, df = _fwd(model)
    call_max = F * df  # S·e^{-qt} (BSM), S (BS... with q=0), F·e^{-rt} (Black-76)
    put_max = K * df
    # Exactly at the bound (up to the rounding of discounting) the price is either above the maximum or
    # indistinguishable from it: never a number.
    at_bound = {Status.ABOVE_MAX_PRICE, Status.ILL_CONDITIONED}
    iv, st = engine.implied_volatility([call_max, call_max * 1.001, 1e300], S, K, T, R, Q, True, model=model)
    assert st[0] in at_bound and (st[1:] == Status.ABOVE_MAX_PRICE).all() and np.isnan(iv).all()
    iv, st = engine.implied_volatility([put_max, put_max + 1.0], S, K, T, R, Q, False, model=model)
    assert st[0] in at_bound and st[1] == Status.ABOVE_MAX_PRICE and np.isnan(iv).all()
    # just below the bound is still solvable (huge vol)
    iv, st = engine.implied_volatility(call_max * 0.999, S, K, T, R, Q, True, model=model)
    assert st == Status.OK and iv > 3.0


def test_above_max_uses_spot_discounted_by_dividend_yield() -> None:
    """BSM call bound is S·e^{-qt}: a price between S·e^{-qt} and S is above the maximum."""
    bound = S * math.exp(-Q * T)
    _, st = engine.implied_volatility(0.5 * (bound + S), S, K, T, R, Q, True, model="black_scholes_merton")
    assert st == Status.ABOVE_MAX_PRICE


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("t", [0.0, -1e-9, -0.01])
def test_expired(model: str, t: float) -> None:
    iv, st = engine.implied_volatility([15.0, 1.0], S, [K, 110.0], t, R, Q, [True, False], model=model)
    assert (st == Status.EXPIRED).all() and np.isnan(iv).all()
    price = engine.option_price(S, [K, 110.0, 100.0, 95.0], t, R, Q, 0.2, [True, False, True, True], model=model)
    np.testing.assert_array_equal(price, [10.0, 10.0, 0.0, 5.0])
    g = engine.greeks(S, [K, 110.0, 100.0, 120.0], t, R, Q, 0.2, [True, False, True, True], model=model)
    np.testing.assert_array_equal(g.delta, [1.0, -1.0, 0.5, 0.0])
    for arr in (g.gamma, g.theta, g.vega, g.rho):
        np.testing.assert_array_equal(arr, 0.0)
    res = engine.solve_chain([15.0, 1.0], S, [K, 110.0], t, R, Q, [True, False], model=model, fallback_sigma=0.2)
    assert (res.status == Status.EXPIRED).all()
    assert np.isnan(res.iv).all() and np.isnan(res.sigma).all()
    assert (res.sigma_source == 0).all()
    np.testing.assert_array_equal(res.price, [10.0, 10.0])
    np.testing.assert_array_equal(res.delta, [1.0, -1.0])


BAD = [
    dict(price=math.nan), dict(price=0.0), dict(price=-1.0), dict(price=math.inf),
    dict(S=math.nan), dict(S=0.0), dict(S=-100.0), dict(S=math.inf),
    dict(K=math.nan), dict(K=0.0), dict(K=-5.0), dict(K=math.inf),
    dict(t=math.nan), dict(t=math.inf), dict(r=math.nan), dict(r=-math.inf),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("bad", BAD, ids=[",".join(f"{k}={v}" for k, v in b.items()) for b in BAD])
def test_bad_inputs_flagged_never_raise(model: str, bad: dict[str, float]) -> None:
    args = dict(price=5.0, S=S, K=100.0, t=T, r=R, q=Q) | bad
    iv, st = engine.implied_volatility(args["price"], args["S"], args["K"], args["t"], args["r"], args["q"], True,
                                       model=model)
    assert st == Status.BAD_INPUT and np.isnan(iv)
    res = engine.solve_chain(args["price"], args["S"], args["K"], args["t"], args["r"], args["q"], True,
                             model=model, fallback_sigma=0.2)
    assert res.status == Status.BAD_INPUT
    assert res.sigma_source == 0
    for name in ("iv", "sigma", "price", "delta", "gamma", "theta", "vega", "rho"):
        assert np.isnan(getattr(res, name)), name
    if "price" not in bad:
        p = engine.option_price(args["S"], args["K"], args["t"], args["r"], args["q"], 0.2, True, model=model)
        g = engine.greeks(args["S"], args["K"], args["t"], args["r"], args["q"], 0.2, True, model=model)
        assert np.isnan(p) and all(np.isnan(v) for v in g)


def test_nan_q_is_bad_only_for_bsm() -> None:
    _, st = engine.implied_volatility(5.0, S, 100.0, T, R, math.nan, True, model="black_scholes_merton")
    assert st == Status.BAD_INPUT
    for model in ("black_scholes", "black76"):
        _, st = engine.implied_volatility(5.0, S, 100.0, T, R, math.nan, True, model=model)
        assert st == Status.OK


def test_bad_sigma_for_price_and_greeks() -> None:
    p = engine.option_price(S, 100.0, T, R, Q, [math.nan, -0.1, math.inf, 0.0], True)
    assert np.isnan(p[:3]).all()
    F, df = _fwd("black_scholes_merton")
    assert p[3] == pytest.approx(max(F - 100.0, 0.0) * df, rel=1e-15)  # sigma = 0: discounted forward intrinsic
    g = engine.greeks(S, 100.0, T, R, Q, [math.nan, -0.1, math.inf, 0.0], True)
    assert all(np.isnan(v).all() for v in g)


def test_mixed_batch_one_call() -> None:
    """Every status in one vectorised call, none raising."""
    F, df = _fwd("black_scholes_merton")
    price = np.array([8.0, (F - 85.0) * df * 0.9, 1e6, 5.0, math.nan, (F - 50.0) * df, 1e-320])
    K_ = np.array([100.0, 85.0, 100.0, 100.0, 100.0, 50.0, 300.0])
    t = np.array([T, T, T, -1.0, T, T, T])
    iv, st = engine.implied_volatility(price, S, K_, t, R, Q, True)
    assert st.tolist() == [Status.OK, Status.BELOW_INTRINSIC, Status.ABOVE_MAX_PRICE, Status.EXPIRED,
                           Status.BAD_INPUT, Status.NO_TIME_VALUE, Status.ILL_CONDITIONED]
    assert np.isfinite(iv[0]) and np.isnan(iv[1:]).all()
    assert st.dtype == np.int8 and iv.dtype == np.float64


def test_broadcasting_shapes_and_scalars() -> None:
    strikes = np.array([90.0, 100.0, 110.0])
    expiries = np.array([[0.1], [0.5]])  # (2, 1) x (3,) -> (2, 3)
    p = engine.option_price(S, strikes, expiries, R, Q, 0.25, True)
    assert p.shape == (2, 3)
    iv, st = engine.implied_volatility(p, S, strikes, expiries, R, Q, True)
    assert iv.shape == (2, 3) and st.shape == (2, 3)
    np.testing.assert_allclose(iv, 0.25, rtol=1e-12)
    g = engine.greeks(S, strikes, expiries, R, Q, 0.25, np.array([True, False, True]))
    assert isinstance(g, Greeks) and all(a.shape == (2, 3) for a in g)
    res = engine.solve_chain(p, S, strikes, expiries, R, Q, True, fallback_sigma=np.array([0.2, 0.3, 0.4]))
    assert isinstance(res, ChainResult) and all(a.shape == (2, 3) for a in res)
    # all scalars -> 0-d arrays
    iv0, st0 = engine.implied_volatility(10.0, 100.0, 100.0, 0.5, 0.05, 0.0, True)
    assert iv0.shape == () and st0.shape == ()
    # each element equals the scalar call
    for i in range(2):
        for j in range(3):
            ivs, _ = engine.implied_volatility(p[i, j], S, strikes[j], expiries[i, 0], R, Q, True)
            assert float(ivs) == iv[i, j]
    # lists work, integer is_call works, bad is_call dtype raises
    engine.option_price([100, 101], [100], 0.5, 0.05, 0.0, 0.2, [1, 0])
    with pytest.raises(TypeError):
        engine.option_price(100.0, 100.0, 0.5, 0.05, 0.0, 0.2, np.array(["c", "p"]))
    with pytest.raises(ValueError):
        engine.option_price(np.ones(3), np.ones(2), 0.5, 0.05, 0.0, 0.2, True)


def test_read_only_and_non_contiguous_inputs() -> None:
    """pandas (copy-on-write) hands out read-only arrays: they must work without a new JIT specialisation."""
    K_ = np.array([90.0, 100.0, 110.0])
    p = engine.option_price(S, K_, T, R, Q, 0.2, True)
    ro = p.copy()
    ro.flags.writeable = False
    iv, st = engine.implied_volatility(ro, S, K_[::1], T, R, Q, True)
    np.testing.assert_allclose(iv, 0.2, rtol=1e-12)
    strided = np.repeat(p, 2)[::2]
    iv2, _ = engine.implied_volatility(strided, S, K_, T, R, Q, True)
    np.testing.assert_array_equal(iv, iv2)
    from greeks import _kernels

    assert len(_kernels.implied_vol_kernel.signatures) == 1


def test_unknown_model_raises() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        engine.implied_volatility(10.0, 100.0, 100.0, 0.5, 0.05, 0.0, True, model="heston")


@pytest.mark.parametrize("model", MODELS)
def test_solve_chain_fallback(model: str) -> None:
    F, df = _fwd(model)
    price = np.array([
        float(engine.option_price(S, 100.0, T, R, Q, 0.3, True, model=model)),  # OK
        (F - K) * df * 0.99,  # below intrinsic
        F * df * 1.01,  # above max (call)
        (F - 50.0) * df,  # no time value
        math.nan,  # bad input
    ])
    strikes = np.array([100.0, K, K, 50.0, 100.0])
    res = engine.solve_chain(price, S, strikes, T, R, Q, True, model=model, fallback_sigma=0.18)
    assert res.status.tolist() == [Status.OK, Status.BELOW_INTRINSIC, Status.ABOVE_MAX_PRICE,
                                   Status.NO_TIME_VALUE, Status.BAD_INPUT]
    assert res.sigma_source.tolist() == [1, 2, 2, 2, 0]
    assert res.iv[0] == pytest.approx(0.3, rel=1e-13) and np.isnan(res.iv[1:]).all()
    np.testing.assert_allclose(res.sigma[:4], [res.iv[0], 0.18, 0.18, 0.18], rtol=0)
    assert np.isnan(res.sigma[4])
    # fallback rows are priced and Greek'd at the fallback sigma
    exp_p = engine.option_price(S, strikes[1:4], T, R, Q, 0.18, True, model=model)
    exp_g = engine.greeks(S, strikes[1:4], T, R, Q, 0.18, True, model=model)
    np.testing.assert_allclose(res.price[1:4], exp_p, rtol=1e-15)
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        np.testing.assert_allclose(getattr(res, name)[1:4], getattr(exp_g, name), rtol=1e-15)
    # implied row: the model price at the IV is the observed price; Greeks at the IV
    assert res.price[0] == price[0]
    g0 = engine.greeks(S, 100.0, T, R, Q, res.iv[0], True, model=model)
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        assert getattr(res, name)[0] == pytest.approx(float(getattr(g0, name)), rel=1e-15)
    assert float(engine.option_price(S, 100.0, T, R, Q, res.iv[0], True, model=model)) == pytest.approx(
        price[0], rel=1e-14)

    # no fallback (None, NaN, or non-positive) -> NaN Greeks, sigma_source 0
    for fb in (None, math.nan, 0.0, -0.2):
        res = engine.solve_chain(price, S, strikes, T, R, Q, True, model=model, fallback_sigma=fb)
        assert res.sigma_source.tolist() == [1, 0, 0, 0, 0]
        for name in ("sigma", "price", "delta", "gamma", "theta", "vega", "rho"):
            assert np.isnan(getattr(res, name)[1:]).all(), name
            assert np.isfinite(getattr(res, name)[0]), name


def test_solve_chain_fallback_array_per_row() -> None:
    price = np.array([1.0, 1.0, 1.0])  # all below intrinsic for the 50 call
    res = engine.solve_chain(price, S, 50.0, T, R, Q, True, fallback_sigma=np.array([0.1, math.nan, 0.3]))
    assert res.sigma_source.tolist() == [2, 0, 2]
    np.testing.assert_array_equal(res.sigma, [0.1, math.nan, 0.3])


def test_ill_conditioned_near_maximum() -> None:
    """Total volatility ~25: the price equals the maximum to within rounding, so the IV is not determined."""
    p = engine.option_price(100.0, 100.0, 2.0, 0.05, 0.0, 18.0, True)
    iv, st = engine.implied_volatility(p, 100.0, 100.0, 2.0, 0.05, 0.0, True)
    assert st in (Status.ILL_CONDITIONED, Status.ABOVE_MAX_PRICE) and np.isnan(iv)
    p = engine.option_price(100.0, 100.0, 2.0, 0.05, 0.0, 5.0, True)  # sigma·sqrt(t) = 7: still fine
    iv, st = engine.implied_volatility(p, 100.0, 100.0, 2.0, 0.05, 0.0, True)
    assert st == Status.OK and iv == pytest.approx(5.0, rel=1e-9)
