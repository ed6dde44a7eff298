"""Moneyness: ATM strike, ITMn/OTMn/ITM/OTM/Dnn levels for calls and puts, ATM IV interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greeks import engine
from greeks.moneyness import Level, atm_iv, atm_strike, level_strikes, parse_level, parse_right

STRIKES = np.array([21800.0, 21850.0, 21900.0, 21950.0, 22000.0, 22050.0, 22100.0, 22150.0, 22200.0])
SPOT = 22012.0  # ATM = 22000


def test_atm_strike_nearest_and_tie_goes_lower() -> None:
    assert atm_strike(STRIKES, SPOT) == 22000.0
    assert atm_strike(STRIKES, 22030.0) == 22050.0
    assert atm_strike(STRIKES, 22025.0) == 22000.0  # exact tie -> lower strike
    assert atm_strike(STRIKES, 21000.0) == 21800.0  # below the range -> lowest listed
    assert atm_strike(STRIKES, 99999.0) == 22200.0
    assert atm_strike(STRIKES[::-1], SPOT) == 22000.0  # unsorted input
    assert atm_strike([22000.0, math.nan, 22050.0, 22000.0], 22040.0) == 22050.0  # NaN / duplicates ignored
    assert math.isnan(atm_strike([], SPOT))
    assert math.isnan(atm_strike(STRIKES, math.nan))


@pytest.mark.parametrize(
    ("level", "call", "put"),
    [
        ("ATM", [22000.0], [22000.0]),
        ("ITM1", [21950.0], [22050.0]),
        ("ITM2", [21900.0], [22100.0]),
        ("OTM1", [22050.0], [21950.0]),
        ("OTM3", [22150.0], [21850.0]),
        ("ITM4", [21800.0], [22200.0]),
        ("ITM5", [], []),  # beyond the listed strikes
        ("OTM", [22050.0, 22100.0, 22150.0, 22200.0], [21800.0, 21850.0, 21900.0, 21950.0]),
        ("ITM", [21800.0, 21850.0, 21900.0, 21950.0], [22050.0, 22100.0, 22150.0, 22200.0]),
        (" itm2 ", [21900.0], [22100.0]),  # case-insensitive, blanks ignored
    ],
)
def test_levels_calls_and_puts(level: str, call: list[float], put: list[float]) -> None:
    atm = atm_strike(STRIKES, SPOT)
    np.testing.assert_array_equal(level_strikes(STRIKES, atm, level, "call"), call)
    np.testing.assert_array_equal(level_strikes(STRIKES, atm, level, "CE"), call)
    np.testing.assert_array_equal(level_strikes(STRIKES, atm, level, "put"), put)
    np.testing.assert_array_equal(level_strikes(STRIKES, atm, level, "p"), put)


def test_delta_levels_from_engine_deltas() -> None:
    t, r, q = 7.0 / 365.0, 0.065, 0.0
    strikes = np.arange(21000.0, 23001.0, 50.0)
    sigma = 0.13
    g_call = engine.greeks(SPOT, strikes, t, r, q, sigma, True)
    g_put = engine.greeks(SPOT, strikes, t, r, q, sigma, False)
    atm = atm_strike(strikes, SPOT)
    for level, target in (("D25", 0.25), ("D10", 0.10), ("D50", 0.50)):
        kc = level_strikes(strikes, atm, level, "call", deltas=g_call.delta)
        kp = level_strikes(strikes, atm, level, "put", deltas=g_put.delta)
        assert kc.shape == (1,) and kp.shape == (1,)
        best_c = strikes[np.argmin(np.abs(np.abs(g_call.delta) - target))]
        best_p = strikes[np.argmin(np.abs(np.abs(g_put.delta) - target))]
        assert kc[0] == best_c and kp[0] == best_p
    # 25-delta call is above the spot, 25-delta put below it
    assert level_strikes(strikes, atm, "D25", "call", deltas=g_call.delta)[0] > SPOT
    assert level_strikes(strikes, atm, "D25", "put", deltas=g_put.delta)[0] < SPOT


def test_delta_level_ties_and_nans() -> None:
    k = np.array([100.0, 110.0, 120.0])
    assert level_strikes(k, 110.0, "D25", "call", deltas=[0.30, math.nan, 0.20])[0] == 100.0  # tie -> lower
    assert level_strikes(k, 110.0, "D25", "call", deltas=[math.nan] * 3).size == 0
    with pytest.raises(ValueError, match="deltas"):
        level_strikes(k, 110.0, "D25", "call")
    with pytest.raises(ValueError, match="length"):
        level_strikes(k, 110.0, "D25", "call", deltas=[0.1, 0.2])


@pytest.mark.parametrize("bad", ["", "ATM1", "ITM0", "OTM-1", "D0", "D100", "D", "XTM1", "ITM 2", "d25x", "25D"])
def test_bad_level_strings(bad: str) -> None:
    with pytest.raises(ValueError, match="level"):
        parse_level(bad)


def test_parse_level_and_right() -> None:
    assert parse_level("ATM") == Level("ATM", None)
    assert parse_level("OTM12") == Level("OTM", 12)
    assert parse_level("itm") == Level("ITM", None)
    assert parse_level("D25") == Level("DELTA", 25)
    assert parse_right("PE") == "put" and parse_right("c") == "call"
    with pytest.raises(ValueError, match="right"):
        parse_right("straddle")
    with pytest.raises(ValueError, match="not among"):
        level_strikes(STRIKES, 22010.0, "ITM1", "call")


def test_atm_iv_interpolates_and_averages() -> None:
    k = np.array([21900.0, 21950.0, 22000.0, 22050.0, 22100.0])
    call = np.array([0.150, 0.140, 0.130, 0.125, 0.120])
    put = np.array([0.160, 0.150, 0.140, 0.135, math.nan])
    # spot 22012: between 22000 (avg 0.135) and 22050 (avg 0.130); weight 12/50
    assert atm_iv(k, call, put, 22012.0) == pytest.approx(0.135 + (12.0 / 50.0) * (0.130 - 0.135), rel=1e-15)
    assert atm_iv(k, call, put, 22000.0) == pytest.approx(0.135, rel=1e-15)  # on a strike
    # 22100 has only the call solved: uses it
    assert atm_iv(k, call, put, 22075.0) == pytest.approx(0.5 * (0.130 + 0.120), rel=1e-15)
    # NaN IV at a bracketing strike: the next usable strike brackets instead
    call2 = call.copy()
    put2 = put.copy()
    call2[3] = put2[3] = math.nan
    assert atm_iv(k, call2, put2, 22025.0) == pytest.approx(0.135 + 0.25 * (0.120 - 0.135), rel=1e-15)
    # outside the usable strikes: no extrapolation
    assert math.isnan(atm_iv(k, call, put, 21000.0))
    assert math.isnan(atm_iv(k, [math.nan] * 5, [math.nan] * 5, 22012.0))
    assert math.isnan(atm_iv(k, call, put, math.nan))


def test_atm_iv_from_engine_chain_recovers_flat_vol() -> None:
    """Calls and puts priced at 14 % and inverted by the engine: ATM IV is 14 % (puts/calls averaged)."""
    strikes = np.arange(21500.0, 22501.0, 50.0)
    t, r, q = 14.0 / 365.0, 0.065, 0.012
    pc = engine.option_price(SPOT, strikes, t, r, q, 0.14, True)
    pp = engine.option_price(SPOT, strikes, t, r, q, 0.14, False)
    ivc, _ = engine.implied_volatility(pc, SPOT, strikes, t, r, q, True)
    ivp, _ = engine.implied_volatility(pp, SPOT, strikes, t, r, q, False)
    assert atm_iv(strikes, ivc, ivp, SPOT) == pytest.approx(0.14, rel=1e-9)
