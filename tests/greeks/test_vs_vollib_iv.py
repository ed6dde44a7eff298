"""The engine's implied volatility against vollib's on the same inputs.

1. Where both solve, they agree (vollib runs the same Let's Be Rational algorithm in pure Python).
2. Wherever vollib fails on a random sample — raises, or returns an IV more than 1e-6 off the truth — the engine
   returns the right IV or a flagged null.
3. The cases found are LISTED below (parametrised), with vollib's answer, ours and the truth:

   ======================================  ==========================================  =====================  ========
   case                                    vollib                                      engine                 truth
   ======================================  ==========================================  =====================  ========
   price below intrinsic (call)            raises py_lets_be_rational                  nan, below_intrinsic   none
                                           BelowIntrinsicException — not vollib's
                                           documented PriceIsBelowIntrinsic
   price above S·e^{-qt} (call)            raises AboveMaximumException (undocumented)  nan, above_max_price   none
   price exactly intrinsic                 0.0 (then Greeks divide by zero)             nan, no_time_value     none*
   deep ITM, time value lost in rounding   0.2608 (truth 0.01354: 19x too high)         nan, no_time_value     0.01354
   deep ITM, time value lost in rounding   0.1057 (truth 0.01404: 7.5x too high)        nan, no_time_value     0.01404
   vollib's own BS price, deep ITM         raises BelowIntrinsicException on a price    nan, no_time_value     0.05770
                                           vollib itself produced
   sub-normal premium (4.9e-324·S put)     1.6300033 (truth 1.63, silently 2e-6 off)    nan, ill_conditioned   1.63
   sigma·sqrt(t) = 24, price ≈ maximum     9.64 (truth 14.25)                           nan, ill_conditioned   14.25
   zero premium                            0.0                                          nan, bad_input         none
   NaN premium                             nan (no error)                               nan, bad_input         none
   t = 0                                   inf (divide-by-zero warning)                 nan, expired           none
   t < 0 (tick after the 15:30 cut-off)    raises ValueError (math domain error)        nan, expired           none
   ======================================  ==========================================  =====================  ========

   (*) at exactly the intrinsic value σ = 0 solves the equation, but the premium carries no information about σ
   beyond "its time value is below one ulp", so a number would be a silent guess.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from vollib.black import implied_volatility as v76_iv
from vollib.black_scholes import black_scholes as vollib_bs_price
from vollib.black_scholes import implied_volatility as vbs_iv
from vollib.black_scholes_merton import implied_volatility as vbsm_iv

from greeks import engine
from greeks.engine import MODELS, STATUS_NAMES, Status

from ._cases import random_cases


def vollib_iv(model: str, price: float, S: float, K: float, t: float, r: float, q: float, is_call: bool) -> Any:
    """vollib's IV, or the exception instance it raised."""
    flag = "c" if is_call else "p"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            if model == "black_scholes":
                return vbs_iv.implied_volatility(price, S, K, t, r, flag)
            if model == "black_scholes_merton":
                return vbsm_iv.implied_volatility(price, S, K, t, r, q, flag)
            return v76_iv.implied_volatility(price, S, K, r, t, flag)  # note vollib's (r, t) order here
        except Exception as exc:  # record whatever vollib raises
            return exc


@pytest.mark.parametrize("model", MODELS)
def test_agrees_with_vollib_and_is_right_where_vollib_fails(model: str) -> None:
    found_failures = 0
    for log_uniform in (False, True):
        c = random_cases(2500, seed=61 + MODELS.index(model) + 10 * log_uniform, log_uniform=log_uniform)
        price = engine.option_price(c.S, c.K, c.t, c.r, c.q, c.sigma, c.is_call, model=model)
        iv, st = engine.implied_volatility(price, c.S, c.K, c.t, c.r, c.q, c.is_call, model=model)
        for i in range(c.S.size):
            if not price[i] / c.S[i] >= 1e-300:
                continue
            v = vollib_iv(model, float(price[i]), float(c.S[i]), float(c.K[i]), float(c.t[i]), float(c.r[i]),
                          float(c.q[i]), bool(c.is_call[i]))
            vollib_ok = isinstance(v, float) and math.isfinite(v) and abs(v / c.sigma[i] - 1.0) <= 1e-6
            if st[i] == Status.OK:
                # ours is right ...
                assert abs(iv[i] / c.sigma[i] - 1.0) <= 1e-9
                # ... and where vollib also solves, the two agree closely
                if vollib_ok:
                    assert abs(iv[i] / v - 1.0) <= 1e-9, (i, iv[i], v)
            else:
                assert np.isnan(iv[i]) and st[i] == Status.NO_TIME_VALUE  # a flagged null, never a number
            if not vollib_ok:
                found_failures += 1
    assert found_failures > 0  # vollib does fail on this sample (deep in-the-money, lost time value)


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    is_call: bool
    S: float
    K: float
    t: float
    r: float
    q: float
    true_sigma: float | None  # None: no volatility reproduces the premium
    price: float | None = None  # explicit premium; else the model price at true_sigma (engine's)
    vollib_priced: bool = False  # premium computed by vollib.black_scholes at true_sigma
    vollib_raises: type[BaseException] | str | None = None
    vollib_returns: float | None = None  # documented wrong/garbage value (NaN/inf allowed)
    expected_status: Status = Status.OK


