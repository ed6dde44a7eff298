"""The one validation of computation configs (SPEC §3.3), used by the model, the admin, the API and the stream.

`validate_config` returns the config with defaults filled in and keys normalised, or raises `ConfigError` whose
`errors` are ``(field path, message)`` pairs such as ``("option_greeks.risk_free_rate", "must be ...")``.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from configs.frequency import FrequencyError, parse_frequency
from signals.instruments import InstrumentKeyError, normalise_key, normalise_pattern, parse_expiry

GREEK_MODELS = ("black_scholes", "black_scholes_merton", "black76")
PRICE_FIELDS = ("ltp", "open", "high", "low", "close")
GREEK_NAMES = ("iv", "delta", "gamma", "theta", "vega", "rho")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_LEVEL_RE = re.compile(r"^(ATM|ITM|OTM|ITM\d{1,2}|OTM\d{1,2}|D\d{1,2})$")

TOP_LEVEL = {
    "name", "version", "instrument_key", "interval", "frequency", "option_greeks", "technical_indicators",
    "internal_functions", "external_functions", "moneyness", "output", "enabled", "description",
}
OUTPUT_DEFAULTS: dict[str, Any] = {
    "redis_list": True, "redis_stream": True, "store_to_database": True, "websocket": True, "cache_ttl_seconds": 300,
}
GREEKS_DEFAULTS: dict[str, Any] = {
    "enabled": False, "model": "black_scholes_merton", "risk_free_rate": 0.065, "dividend_yield": 0.0,
    "price_fields": ["ltp"], "calculate": list(GREEK_NAMES), "use_indvix": True,
}


class ConfigError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))

    def as_dict(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for field, message in self.errors:
            grouped.setdefault(field, []).append(message)
        return grouped


class _Collector:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append((field, message))

    def unknown(self, data: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in sorted(set(data) - allowed):
            self.add(f"{prefix}{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}")

    def boolean(self, data: dict[str, Any], key: str, prefix: str) -> None:
        if key in data and not isinstance(data[key], bool):
            self.add(f"{prefix}{key}", "must be true or false")

    def number(self, data: dict[str, Any], key: str, prefix: str, low: float, high: float) -> None:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(f"{prefix}{key}", "must be a number")
        elif not low <= value <= high:
            self.add(f"{prefix}{key}", f"must be between {low} and {high}")

    def object(self, data: dict[str, Any], key: str) -> dict[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(key, "must be an object")
            return None
        return value

    def items(self, data: dict[str, Any], key: str) -> list[Any]:
        value = data.get(key, [])
        if not isinstance(value, list):
            self.add(key, "must be a list")
            return []
        return value


def _check_identity(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        c.add("name", "is required: 1-100 letters, digits, '.', '_' or '-'")
    version = data.get("version", "1.0")
    if not isinstance(version, str | int | float) or isinstance(version, bool):
        c.add("version", "must be a string such as '1.0'")
    out["version"] = str(version)
    try:
        out["instrument_key"] = normalise_pattern(data.get("instrument_key", ""))
    except InstrumentKeyError as exc:
        c.add("instrument_key", str(exc))
    except (TypeError, AttributeError):
        c.add("instrument_key", "must be a string")
    c.boolean(data, "enabled", "")
    out.setdefault("enabled", True)


def _check_schedule(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    from indicators.timeframes import parse_timeframe

    interval = data.get("interval", "1m")
    try:
        out["interval"] = parse_timeframe(str(interval)).name
    except ValueError as exc:
        c.add("interval", str(exc))
    try:
        out["frequency"] = parse_frequency(data.get("frequency", "every_tick")).text
    except FrequencyError as exc:
        c.add("frequency", str(exc))


def _check_greeks(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    greeks = c.object(data, "option_greeks")
    if greeks is None:
        return
    p = "option_greeks."
    c.unknown(greeks, set(GREEKS_DEFAULTS), p)
    merged = {**GREEKS_DEFAULTS, **greeks}
    for key in ("enabled", "use_indvix"):
        c.boolean(merged, key, p)
    if merged["model"] not in GREEK_MODELS:
        c.add(p + "model", f"must be one of {', '.join(GREEK_MODELS)}")
    c.number(merged, "risk_free_rate", p, -0.05, 1.0)
    c.number(merged, "dividend_yield", p, 0.0, 1.0)
    for key, allowed in (("price_fields", PRICE_FIELDS), ("calculate", GREEK_NAMES)):
        values = merged[key]
        if not isinstance(values, list) or not values:
            c.add(p + key, f"must be a non-empty list drawn from {', '.join(allowed)}")
            continue
        for i, value in enumerate(values):
            if value not in allowed:
                c.add(f"{p}{key}[{i}]", f"{value!r} is not one of {', '.join(allowed)}")
    out["option_greeks"] = merged


def _check_indicators(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    from indicators.engine import validate_indicators

    specs = c.items(data, "technical_indicators")
    if specs:
        for field, message in validate_indicators(specs):
            c.add(field, message)
    out["technical_indicators"] = specs


def _check_internal(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    from configs import functions

    entries = c.items(data, "internal_functions")
    for i, entry in enumerate(entries):
        p = f"internal_functions[{i}]."
        if not isinstance(entry, dict):
            c.add(f"internal_functions[{i}]", "must be an object with name and parameters")
            continue
        c.unknown(entry, {"name", "parameters", "output_key"}, p)
        name = entry.get("name")
        if name not in functions.names():
            c.add(p + "name", f"unknown internal function {name!r}; known: {', '.join(sorted(functions.names()))}")
            continue
        params = entry.setdefault("parameters", {})
        if not isinstance(params, dict):
            c.add(p + "parameters", "must be an object")
            continue
        for message in functions.validate_params(name, params):
            c.add(p + "parameters", message)
    out["internal_functions"] = entries


def _check_external(
    data: dict[str, Any], out: dict[str, Any], c: _Collector, function_exists: Callable[[str], bool] | None
) -> None:
    entries = c.items(data, "external_functions")
    for i, entry in enumerate(entries):
        p = f"external_functions[{i}]."
        if not isinstance(entry, dict):
            c.add(f"external_functions[{i}]", "must be an object")
            continue
        c.unknown(entry, {"name", "function_name", "parameters", "timeout", "memory_limit_mb", "output_key"}, p)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            c.add(p + "name", "is required")
        elif function_exists is not None and not function_exists(name):
            c.add(p + "name", f"no uploaded external function named {name!r}")
        entry.setdefault("parameters", {})
        if not isinstance(entry["parameters"], dict):
            c.add(p + "parameters", "must be an object")
        entry.setdefault("timeout", 2)
        entry.setdefault("memory_limit_mb", 128)
        c.number(entry, "timeout", p, 0.05, 60)
        c.number(entry, "memory_limit_mb", p, 16, 4096)
    out["external_functions"] = entries


def _check_moneyness(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    money = c.object(data, "moneyness")
    if money is None:
        return
    p = "moneyness."
    c.unknown(money, {"underlying", "expiry", "levels", "strike_step"}, p)
    try:
        money["underlying"] = normalise_key(str(money.get("underlying", "")))
    except InstrumentKeyError as exc:
        c.add(p + "underlying", str(exc))
    expiry = money.get("expiry")
    if expiry is not None:
        try:
            money["expiry"] = parse_expiry(str(expiry)).isoformat() if not isinstance(expiry, date) else expiry
        except InstrumentKeyError as exc:
            c.add(p + "expiry", str(exc))
    levels = money.get("levels", ["ATM"])
    if not isinstance(levels, list) or not levels:
        c.add(p + "levels", "must be a non-empty list such as ['ATM', 'OTM1', 'ITM1', 'D25']")
    else:
        for i, level in enumerate(levels):
            if not isinstance(level, str) or not _LEVEL_RE.match(level.upper()):
                c.add(f"{p}levels[{i}]", f"{level!r} is not ATM, ITM, OTM, ITMn, OTMn or Dnn")
        money["levels"] = [str(level).upper() for level in levels]
    out["moneyness"] = money


def _check_output(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    given = c.object(data, "output") or {}
    c.unknown(given, set(OUTPUT_DEFAULTS), "output.")
    merged = {**OUTPUT_DEFAULTS, **given}
    for key in ("redis_list", "redis_stream", "store_to_database", "websocket"):
        c.boolean(merged, key, "output.")
    c.number(merged, "cache_ttl_seconds", "output.", 1, 86_400 * 7)
    out["output"] = merged


def validate_config(data: Any, *, function_exists: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Validate a config document; return it normalised with defaults, or raise `ConfigError`.

    ``function_exists`` answers whether an external function name has been uploaded (the database's view); without
    it external function names are not checked.
    """
    if not isinstance(data, dict):
        raise ConfigError([("config", "must be a JSON object")])
    data = copy.deepcopy(data)
    c = _Collector()
    c.unknown(data, TOP_LEVEL, "")
    out: dict[str, Any] = {key: value for key, value in data.items() if key in TOP_LEVEL}
    _check_identity(data, out, c)
    _check_schedule(data, out, c)
    _check_greeks(data, out, c)
    _check_indicators(data, out, c)
    _check_internal(data, out, c)
    _check_external(data, out, c, function_exists)
    _check_moneyness(data, out, c)
    _check_output(data, out, c)
    computations = (
        out.get("option_greeks", {}).get("enabled") or out["technical_indicators"] or out["internal_functions"]
        or out["external_functions"] or out.get("moneyness")
    )
    if not c.errors and not computations:
        c.add("config", "enables no computation: add option_greeks, technical_indicators, functions or moneyness")
    if c.errors:
        raise ConfigError(c.errors)
    return out
