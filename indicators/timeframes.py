"""Bar timeframes (the config's ``interval``, docs/REFERENCE.md §3.3) — pure Python, no Django.

Accepted spellings (case-sensitive: ``1M`` is one month, ``1m`` is one minute):

* minutes: ``Nm`` (``1m 2m 3m 5m 10m 15m 30m``, any custom ``7m``), ``custom_N`` (N minutes, e.g.
  ``custom_13``), the older ``Nminute`` (``5minute``) and bare ``minute`` (= ``1m``);
* hours: ``Nh`` (``1h 2h 4h``, any custom ``3h``) and the older ``Nhour`` (``1hour``);
* ``1d`` / ``1day`` (one exchange day), ``1w`` (one exchange week, Monday start), ``1M`` (calendar month).

Intraday sizes must total 1–1440 minutes. Canonical names (``Timeframe.name``): an intraday size that is a whole
number of hours is written ``{hours}h`` (``60m`` → ``1h``, ``custom_120`` → ``2h``, ``1440m`` → ``24h``),
anything else ``{minutes}m`` (``custom_13`` → ``13m``, ``90m`` stays ``90m``); the others are ``1d``, ``1w``,
``1M``. ``parse_timeframe(tf.name) == tf`` for every timeframe.

Exchange defaults: session open 09:15 and time zone ``Asia/Kolkata`` (no DST). Both are module constants and
every alignment function in :mod:`indicators.bars` takes them as overridable parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Literal

__all__ = [
    "EXCHANGE_TZ",
    "MAX_INTRADAY_MINUTES",
    "SESSION_CLOSE",
    "SESSION_OPEN",
    "STANDARD_TIMEFRAMES",
    "STANDARD_TIMEFRAME_NAMES",
    "Timeframe",
    "TimeUnit",
    "parse_timeframe",
    "session_time",
]

TimeUnit = Literal["minute", "day", "week", "month"]

#: Exchange time zone used for session alignment and exchange dates (IANA name).
EXCHANGE_TZ: str = "Asia/Kolkata"
#: Default session open (exchange local wall-clock time); intraday bars are aligned to it.
SESSION_OPEN: time = time(9, 15)
#: Default session close (exchange local wall-clock time); informational (``on_close`` schedules use it).
SESSION_CLOSE: time = time(15, 30)
#: Largest intraday bar size, in minutes.
MAX_INTRADAY_MINUTES: int = 1440

ACCEPTED_FORMS = (
    "1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d 1w 1M, custom Nm or Nh (e.g. 7m, 3h), custom_N (N minutes, e.g. "
    "custom_13), Nminute/minute, Nhour (e.g. 5minute, 1hour), 1day; intraday sizes must be 1-1440 minutes "
    "in total; '1M' (month) and '1m' (minute) are case-sensitive"
)

_INTRADAY_PATTERNS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"(\d+)m"), 1),
    (re.compile(r"(\d+)h"), 60),
    (re.compile(r"custom_(\d+)"), 1),
    (re.compile(r"(\d*)minute"), 1),
    (re.compile(r"(\d+)hour"), 60),
)
_FIXED: dict[str, TimeUnit] = {"1d": "day", "1day": "day", "1w": "week", "1M": "month"}


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar size.

    Attributes:
        unit: ``"minute"`` for intraday bars, else ``"day"``, ``"week"`` or ``"month"``.
        count: number of ``unit`` per bar — total minutes (1–1440) for intraday bars, always 1 otherwise.

    Two timeframes are equal when they describe the same bar size (``60m`` == ``1h`` == ``1hour``).
    """

    unit: TimeUnit
    count: int

    def __post_init__(self) -> None:
        if self.unit == "minute":
            if not 1 <= self.count <= MAX_INTRADAY_MINUTES:
                raise ValueError(
                    f"intraday timeframe must be 1-{MAX_INTRADAY_MINUTES} minutes, got {self.count}"
                )
        elif self.unit in ("day", "week", "month"):
            if self.count != 1:
                raise ValueError(f"only 1 {self.unit} bars are supported, got {self.count}")
        else:
            raise ValueError(f"unknown timeframe unit {self.unit!r}")

    @property
    def name(self) -> str:
        """Canonical name: ``{h}h`` for whole hours, ``{m}m`` otherwise, ``1d``, ``1w``, ``1M``."""
        if self.unit == "minute":
            if self.count % 60 == 0:
                return f"{self.count // 60}h"
            return f"{self.count}m"
        return {"day": "1d", "week": "1w", "month": "1M"}[self.unit]

    @property
    def is_intraday(self) -> bool:
        """True for minute/hour bars (aligned to the session open)."""
        return self.unit == "minute"

    @property
    def minutes(self) -> int | None:
        """Bar size in minutes for intraday bars; None for 1d/1w/1M (calendar-aligned, variable length)."""
        return self.count if self.unit == "minute" else None

    @property
    def duration(self) -> timedelta | None:
        """Bar size as a timedelta for intraday bars (None for 1d/1w/1M)."""
        return timedelta(minutes=self.count) if self.unit == "minute" else None

    @property
    def divides_day(self) -> bool:
        """True if a whole number of intraday bars fits in 24 h (then one constant SQL origin suffices).

        Always True for 1d/1w/1M.
        """
        return self.unit != "minute" or MAX_INTRADAY_MINUTES % self.count == 0

    @property
    def is_standard(self) -> bool:
        """True for the standard timeframes of docs/REFERENCE.md §3.3 (``1m`` … ``1M``)."""
        return self.name in STANDARD_TIMEFRAME_NAMES

    @property
    def sql_interval(self) -> str:
        """PostgreSQL interval literal: ``'5 minutes'``, ``'1 day'``, ``'1 week'``, ``'1 month'``."""
        if self.unit == "minute":
            return f"{self.count} minutes"
        return f"1 {self.unit}"

    @property
    def pandas_freq(self) -> str:
        """pandas frequency string: ``'5min'``, ``'D'``, ``'W-MON'`` (weeks labelled by Monday), ``'MS'``."""
        if self.unit == "minute":
            return f"{self.count}min"
        return {"day": "D", "week": "W-MON", "month": "MS"}[self.unit]

    def __str__(self) -> str:
        return self.name