def _premium(c: Case) -> float:
    if c.price is not None:
        return c.price
    if c.vollib_priced:
        return float(vollib_bs_price("c" if c.is_call else "p", c.S, c.K, c.t, c.r, c.true_sigma))
    return float(engine.option_price(c.S, c.K, c.t, c.r, c.q, c.true_sigma, c.is_call, model=c.model))


def _intrinsic(S: float, K: float, t: float, r: float, q: float) -> float:
    return (S * math.exp((r - q) * t) - K) * math.exp(-r * t)


CASES = [
    Case("below_intrinsic_raises_undocumented_exception", "black_scholes_merton", True, 100.0, 90.0, 0.5, 0.07,
         0.02, None, price=_intrinsic(100.0, 90.0, 0.5, 0.07, 0.02) - 0.01, vollib_raises="BelowIntrinsicException",
         expected_status=Status.BELOW_INTRINSIC),
    Case("above_max_raises_undocumented_exception", "black_scholes_merton", True, 100.0, 90.0, 0.5, 0.07, 0.02,
         None, price=100.0 * math.exp(-0.02 * 0.5) + 1.0, vollib_raises="AboveMaximumException",
         expected_status=Status.ABOVE_MAX_PRICE),
    Case("at_intrinsic_returns_zero_vol", "black_scholes_merton", True, 100.0, 90.0, 0.5, 0.07, 0.02, None,
         price=_intrinsic(100.0, 90.0, 0.5, 0.07, 0.02), vollib_returns=0.0, expected_status=Status.NO_TIME_VALUE),
    Case("deep_itm_lost_time_value_19x_too_high", "black_scholes_merton", True, 100.0, 50.53167556592929,
         0.11937852112711018, 0.07, 0.0, 0.013537014589836041, vollib_returns=0.260796747243195,
         expected_status=Status.NO_TIME_VALUE),
    Case("deep_itm_lost_time_value_7x_too_high", "black_scholes_merton", True, 100.0, 77.31731007324896,
         0.10683910734793593, 0.07, 0.0, 0.014037381167854173, vollib_returns=0.10571763864728839,
         expected_status=Status.NO_TIME_VALUE),
    Case("cannot_invert_its_own_black_scholes_price", "black_scholes", True, 100.0, 57.17506397996627,
         0.4650906771377274, 0.07, 0.0, 0.057696478255892136, vollib_priced=True,
         vollib_raises="BelowIntrinsicException", expected_status=Status.NO_TIME_VALUE),
    Case("subnormal_premium_silently_2e-6_off", "black_scholes_merton", False, 100.0, 42.5, 0.000189, 0.05, 0.02,
         1.63, vollib_returns=1.6300032753325788, expected_status=Status.ILL_CONDITIONED),
    Case("total_vol_24_price_at_maximum", "black_scholes_merton", True, 100.0, 55.50298343775465,
         2.95980643849504, 0.05, 0.0, 14.250088327460997, vollib_returns=9.640959465222718,
         expected_status=Status.ILL_CONDITIONED),
    Case("zero_premium_returns_zero_vol", "black_scholes_merton", True, 100.0, 110.0, 0.5, 0.07, 0.02, None,
         price=0.0, vollib_returns=0.0, expected_status=Status.BAD_INPUT),
    Case("nan_premium_returns_nan_silently", "black_scholes_merton", True, 100.0, 110.0, 0.5, 0.07, 0.02, None,
         price=math.nan, vollib_returns=math.nan, expected_status=Status.BAD_INPUT),
    Case("zero_time_returns_inf", "black_scholes_merton", True, 100.0, 110.0, 0.0, 0.07, 0.02, None, price=1.0,
         vollib_returns=math.inf, expected_status=Status.EXPIRED),
    Case("negative_time_raises_value_error", "black_scholes_merton", True, 100.0, 110.0, -0.001, 0.07, 0.02, None,
         price=1.0, vollib_raises=ValueError, expected_status=Status.EXPIRED),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_listed_vollib_failure(case: Case) -> None:
    price = _premium(case)
    v = vollib_iv(case.model, price, case.S, case.K, case.t, case.r, case.q, case.is_call)
    ours, status = engine.implied_volatility(price, case.S, case.K, case.t, case.r, case.q, case.is_call,
                                             model=case.model)
    print(f"\n{case.id}: vollib -> {v!r}; engine -> {float(ours)!r} ({STATUS_NAMES[int(status)]}); "
          f"truth -> {case.true_sigma!r}")

    # vollib really fails as documented
    if case.vollib_raises is not None:
        assert isinstance(v, BaseException), v
        if isinstance(case.vollib_raises, str):
            assert type(v).__name__ == case.vollib_raises
            from vollib.helpers.exceptions import PriceIsAboveMaximum, PriceIsBelowIntrinsic

            # ... and not with the exception classes vollib documents for these conditions
            assert not isinstance(v, (PriceIsBelowIntrinsic, PriceIsAboveMaximum))
        else:
            assert isinstance(v, case.vollib_raises)
    else:
        assert case.vollib_returns is not None
        assert isinstance(v, float), v
        if math.isnan(case.vollib_returns):
            assert math.isnan(v)
        else:
            assert v == pytest.approx(case.vollib_returns, rel=1e-6, abs=0.0)
        if case.true_sigma is not None:
            assert abs(v / case.true_sigma - 1.0) > 1e-6  # wrong by more than 1e-6 relative

    # the engine returns the right value or a flagged null, never a wrong number
    assert int(status) == case.expected_status
    if case.expected_status == Status.OK:
        assert abs(float(ours) / case.true_sigma - 1.0) <= 1e-9
    else:
        assert math.isnan(float(ours))
