"""Instrument keys and tick messages: every alias accepted, every kind of bad input refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from feed.instruments import (
    InstrumentKeyError,
    key_matches,
    normalise_key,
    normalise_pattern,
    parse_instrument_key,
)
from feed.ticks import TickError, parse_tick

OPTION = "NSE@NIFTY@options@2025-06-26@call@24000"


@pytest.mark.parametrize("raw, expected", [
    ("NSE@NIFTY@index", "NSE@NIFTY@index"),
    ("nse@nifty@INDEX", "NSE@NIFTY@index"),
    ("NSE@RELIANCE@equities", "NSE@RELIANCE@equities"),
    ("NSE@RELIANCE@equity_spot", "NSE@RELIANCE@equities"),
    ("NSE@NIFTY@futures@2025-06-26", "NSE@NIFTY@futures@2025-06-26"),
    ("NSE@NIFTY@equity_futures@26-JUN-2025", "NSE@NIFTY@futures@2025-06-26"),
    ("NSE@NIFTY@options@2025-06-26@call@24000", OPTION),
    ("NSE@NIFTY@equity_options@26-jun-2025@CE@24000.0", OPTION),
    ("NSE@NIFTY@options@2025-06-26@PE@24000.50", "NSE@NIFTY@options@2025-06-26@put@24000.5"),
    ("NSE@M&M@equities", "NSE@M&M@equities"),
    ("NSE@INDVIX@index", "NSE@INDVIX@index"),
])
def test_keys_are_normalised(raw: str, expected: str) -> None:
    assert normalise_key(raw) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("", "empty"),
    ("NSE@NIFTY", "EXCHANGE@SYMBOL@PRODUCT"),
    ("NSE@NIFTY@bonds", "product"),
    ("NSE@NIFTY@index@2025-06-26", "takes no expiry"),
    ("NSE@NIFTY@futures", "futures key"),
    ("NSE@NIFTY@futures@2025-13-45", "expiry"),
    ("NSE@NIFTY@options@2025-06-26@call", "options key"),
    ("NSE@NIFTY@options@2025-06-26@XX@24000", "right"),
    ("NSE@NIFTY@options@2025-06-26@call@-5", "positive"),
    ("NSE@NIFTY@options@2025-06-26@call@abc", "not a number"),
    ("N$E@NIFTY@index", "exchange"),
    ("NSE@NI FTY@index", "symbol"),
])
def test_bad_keys_are_refused_naming_the_part(raw: str, fragment: str) -> None:
    with pytest.raises(InstrumentKeyError, match=fragment):
        parse_instrument_key(raw)


def test_underlying_of_index_and_equity_options() -> None:
    assert parse_instrument_key(OPTION).underlying_key() == "NSE@NIFTY@index"
    assert parse_instrument_key("NSE@RELIANCE@options@2025-06-26@put@1400").underlying_key() == \
        "NSE@RELIANCE@equities"
    assert parse_instrument_key(OPTION).future_key() == "NSE@NIFTY@futures@2025-06-26"


@pytest.mark.parametrize("pattern, normal", [
    ("NSE@NIFTY@*", "NSE@NIFTY@*"),
    ("nse@nifty@equity_options@*", "NSE@NIFTY@options@*"),
    ("NSE@NIFTY@options@26-JUN-2025@*", "NSE@NIFTY@options@2025-06-26@*"),
    ("NSE@NIFTY@options@2025-06-26@CE@*", "NSE@NIFTY@options@2025-06-26@call@*"),
    ("NSE@*", "NSE@*"),
])
def test_patterns_normalise(pattern: str, normal: str) -> None:
    assert normalise_pattern(pattern) == normal


@pytest.mark.parametrize("pattern", ["NSE@NIFTY*", "NSE@*@index", "NSE@NIFTY@index@*", "NSE@NIFTY@options@a@*"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InstrumentKeyError):
        normalise_pattern(pattern)


def test_pattern_matching_is_by_whole_segments() -> None:
    assert key_matches("NSE@NIFTY@*", OPTION)
    assert key_matches("NSE@NIFTY@options@2025-06-26@call@*", OPTION)
    assert not key_matches("NSE@NIFTY@options@2025-06-26@put@*", OPTION)
    assert not key_matches("NSE@NIFTY@*", "NSE@NIFTYNXT50@index")
    assert key_matches(OPTION, OPTION) and not key_matches(OPTION, OPTION + "5")


BASE = {"instrument_key": OPTION, "ltp": 101.5, "ltt": "2025-06-20T10:00:00+05:30"}


@pytest.mark.parametrize("alias, value, field, expected", [
    ("last", "99.5", "ltp", 99.5),
    ("timestamp", "2025-06-20T04:30:00Z", "ts", datetime(2025, 6, 20, 4, 30, tzinfo=UTC).timestamp()),
    ("ts_exch", 1750393800, "ts", 1750393800.0),
    ("ts_exch", "1750393800123", "ts", 1750393800.123),
    ("ttq", "1500", "volume", 1500),
    ("volume", 7, "volume", 7),
    ("OI", "123456", "oi", 123456),
    ("oi", 5, "oi", 5),
    ("bPrice", "101.1", "bid", 101.1),
    ("sPrice", "101.9", "ask", 101.9),
    ("status", "P", "state", "P"),
    ("state", "u", "state", "U"),
    ("ltq", "75", "ltq", 75),
])
def test_field_aliases(alias: str, value: object, field: str, expected: object) -> None:
    body = {k: v for k, v in BASE.items() if not (field == "ltp" and k == "ltp")}
    if field == "ts":
        body.pop("ltt")
    body[alias] = value
    parsed = parse_tick({"data": json.dumps(body)})
    assert parsed[field] == pytest.approx(expected) if isinstance(expected, float) else parsed[field] == expected


def test_flat_fields_and_json_data_give_the_same_tick() -> None:
    flat = {k: str(v) for k, v in BASE.items()}
    assert parse_tick(flat) == parse_tick({"data": json.dumps(BASE)})


def test_instrument_comes_from_the_message_and_is_normalised() -> None:
    parsed = parse_tick({"data": json.dumps({**BASE, "instrument_key": "nse@nifty@equity_options@26-JUN-2025@CE@24000"})})
    assert parsed["instrument_key"] == OPTION and parsed["symbol_key"] == "NSE@NIFTY"
    assert parsed["timestamp"] == "2025-06-20T04:30:00+00:00"
    assert parsed["state"] == "U" and parsed["open"] is None


@pytest.mark.parametrize("fields, fragment", [
    ({"data": "{not json"}, "not valid JSON"),
    ({"data": "[1, 2]"}, "JSON object"),
    ({"data": f'{{"instrument_key": "{OPTION}", "ltp": NaN, "ltt": 1750393800}}'}, "not valid JSON"),
    ({"ltp": "1", "ltt": "2025-06-20T10:00:00+05:30"}, "instrument_key is missing"),
    ({"instrument_key": "NSE@NIFTY", "ltp": "1", "ltt": "1750393800"}, "instrument_key"),
    ({"instrument_key": OPTION, "ltt": "1750393800"}, "price"),
    ({"instrument_key": OPTION, "ltp": "1"}, "time"),
    ({"instrument_key": OPTION, "ltp": "abc", "ltt": "1750393800"}, "ltp must be a number"),
    ({"instrument_key": OPTION, "ltp": "nan", "ltt": "1750393800"}, "finite"),
    ({"instrument_key": OPTION, "ltp": "inf", "ltt": "1750393800"}, "finite"),
    ({"instrument_key": OPTION, "ltp": "-1", "ltt": "1750393800"}, "negative"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "yesterday"}, "ISO-8601"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "2025-06-20T10:00:00"}, "offset"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "-5"}, "epoch"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "1750393800", "state": "X"}, "state"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "1750393800", "high": "nan"}, "high"),
    ({"instrument_key": OPTION, "ltp": "1", "ltt": "1750393800", "volume": "-3"}, "volume"),
])
def test_malformed_ticks_are_refused_with_the_reason(fields: dict, fragment: str) -> None:
    with pytest.raises(TickError, match=fragment):
        parse_tick(fields)