def parse_timeframe(value: str | Timeframe) -> Timeframe:
    """Parse an ``interval`` string (see the module docstring for the accepted forms).

    Surrounding whitespace is ignored; everything else is exact and case-sensitive. A :class:`Timeframe` is
    returned unchanged.

    Raises:
        ValueError: naming the bad value and listing the accepted forms.
    """
    if isinstance(value, Timeframe):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"timeframe must be a string, got {type(value).__name__}; accepted: {ACCEPTED_FORMS}"
        )
    text = value.strip()
    fixed = _FIXED.get(text)
    if fixed is not None:
        return Timeframe(fixed, 1)
    for pattern, factor in _INTRADAY_PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        digits = match.group(1)
        count = int(digits) if digits else 1
        minutes = count * factor
        if not 1 <= minutes <= MAX_INTRADAY_MINUTES:
            raise ValueError(
                f"invalid timeframe {value!r}: intraday size is {minutes} minutes, must be "
                f"1-{MAX_INTRADAY_MINUTES}; accepted: {ACCEPTED_FORMS}"
            )
        return Timeframe("minute", minutes)
    raise ValueError(f"invalid timeframe {value!r}; accepted: {ACCEPTED_FORMS}")


STANDARD_TIMEFRAME_NAMES: tuple[str, ...] = (
    "1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d", "1w", "1M",
)  # fmt: skip
#: The standard timeframes of docs/REFERENCE.md §3.3 (candidates for continuous aggregates), smallest first.
STANDARD_TIMEFRAMES: list[Timeframe] = [parse_timeframe(n) for n in STANDARD_TIMEFRAME_NAMES]


def session_time(value: time | str) -> time:
    """A local session time given as ``time`` or ISO ``"HH:MM[:SS]"`` (how callers pass ``session_open``)."""
    if isinstance(value, time):
        return value
    return time.fromisoformat(value)
