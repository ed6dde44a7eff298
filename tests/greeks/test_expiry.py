"""time_to_expiry: 15:30 Asia/Kolkata cut-off, 365-day years, tick time (never the wall clock)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from greeks.expiry import IST, SECONDS_PER_YEAR, expiry_cutoff, time_to_expiry

EXPIRY = dt.date(2024, 6, 27)


def test_one_minute_before_cutoff() -> None:
    tick = dt.datetime(2024, 6, 27, 15, 29, 0, tzinfo=IST)
    assert time_to_expiry(tick, EXPIRY) == 60.0 / (365 * 86400)


def test_at_and_after_cutoff_is_expired() -> None:
    assert time_to_expiry(dt.datetime(2024, 6, 27, 15, 30, tzinfo=IST), EXPIRY) == 0.0
    assert time_to_expiry(dt.datetime(2024, 6, 27, 15, 31, tzinfo=IST), EXPIRY) == -60.0 / SECONDS_PER_YEAR
    assert time_to_expiry(dt.datetime(2024, 6, 28, 9, 15, tzinfo=IST), EXPIRY) < 0


def test_other_timezones_and_whole_days() -> None:
    # 10:00 UTC is 15:30 IST
    assert time_to_expiry(dt.datetime(2024, 6, 27, 10, 0, tzinfo=dt.UTC), EXPIRY) == 0.0
    # one week before the cut-off: exactly 7/365 years
    tick = dt.datetime(2024, 6, 20, 15, 30, tzinfo=IST)
    assert time_to_expiry(tick, EXPIRY) == pytest.approx(7.0 / 365.0, rel=1e-15)
    # a leap year still uses 365-day years: 366 days of calendar time -> 366/365 years
    tick = dt.datetime(2023, 6, 27, 15, 30, tzinfo=IST)
    assert time_to_expiry(tick, dt.date(2024, 6, 27)) == pytest.approx(366.0 / 365.0, rel=1e-15)


def test_cutoff_datetime() -> None:
    c = expiry_cutoff(EXPIRY)
    assert c.tzinfo is IST and (c.hour, c.minute) == (15, 30)
    assert c.astimezone(dt.UTC).hour == 10


def test_epoch_seconds_and_arrays() -> None:
    cutoff_epoch = expiry_cutoff(EXPIRY).timestamp()
    assert time_to_expiry(cutoff_epoch - 60.0, EXPIRY) == 60.0 / SECONDS_PER_YEAR
    ticks = cutoff_epoch - np.array([60.0, 3600.0, 0.0, -30.0])
    t = time_to_expiry(ticks, EXPIRY)
    assert isinstance(t, np.ndarray) and t.shape == (4,)
    np.testing.assert_array_equal(t, np.array([60.0, 3600.0, 0.0, -30.0]) / SECONDS_PER_YEAR)
    # array of expiries (dates, strings or datetime64) broadcast against one tick
    expiries = np.array(["2024-06-27", "2024-07-04"], dtype="datetime64[D]")
    t = time_to_expiry(cutoff_epoch, expiries)
    np.testing.assert_allclose(t, [0.0, 7.0 / 365.0], rtol=0, atol=1e-15)
    t = time_to_expiry(cutoff_epoch, [dt.date(2024, 6, 27), dt.date(2024, 7, 4)])
    np.testing.assert_allclose(t, [0.0, 7.0 / 365.0], rtol=0, atol=1e-15)
    assert time_to_expiry(cutoff_epoch, "2024-07-04") == pytest.approx(7.0 / 365.0, rel=1e-15)
    # datetime64 ticks are UTC
    tick64 = np.datetime64("2024-06-27T09:59:00", "s")
    assert time_to_expiry(tick64, EXPIRY) == 60.0 / SECONDS_PER_YEAR
    aware = [dt.datetime(2024, 6, 27, 15, 29, tzinfo=IST), dt.datetime(2024, 6, 27, 15, 28, tzinfo=IST)]
    np.testing.assert_array_equal(time_to_expiry(aware, EXPIRY), np.array([60.0, 120.0]) / SECONDS_PER_YEAR)
    t = time_to_expiry(np.array([tick64, tick64]), np.array([EXPIRY, dt.date(2024, 6, 28)]))
    np.testing.assert_allclose(t, [60.0 / SECONDS_PER_YEAR, (86400 + 60.0) / SECONDS_PER_YEAR], rtol=1e-15)


def test_rejects_ambiguous_inputs() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        time_to_expiry(dt.datetime(2024, 6, 27, 15, 29), EXPIRY)
    with pytest.raises(TypeError, match="date"):
        time_to_expiry(dt.datetime(2024, 6, 27, 15, 29, tzinfo=IST), dt.datetime(2024, 6, 27, 15, 30))
