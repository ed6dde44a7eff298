"""Time to expiry, measured from the tick's own timestamp (never the wall clock).

Convention (docs/REFERENCE.md §4): options expire at **15:30 Asia/Kolkata** (IST, UTC+05:30, no daylight saving) on the expiry
date; time is counted in years of 365 days of 86,400 s: ``t = (expiry_cutoff − tick_time) / (365·86400 s)``.
``t <= 0`` means the option has expired (the engine then reports intrinsic value and no IV).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

IST = ZoneInfo("Asia/Kolkata")
EXPIRY_CUTOFF = dt.time(15, 30)
"""Expiry time of day in IST."""
SECONDS_PER_YEAR = 365.0 * 86400.0
_CUTOFF_UTC_SECONDS = (15 * 3600 + 30 * 60) - (5 * 3600 + 30 * 60)  # 15:30 IST = 10:00 UTC
_SECONDS_PER_DAY = 86400


def expiry_cutoff(expiry: dt.date) -> dt.datetime:
    """The aware datetime (IST) at which an option expiring on ``expiry`` expires: 15:30 IST that day."""
    return dt.datetime.combine(expiry, EXPIRY_CUTOFF, tzinfo=IST)


def _tick_epoch_seconds(tick_time: dt.datetime | float | npt.ArrayLike) -> float | np.ndarray:
    if isinstance(tick_time, dt.datetime):
        if tick_time.tzinfo is None or tick_time.utcoffset() is None:
            raise ValueError("tick_time must be timezone-aware (a naive datetime is ambiguous)")
        return tick_time.timestamp()
    if isinstance(tick_time, (int, float, np.integer, np.floating)):
        return float(tick_time)
    if isinstance(tick_time, np.datetime64):
        return tick_time.astype("datetime64[ns]").astype(np.int64) / 1e9
    arr = np.asarray(tick_time)
    if arr.dtype == object:  # e.g. a list of aware datetimes
        return np.array([_tick_epoch_seconds(v) for v in arr.reshape(-1)], dtype=np.float64).reshape(arr.shape)
    if arr.dtype.kind == "M":  # datetime64, taken as UTC (numpy's convention)
        return arr.astype("datetime64[ns]").astype(np.int64) / 1e9
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    raise TypeError(f"tick_time must be an aware datetime, epoch seconds or datetime64, got {arr.dtype}")


def _expiry_epoch_days(expiry: dt.date | str | npt.ArrayLike) -> int | np.ndarray:
    if isinstance(expiry, dt.datetime):
        raise TypeError("expiry must be a date (the cut-off time is always 15:30 IST), not a datetime")
    if isinstance(expiry, dt.date):
        return (expiry - dt.date(1970, 1, 1)).days
    if isinstance(expiry, (str, np.datetime64)):
        return int(np.datetime64(expiry, "D").astype(np.int64))
    arr = np.asarray(expiry)
    if arr.dtype == object and arr.size and isinstance(arr.flat[0], dt.datetime):
        raise TypeError("expiry must hold dates, not datetimes")
    return np.asarray(arr, dtype="datetime64[D]").astype(np.int64)


def time_to_expiry(
    tick_time: dt.datetime | float | npt.ArrayLike, expiry: dt.date | str | npt.ArrayLike
) -> float | np.ndarray:
    """Years (365-day) from ``tick_time`` to 15:30 IST on ``expiry``; ``<= 0`` means expired.

    ``tick_time``: a timezone-aware datetime, epoch seconds (float/int, scalar or array) or datetime64 (UTC).
    ``expiry``: a ``datetime.date``, an ISO date string, or an array of dates / datetime64 / strings. Arrays
    broadcast. Returns a float when both arguments are scalars, else a float64 array.
    Example: a tick at 15:29:00 IST on the expiry day gives 60 / (365·86400) years.
    """
    tick_s = _tick_epoch_seconds(tick_time)
    days = _expiry_epoch_days(expiry)
    cutoff_s = np.asarray(days, dtype=np.float64) * _SECONDS_PER_DAY + _CUTOFF_UTC_SECONDS
    t = (cutoff_s - np.asarray(tick_s, dtype=np.float64)) / SECONDS_PER_YEAR
    if np.ndim(t) == 0:
        return float(t)
    return t
