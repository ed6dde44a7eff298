"""Config ``frequency`` values (docs/REFERENCE.md §3.3).

Event-driven: ``every_tick``, ``every_interval`` (on each bar close of the config's interval, decided by tick time).
Time-driven, scheduled by celery-beat in exchange time: ``every_second``, ``every_minute``, ``Ns``/``Nm``/``Nh``,
``on_close`` (each trading day's session close: `configs.scheduling.fires_at`), ``daily@HH:MM``,
``weekly@MON@HH:MM``, ``monthly@D@HH:MM`` and 5-field cron strings (``minute hour day-of-month month day-of-week``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from celery.schedules import crontab

from indicators.bars import bucket_start

EVENT_DRIVEN = ("every_tick", "every_interval")
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_EVERY_RE = re.compile(r"^(\d+)([smh])$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
ACCEPTED = (
    "every_tick, every_interval, every_second, every_minute, Ns/Nm/Nh (e.g. 30s, 5m, 1h), on_close, "
    "daily@HH:MM, weekly@MON@HH:MM, monthly@D@HH:MM or a 5-field cron string"
)


class FrequencyError(ValueError):
    pass


@dataclass(frozen=True)
class Frequency:
    """A parsed frequency. ``kind`` is one of every_tick, every_interval, interval, crontab."""

    text: str
    kind: str
    seconds: int | None = None
    cron: tuple[str, str, str, str, str] | None = None  # minute, hour, day_of_month, month_of_year, day_of_week

    @property
    def is_time_driven(self) -> bool:
        return self.kind in ("interval", "crontab")

    @property
    def schedule_key(self) -> str:
        """Configs with the same key share one beat entry."""
        if self.kind == "interval":
            return f"every-{self.seconds}s"
        if self.kind == "crontab" and self.cron is not None:
            return "cron-" + "_".join(self.cron).replace("*", "x").replace("/", "per").replace(",", ".")
        return self.kind


def _hhmm(value: str, text: str) -> tuple[str, str]:
    match = _HHMM_RE.match(value)
    if not match:
        raise FrequencyError(f"time {value!r} in {text!r} must be HH:MM (24-hour)")
    return str(int(match.group(2))), str(int(match.group(1)))


def _check_cron(fields: list[str], text: str) -> tuple[str, str, str, str, str]:
    try:
        crontab(minute=fields[0], hour=fields[1], day_of_month=fields[2], month_of_year=fields[3],
                day_of_week=fields[4])
    except (ValueError, TypeError) as exc:
        raise FrequencyError(f"cron string {text!r} is invalid: {exc}") from None
    return fields[0], fields[1], fields[2], fields[3], fields[4]


def parse_frequency(value: str) -> Frequency:
    if not isinstance(value, str) or not value.strip():
        raise FrequencyError(f"frequency must be one of: {ACCEPTED}")
    text = value.strip()
    lowered = text.lower()
    if lowered in EVENT_DRIVEN:
        return Frequency(lowered, lowered)
    if lowered == "every_second":
        return Frequency(lowered, "interval", seconds=1)
    if lowered == "every_minute":
        return Frequency(lowered, "interval", seconds=60)
    match = _EVERY_RE.match(lowered)
    if match:
        count = int(match.group(1))
        seconds = count * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
        if count < 1 or seconds > 86_400:
            raise FrequencyError(f"frequency {text!r} must be between 1s and 24h")
        return Frequency(lowered, "interval", seconds=seconds)
    if lowered == "on_close":
        return Frequency(lowered, "crontab", cron=("30", "15", "*", "*", "1-5"))
    parts = text.split("@")
    head = parts[0].lower()
    if head == "daily" and len(parts) == 2:
        minute, hour = _hhmm(parts[1], text)
        return Frequency(f"daily@{parts[1]}", "crontab", cron=(minute, hour, "*", "*", "*"))
    if head == "weekly" and len(parts) == 3:
        day = parts[1].upper()
        if day not in WEEKDAYS:
            raise FrequencyError(f"weekday {parts[1]!r} in {text!r} must be one of {', '.join(WEEKDAYS)}")
        minute, hour = _hhmm(parts[2], text)
        return Frequency(f"weekly@{day}@{parts[2]}", "crontab", cron=(minute, hour, "*", "*", day.lower()))
    if head == "monthly" and len(parts) == 3:
        if not parts[1].isdigit() or not 1 <= int(parts[1]) <= 31:
            raise FrequencyError(f"day {parts[1]!r} in {text!r} must be 1-31")
        minute, hour = _hhmm(parts[2], text)
        return Frequency(f"monthly@{int(parts[1])}@{parts[2]}", "crontab",
                         cron=(minute, hour, str(int(parts[1])), "*", "*"))
    fields = text.split()
    if len(fields) == 5:
        cron = _check_cron(fields, text)
        return Frequency(" ".join(cron), "crontab", cron=cron)
    raise FrequencyError(f"frequency {text!r} is not recognised; use {ACCEPTED}")


def bar_close_crossings(
    times: list[float], previous: list[float | None], interval: str, session_open: str = "09:15",
    tz: str = "Asia/Kolkata",
) -> list[bool]:
    """For ``every_interval``: whether each tick (epoch seconds ``times[i]``) is the first one after a bar close of
    ``interval``, i.e. its bar differs from the bar of the same instrument's previous tick (``previous[i]``, by
    tick time; None when unknown, which never fires). Decided by tick time only, so a replay fires exactly as the
    live feed did. Bars are aligned as `indicators.bars.bucket_start` aligns them (session open, exchange days).
    """
    if not times:
        return []
    known = [i for i, p in enumerate(previous) if p is not None]
    if not known:
        return [False] * len(times)
    now = pd.DatetimeIndex(pd.to_datetime(np.array([times[i] for i in known], dtype=float), unit="s", utc=True))
    before = pd.DatetimeIndex(pd.to_datetime(np.array([previous[i] for i in known], dtype=float), unit="s",
                                             utc=True))
    current_bar = bucket_start(now, interval, session_open=session_open, tz=tz)
    previous_bar = bucket_start(before, interval, session_open=session_open, tz=tz)
    crossed = [False] * len(times)
    for slot, a, b in zip(known, current_bar.asi8, previous_bar.asi8, strict=True):
        crossed[slot] = bool(a > b)
    return crossed
