"""The one config validation checks types before it uses them (issue 17): every field of a full config, replaced
by a value of every JSON type, is either accepted or refused with `ConfigError` naming a field, never another
exception; documents too deep, too large, with NUL, lone surrogates or non-finite numbers are refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from configs.validation import MAX_KEPT_ERRORS, ConfigError, validate_config
from webapi.limits import MAX_BODY_BYTES, MAX_DEPTH, LimitError, ascii_int, check_document, parse_json

FULL: dict[str, Any] = {
    "name": "full", "version": "1.0", "instrument_key": "NSE@NIFTY@options@*", "interval": "5m",
    "frequency": "every_tick", "enabled": True, "description": "all sections",
    "option_greeks": {"enabled": True, "model": "black_scholes", "risk_free_rate": 0.065, "dividend_yield": 0.0,
                      "price_fields": ["ltp"], "calculate": ["iv", "delta"], "use_indvix": True},
    "technical_indicators": [{"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"}],
    "internal_functions": [{"name": "zscore", "parameters": {"length": 20}, "output_key": "z"}],
    "external_functions": [{"name": "my_fn", "function_name": "run", "parameters": {"a": 1}, "timeout": 2,
                            "memory_limit_mb": 128, "output_key": "ext"}],
    "moneyness": {"underlying": "NSE@NIFTY@index", "expiry": "2025-06-26", "levels": ["ATM", "OTM1"],
                  "strike_step": 50},
    "output": {"redis_list": True, "redis_stream": True, "store_to_database": True, "websocket": True,
               "cache_ttl_seconds": 300},
}
ODD_VALUES: list[Any] = [None, True, 0, -1, 1.5, 1e308, "", "x", "\u00b2", [], [None], [[]], [{}], {}, {"a": None},
                         {"": []}, ["ATM", 1], [1, 2], "NSE@NIFTY@index"]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*path, i))


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(FULL)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize("path", list(_paths(FULL)), ids=lambda p: ".".join(map(str, p)))
def test_every_field_of_every_type_is_accepted_or_refused_by_name(path: tuple[Any, ...]) -> None:
    for value in ODD_VALUES:
        document = _replaced(path, value)
        try:
            validate_config(document, function_exists=lambda name: True)
        except ConfigError as exc:
            assert exc.errors and all(isinstance(field, str) and field for field, _ in exc.errors), exc
        json.dumps(document)  # the input is left as it was: still plain JSON


@pytest.mark.parametrize("section", ["option_greeks", "moneyness", "output"])
def test_null_sections_are_refused_not_stored(section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(_replaced((section,), None), function_exists=lambda name: True)
    assert caught.value.errors[0] == (section, "must be an object")


def test_a_list_instrument_key_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(_replaced(("instrument_key",), ["NSE@NIFTY@index"]), function_exists=lambda name: True)
    assert ("instrument_key", "must be a string") in caught.value.errors


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 481, 5000])
def test_deep_values_are_refused_without_recursion(depth: int) -> None:
    document = _replaced(("technical_indicators", 0, "parameters", "length"), _nested(depth))
    with pytest.raises(ConfigError) as caught:
        validate_config(document)
    field, message = caught.value.errors[0]
    assert field.startswith("technical_indicators[0].parameters.length") and "deeper than" in message


@pytest.mark.parametrize(("where", "value", "message"), [
    (("name",), "a\x00b", "NUL"), (("description",), "\x00", "NUL"), (("version",), "1\x00", "NUL"),
    (("description",), "\ud800", "surrogate"), (("moneyness", "levels", 0), "AT\x00M", "NUL"),
    (("option_greeks", "risk_free_rate"), float("nan"), "finite"),
    (("option_greeks", "risk_free_rate"), float("inf"), "finite"),
])
def test_unstorable_values_are_refused_by_path(where: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(_replaced(where, value))
    field, text = caught.value.errors[0]
    assert field == ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in where).replace(".[", "[")
    assert message in text


def test_a_nul_in_a_key_is_refused() -> None:
    document = copy.deepcopy(FULL)
    document["technical_indicators"][0]["parameters"]["len\x00gth"] = 3
    with pytest.raises(ConfigError, match="NUL"):
        validate_config(document)


def test_a_huge_document_is_refused_with_a_bounded_error() -> None:
    document = copy.deepcopy(FULL)
    document.update({f"unknown_{i}": i for i in range(150_000)})
    with pytest.raises(ConfigError) as caught:
        validate_config(document)
    assert caught.value.errors == [("config", f"larger than {MAX_BODY_BYTES} bytes")]
    document = copy.deepcopy(FULL)
    document.update({f"unknown_{i}": i for i in range(5_000)})  # within the size limit: many errors, few kept
    with pytest.raises(ConfigError) as caught:
        validate_config(document)
    assert len(caught.value.errors) == MAX_KEPT_ERRORS and caught.value.total == 5_000
    assert len(str(caught.value)) < 5_000


def test_parse_json_bounds_depth_size_and_constants() -> None:
    with pytest.raises(LimitError) as caught:
        parse_json("[" * 100_000 + "]" * 100_000)
    assert caught.value.code in ("too_deep", "too_large")
    with pytest.raises(LimitError) as caught:
        parse_json(b"[" * 2000 + b"]" * 2000)
    assert caught.value.code == "too_deep"
    with pytest.raises(LimitError) as caught:
        parse_json(b'{"a": NaN}')
    assert caught.value.code == "bad_json"
    with pytest.raises(LimitError) as caught:
        parse_json(b'"\\u0000"')
    assert "NUL" in str(caught.value)
    assert parse_json(b'{"a": [1, {"b": "c"}]}') == {"a": [1, {"b": "c"}]}
    check_document(_nested(MAX_DEPTH - 1))


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "1.5", "", "-", "1e3", "99999999999999999999", " ", "0x10"])
def test_ids_must_be_ascii_integers(text: str) -> None:
    with pytest.raises(LimitError):
        ascii_int(text)


def test_ascii_integers_are_read() -> None:
    assert ascii_int("42") == 42 and ascii_int(" 7 ") == 7


@pytest.mark.parametrize("document", [[1] * 120_000, {f"k{i}": "v" * 10 for i in range(12_000)}, ["x" * 250_000]])
def test_the_size_limit_counts_about_what_the_json_takes(document: Any) -> None:
    encoded = json.dumps(document, separators=(",", ":"))
    assert len(encoded) < MAX_BODY_BYTES
    check_document(document)
    assert parse_json(encoded) == document
    with pytest.raises(LimitError, match="larger than"):
        check_document([document, document])
