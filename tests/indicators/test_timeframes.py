"""Timeframe parsing (docs/REFERENCE.md §3.3 ``interval``)."""

from __future__ import annotations

import dataclasses
from datetime import time

import pytest

from indicators.timeframes import (
    EXCHANGE_TZ,
    SESSION_OPEN,
    STANDARD_TIMEFRAMES,
    Timeframe,
    parse_timeframe,
)

ACCEPTED = [
    # value, canonical name, unit, minutes
    ("1m", "1m", "minute", 1),
    ("2m", "2m", "minute", 2),
    ("3m", "3m", "minute", 3),
    ("5m", "5m", "minute", 5),
    ("10m", "10m", "minute", 10),
    ("15m", "15m", "minute", 15),
    ("30m", "30m", "minute", 30),
    ("1h", "1h", "minute", 60),
    ("2h", "2h", "minute", 120),
    ("4h", "4h", "minute", 240),
    ("1d", "1d", "day", None),
    ("1w", "1w", "week", None),
    ("1M", "1M", "month", None),
    ("7m", "7m", "minute", 7),
    ("3h", "3h", "minute", 180),
    ("custom_13", "13m", "minute", 13),
    ("custom_60", "1h", "minute", 60),
    ("5minute", "5m", "minute", 5),
    ("minute", "1m", "minute", 1),
    ("15minute", "15m", "minute", 15),
    ("1hour", "1h", "minute", 60),
    ("2hour", "2h", "minute", 120),
    ("1day", "1d", "day", None),
    ("60m", "1h", "minute", 60),
    ("90m", "90m", "minute", 90),
    ("1440m", "24h", "minute", 1440),
    ("24h", "24h", "minute", 1440),
    ("custom_1440", "24h", "minute", 1440),
    (" 5m ", "5m", "minute", 5),
]


@pytest.mark.parametrize(("value", "name", "unit", "minutes"), ACCEPTED)
def test_accepted_forms(value: str, name: str, unit: str, minutes: int | None) -> None:
    tf = parse_timeframe(value)
    assert tf.name == name
    assert str(tf) == name
    assert tf.unit == unit
    assert tf.minutes == minutes
    assert tf.is_intraday is (unit == "minute")
    assert parse_timeframe(tf.name) == tf  # canonical names round-trip


def test_month_and_minute_are_case_sensitive() -> None:
    assert parse_timeframe("1M").unit == "month"
    assert parse_timeframe("1m").unit == "minute"
    assert parse_timeframe("1m") != parse_timeframe("1M")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0m", "0 minutes, must be 1-1440"),
        ("1441m", "1441 minutes, must be 1-1440"),
        ("25h", "1500 minutes, must be 1-1440"),
        ("custom_0", "0 minutes"),
        ("custom_1441", "1441 minutes"),
        ("0minute", "0 minutes"),
        ("abc", "invalid timeframe 'abc'"),
        ("5x", "invalid timeframe '5x'"),
        ("", "invalid timeframe ''"),
        ("2d", "invalid timeframe '2d'"),
        ("2w", "invalid timeframe '2w'"),
        ("5M", "invalid timeframe '5M'"),
        ("1H", "invalid timeframe '1H'"),
        ("1.5h", "invalid timeframe '1.5h'"),
        ("-5m", "invalid timeframe '-5m'"),
        ("custom_", "invalid timeframe 'custom_'"),
        ("m", "invalid timeframe 'm'"),
    ],
)
def test_rejected_forms(value: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timeframe(value)
    message = str(info.value)
    assert fragment in message
    # every message lists the accepted forms
    for form in (
        "1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d 1w 1M",
        "custom_13",
        "5minute",
        "1hour",
        "1day",
        "1-1440",
    ):
        assert form in message


def test_non_string_rejected() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_timeframe(5)  # type: ignore[arg-type]


def test_timeframe_passthrough_and_equality() -> None:
    tf = parse_timeframe("1h")
    assert parse_timeframe(tf) is tf
    assert parse_timeframe("60m") == parse_timeframe("1hour") == parse_timeframe("custom_60") == tf
    assert hash(parse_timeframe("60m")) == hash(tf)


def test_frozen() -> None:
    tf = parse_timeframe("5m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tf.count = 7  # type: ignore[misc]


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError):
        Timeframe("minute", 0)
    with pytest.raises(ValueError):
        Timeframe("day", 2)
    with pytest.raises(ValueError):
        Timeframe("year", 1)  # type: ignore[arg-type]


def test_helpers() -> None:
    five = parse_timeframe("5m")
    assert five.sql_interval == "5 minutes"
    assert five.pandas_freq == "5min"
    assert five.duration is not None and five.duration.total_seconds() == 300
    assert five.divides_day and five.is_standard
    seven = parse_timeframe("7m")
    assert not seven.divides_day and not seven.is_standard
    day, week, month = (parse_timeframe(x) for x in ("1d", "1w", "1M"))
    assert (day.sql_interval, week.sql_interval, month.sql_interval) == ("1 day", "1 week", "1 month")
    assert (day.pandas_freq, week.pandas_freq, month.pandas_freq) == ("D", "W-MON", "MS")
    assert day.duration is None and month.minutes is None and not week.is_intraday


def test_constants() -> None:
    assert [tf.name for tf in STANDARD_TIMEFRAMES] == [
        "1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d", "1w", "1M",
    ]  # fmt: skip
    assert SESSION_OPEN == time(9, 15)
    assert EXCHANGE_TZ == "Asia/Kolkata"
