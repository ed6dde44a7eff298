"""The exchange's trading calendar (docs/REFERENCE.md §3.3, "Exchange calendar"): which exchange dates are
sessions, and each session's open and close in exchange time.

Trading days come from the maintained ``exchange_calendars`` package (``SIGNAL_EXCHANGE_CALENDAR``, default
``XNSE``: NSE and BSE close on the same holidays, so ``XNSE`` reads the package's ``XBOM`` calendar), plus
``SIGNAL_EXCHANGE_HOLIDAYS`` (extra closed dates) and ``SIGNAL_SPECIAL_SESSIONS`` (dates with their own hours: a
half-day, or a session on a day otherwise closed such as Muhurat trading). Regular sessions run from
``SESSION_OPEN`` to ``SESSION_CLOSE``. Outside the package's range (it publishes about a year ahead) every weekday
is a session. ``none`` as the calendar name makes every weekday a session.

Everything here is a plain function of its arguments and the settings, so the beat (live) and a backtest (tick
time) decide the same way.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache

import exchange_calendars
import pandas as pd

ALIASES = {"XNSE": "XBOM", "NSE": "XBOM", "BSE": "XBOM"}
NO_CALENDAR = "NONE"
_SPECIAL_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})=([0-2]\d:[0-5]\d)-([0-2]\d:[0-5]\d)$")


class CalendarError(ValueError):
    """A calendar setting or option that cannot be used; ``field`` names it."""

    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_hhmm(text: str, field: str) -> time:
    try:
        value = time.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(f"{text!r} is not a time HH:MM", field) from None
    return value.replace(second=0, microsecond=0)


def parse_holidays(text: str, field: str = "SIGNAL_EXCHANGE_HOLIDAYS") -> frozenset[date]:
    found = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            found.add(date.fromisoformat(part))
        except ValueError:
            raise CalendarError(f"{part!r} is not a date YYYY-MM-DD", field) from None
    return frozenset(found)


def parse_special_sessions(text: str, field: str = "SIGNAL_SPECIAL_SESSIONS") -> dict[date, tuple[time, time]]:
    """``2024-11-01=18:00-19:00,2025-10-21=13:45-14:45`` -> {date: (open, close)}."""
    found: dict[date, tuple[time, time]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SPECIAL_RE.match(part)
        if not match:
            raise CalendarError(f"{part!r} must be YYYY-MM-DD=HH:MM-HH:MM (open-close, exchange time)", field)
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            raise CalendarError(f"{match.group(1)!r} is not a date", field) from None
        opens, closes = parse_hhmm(match.group(2), field), parse_hhmm(match.group(3), field)
        if not opens < closes:
            raise CalendarError(f"{part!r}: the open must be before the close", field)
        found[day] = (opens, closes)
    return found


def check_calendar_name(name: str, field: str = "SIGNAL_EXCHANGE_CALENDAR") -> str:
    """The package's calendar name for ``name`` (aliases resolved), or CalendarError naming ``field``."""
    upper = name.strip().upper()
    if upper == NO_CALENDAR:
        return NO_CALENDAR
    resolved = ALIASES.get(upper, upper)
    if resolved not in _calendar_names():
        raise CalendarError(f"unknown exchange calendar {name!r}; use XNSE, XBOM, none or an exchange_calendars "
                            "name such as XNYS", field)
    return resolved


@lru_cache(maxsize=1)
def _calendar_names() -> frozenset[str]:
    return frozenset(exchange_calendars.get_calendar_names(include_aliases=True))


@lru_cache(maxsize=8)
def _sessions(name: str) -> tuple[date, date, frozenset[date]]:
    """(first, last, sessions) of a package calendar, as exchange dates."""
    with warnings.catch_warnings():
        # the package still reads tz-aware Series.values, which pandas 3.1 deprecates: its concern, not the reader's
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        calendar = exchange_calendars.get_calendar(name)
    days = frozenset(ts.date() for ts in calendar.sessions)
    return calendar.first_session.date(), calendar.last_session.date(), days


@dataclass(frozen=True)
class TradingCalendar:
    name: str
    tz: str
    regular: tuple[time, time]
    holidays: frozenset[date]
    special: dict[date, tuple[time, time]]

    def is_session(self, day: date) -> bool:
        if day in self.special:
            return True
        if day in self.holidays:
            return False
        if self.name != NO_CALENDAR:
            first, last, days = _sessions(self.name)
            if first <= day <= last:
                return day in days
        return day.weekday() < 5

    def hours(self, day: date) -> tuple[time, time] | None:
        """(open, close) of the session on ``day`` in exchange time, or None on a closed day."""
        if not self.is_session(day):
            return None
        return self.special.get(day, self.regular)

    def close_at(self, day: date) -> datetime | None:
        """The session close on ``day`` as an aware datetime in exchange time."""
        hours = self.hours(day)
        if hours is None:
            return None
        return pd.Timestamp(datetime.combine(day, hours[1])).tz_localize(self.tz).to_pydatetime()

    def close_times(self) -> list[time]:
        """Every close time a session can have (regular and special): the minutes the on_close beat entry wakes at."""
        return sorted({self.regular[1], *(close for _, close in self.special.values())})


def build(name: str, tz: str, session_open: str, session_close: str, holidays: str, special: str
          ) -> TradingCalendar:
    """A calendar from setting values, every bad one refused as CalendarError naming its setting."""
    opens, closes = parse_hhmm(session_open, "SESSION_OPEN"), parse_hhmm(session_close, "SESSION_CLOSE")
    if not opens < closes:
        raise CalendarError(f"{session_close!r} must be after SESSION_OPEN {session_open!r}", "SESSION_CLOSE")
    return TradingCalendar(check_calendar_name(name), tz, (opens, closes), parse_holidays(holidays),
                           parse_special_sessions(special))


CONFIG_OPTIONS = ("exchange", "trading_days_only")


def calendar_option(value: object) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """A config's ``calendar`` section normalised (``{"exchange"?, "trading_days_only"}``) and its problems as
    (field path, message) pairs."""
    if not isinstance(value, dict):
        return {}, [("calendar", "must be an object such as {\"trading_days_only\": false}")]
    problems = [(f"calendar.{key}", f"unknown field; allowed: {', '.join(CONFIG_OPTIONS)}")
                for key in sorted(set(value) - set(CONFIG_OPTIONS))]
    out: dict[str, object] = {"trading_days_only": value.get("trading_days_only", True)}
    if not isinstance(out["trading_days_only"], bool):
        problems.append(("calendar.trading_days_only", "must be true or false"))
    if "exchange" in value:
        exchange = value["exchange"]
        if not isinstance(exchange, str):
            problems.append(("calendar.exchange", "must be a calendar name such as XNSE"))
        else:
            try:
                check_calendar_name(exchange, "calendar.exchange")
                out["exchange"] = exchange.strip().upper()
            except CalendarError as exc:
                problems.append((exc.field, str(exc).split(": ", 1)[1]))
    return out, problems
