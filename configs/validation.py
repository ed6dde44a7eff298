"""The one validation of computation configs (docs/REFERENCE.md §3.3), used by the model, the admin, the API and the stream.

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

from configs.calendar import calendar_option
from configs.frequency import FrequencyError, parse_frequency
from feed.instruments import InstrumentKeyError, normalise_key, normalise_pattern, parse_expiry
from feed.ticks import QUOTE_FIELDS
from functions import internal as internal_functions
from functions.sandbox import check_function_name
from functions.sandbox.limits import (
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIMEOUT_S,
    MAX_MEMORY_LIMIT_MB,
    MAX_TIMEOUT_S,
    MIN_MEMORY_LIMIT_MB,
    MIN_TIMEOUT_S,
)
from greeks import DEFAULT_MODEL, GREEK_NAMES, MODELS
from greeks.moneyness import parse_level
from indicators.specs import validate_indicators
from indicators.timeframes import parse_timeframe
from webapi.limits import LimitError, check_date, check_document

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_RULE = "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
_OUTPUT_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_PARAM_IN_MESSAGE = re.compile(r"^parameter '([^']{1,64})'")
MAX_INDICATORS = 100
MAX_FUNCTIONS = 50
MAX_KEPT_ERRORS = 100

TOP_LEVEL = {
    "name", "version", "instrument_key", "interval", "frequency", "option_greeks", "technical_indicators",
    "internal_functions", "external_functions", "moneyness", "output", "enabled", "description", "calendar",
}
OUTPUT_DEFAULTS: dict[str, Any] = {
    "redis_list": True, "redis_stream": True, "store_to_database": True, "websocket": True, "cache_ttl_seconds": 300,
}
GREEKS_DEFAULTS: dict[str, Any] = {
    "enabled": True, "model": DEFAULT_MODEL, "risk_free_rate": 0.065, "dividend_yield": 0.0,
    "price_fields": ["ltp"], "calculate": list(GREEK_NAMES), "use_indvix": True,
}


class ConfigError(ValueError):
    """``errors`` lists at most MAX_KEPT_ERRORS problems; ``total`` counts them all."""

    def __init__(self, errors: list[tuple[str, str]], total: int | None = None):
        self.errors = errors[:MAX_KEPT_ERRORS]
        self.total = max(total or 0, len(errors))
        more = f" (and {self.total - len(self.errors)} more)" if self.total > len(self.errors) else ""
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors[:10]) + more)

    def as_dict(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for field, message in self.errors:
            grouped.setdefault(field, []).append(message)
        return grouped


class _Collector:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.total = 0

    def add(self, field: str, message: str) -> None:
        # a document of thousands of bad keys must not make an error of megabytes
        self.total += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
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

    def integer(self, data: dict[str, Any], key: str, prefix: str, low: int, high: int) -> None:
        value = data.get(key)
        if isinstance(value, float) and value.is_integer():
            data[key] = value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(f"{prefix}{key}", "must be an integer")
        elif not low <= value <= high:
            self.add(f"{prefix}{key}", f"must be between {low} and {high}")

    def object(self, data: dict[str, Any], key: str) -> dict[str, Any] | None:
        """The object under ``key``; None when absent. null is refused like any other non-object."""
        if key not in data:
            return None
        value = data[key]
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
    if name is None or name == "":
        c.add("name", f"is required: {NAME_RULE}")
    elif not isinstance(name, str) or not NAME_RE.match(name):
        c.add("name", f"{name!r:.60} is not a valid name: {NAME_RULE}")
    version = data.get("version", "1.0")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or not 0 < len(str(version)) <= 32:
        c.add("version", "must be a string of at most 32 characters such as '1.0'")
    out["version"] = str(version)
    key = data.get("instrument_key")
    if key is None or key == "":
        c.add("instrument_key", "is required: an instrument key such as NSE@NIFTY@index or a pattern ending in "
                                "'@*' such as NSE@NIFTY@options@2025-06-26@*")
    elif not isinstance(key, str):
        c.add("instrument_key", "must be a string")
    else:
        try:
            out["instrument_key"] = normalise_pattern(key)
        except InstrumentKeyError as exc:
            c.add("instrument_key", str(exc))
    c.boolean(data, "enabled", "")
    out.setdefault("enabled", True)
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        c.add("description", "must be a string of at most 2000 characters")


def _check_schedule(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    interval = data.get("interval", "1m")
    if not isinstance(interval, str):
        c.add("interval", "must be a timeframe such as 1m, 5m, 1h, 1d")
    else:
        try:
            out["interval"] = parse_timeframe(interval).name
        except ValueError as exc:
            c.add("interval", str(exc))
    frequency = data.get("frequency", "every_tick")
    if not isinstance(frequency, str):
        c.add("frequency", "must be a string such as every_tick, 5m or daily@09:15")
        return
    try:
        out["frequency"] = parse_frequency(frequency).text
    except FrequencyError as exc:
        c.add("frequency", str(exc))
    if "calendar" in data:
        out["calendar"], problems = calendar_option(data["calendar"])
        for field, message in problems:
            c.add(field, message)


def _check_greeks(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    greeks = c.object(data, "option_greeks")
    if greeks is None:
        return
    p = "option_greeks."
    c.unknown(greeks, set(GREEKS_DEFAULTS), p)
    merged = {**GREEKS_DEFAULTS, **greeks}
    for key in ("enabled", "use_indvix"):
        c.boolean(merged, key, p)
    if not isinstance(merged["model"], str) or merged["model"] not in MODELS:
        c.add(p + "model", f"must be one of {', '.join(MODELS)}")
    c.number(merged, "risk_free_rate", p, -0.05, 1.0)
    c.number(merged, "dividend_yield", p, 0.0, 1.0)
    for key, allowed in (("price_fields", QUOTE_FIELDS), ("calculate", GREEK_NAMES)):
        values = merged[key]
        if not isinstance(values, list) or not values:
            c.add(p + key, f"must be a non-empty list drawn from {', '.join(allowed)}")
            continue
        for i, value in enumerate(values):
            if not isinstance(value, str) or value not in allowed:
                c.add(f"{p}{key}[{i}]", f"{value!r} is not one of {', '.join(allowed)}")
        if isinstance(values, list) and len(set(map(repr, values))) != len(values):
            c.add(p + key, "must not repeat a value")
    product = _pattern_product(out.get("instrument_key"))
    if merged["enabled"] is True and product is not None and product != "options":
        c.add(p + "enabled", f"option Greeks need option instruments, but instrument_key {out['instrument_key']!r} "
                             f"selects only {product}; use an options key or pattern (e.g. NSE@NIFTY@options@*)")
    out["option_greeks"] = merged


def _pattern_product(pattern: str | None) -> str | None:
    """The product a normalised key or pattern is limited to, or None when it can match several products."""
    if not isinstance(pattern, str) or not pattern or pattern == "*":
        return None
    parts = pattern.split("@")
    if parts[-1] == "*":
        parts = parts[:-1]
    return parts[2] if len(parts) >= 3 else None


def _check_indicators(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    specs = c.items(data, "technical_indicators")
    if len(specs) > MAX_INDICATORS:
        c.add("technical_indicators", f"at most {MAX_INDICATORS} indicators per config")
        specs = []
    if specs:
        for field, message in validate_indicators(specs):
            c.add(field, message)
    out["technical_indicators"] = specs


def _check_internal(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    entries = c.items(data, "internal_functions")
    if len(entries) > MAX_FUNCTIONS:
        c.add("internal_functions", f"at most {MAX_FUNCTIONS} internal functions per config")
        entries = []
    for i, entry in enumerate(entries):
        p = f"internal_functions[{i}]."
        if not isinstance(entry, dict):
            c.add(f"internal_functions[{i}]", "must be an object with name and parameters")
            continue
        c.unknown(entry, {"name", "parameters", "output_key"}, p)
        _check_output_key(entry, p, c)
        name = entry.get("name")
        if not isinstance(name, str) or name not in internal_functions.names():
            c.add(p + "name", f"unknown internal function {name!r:.60}; known: {', '.join(internal_functions.names())}")
            continue
        params = entry.setdefault("parameters", {})
        if not isinstance(params, dict):
            c.add(p + "parameters", "must be an object")
            continue
        for message in internal_functions.validate_params(name, params):
            named = _PARAM_IN_MESSAGE.match(message)
            c.add(p + "parameters" + (f".{named.group(1)}" if named else ""), message)
    out["internal_functions"] = entries


def _check_external(
    data: dict[str, Any], out: dict[str, Any], c: _Collector, function_exists: Callable[[str], bool] | None
) -> None:
    entries = c.items(data, "external_functions")
    if len(entries) > MAX_FUNCTIONS:
        c.add("external_functions", f"at most {MAX_FUNCTIONS} external functions per config")
        entries = []
    for i, entry in enumerate(entries):
        p = f"external_functions[{i}]."
        if not isinstance(entry, dict):
            c.add(f"external_functions[{i}]", "must be an object with name, parameters, timeout, memory_limit_mb")
            continue
        c.unknown(entry, {"name", "function_name", "parameters", "timeout", "memory_limit_mb", "output_key"}, p)
        _check_output_key(entry, p, c)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            c.add(p + "name", "is required: the name of an uploaded external function")
        elif not NAME_RE.match(name):
            c.add(p + "name", f"{name!r:.60} is not a valid function name: {NAME_RULE}")
        elif function_exists is not None and not function_exists(name):
            c.add(p + "name", f"no uploaded external function named {name!r}; upload it first (functions/ API or "
                              "admin)")
        if "function_name" in entry:
            problem = check_function_name(entry["function_name"])
            if problem:
                c.add(p + "function_name", problem)
        entry.setdefault("parameters", {})
        if not isinstance(entry["parameters"], dict):
            c.add(p + "parameters", "must be an object")
        entry.setdefault("timeout", DEFAULT_TIMEOUT_S)
        entry.setdefault("memory_limit_mb", DEFAULT_MEMORY_LIMIT_MB)
        c.number(entry, "timeout", p, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        c.integer(entry, "memory_limit_mb", p, MIN_MEMORY_LIMIT_MB, MAX_MEMORY_LIMIT_MB)
    out["external_functions"] = entries


def _check_output_key(entry: dict[str, Any], prefix: str, c: _Collector) -> None:
    if "output_key" in entry and (
        not isinstance(entry["output_key"], str) or not _OUTPUT_KEY_RE.match(entry["output_key"])
    ):
        c.add(prefix + "output_key", "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or '_'")


def _check_function_names(out: dict[str, Any], c: _Collector) -> None:
    """Function results are named by output_key or name; two entries may not share a result name."""
    seen: dict[str, str] = {}
    for section in ("internal_functions", "external_functions"):
        for i, entry in enumerate(out.get(section) or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            result_name = entry.get("output_key") or entry["name"]
            if not isinstance(result_name, str):
                continue
            where = f"{section}[{i}]"
            if result_name in seen:
                field = f"{where}.output_key" if "output_key" in entry else f"{where}.name"
                c.add(field, f"result name {result_name!r} is already used by {seen[result_name]}; set a distinct "
                             "output_key")
            else:
                seen[result_name] = where


def _check_moneyness(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    money = c.object(data, "moneyness")
    if money is None:
        return
    p = "moneyness."
    c.unknown(money, {"underlying", "expiry", "levels", "strike_step"}, p)
    underlying = money.get("underlying")
    if not isinstance(underlying, str) or not underlying:
        c.add(p + "underlying", "is required: the spot or future key, e.g. NSE@NIFTY@index")
    else:
        try:
            money["underlying"] = normalise_key(underlying)
        except InstrumentKeyError as exc:
            c.add(p + "underlying", str(exc))
        else:
            if money["underlying"].split("@")[2] == "options":
                c.add(p + "underlying", "must be a spot, equity or futures key, not an option")
    if "strike_step" in money:
        c.number(money, "strike_step", p, 1e-6, 1e9)
    expiry = money.get("expiry")
    if expiry is not None:
        try:
            parsed = expiry if isinstance(expiry, date) else parse_expiry(str(expiry))
            money["expiry"] = check_date(parsed).isoformat()
        except (InstrumentKeyError, LimitError) as exc:
            c.add(p + "expiry", str(exc))
    levels = money.get("levels", ["ATM"])
    if not isinstance(levels, list) or not levels:
        c.add(p + "levels", "must be a non-empty list such as ['ATM', 'OTM1', 'ITM1', 'D25']")
    else:
        for i, level in enumerate(levels):
            try:
                parse_level(level)  # the rule the moneyness views apply
            except ValueError as exc:
                c.add(f"{p}levels[{i}]", str(exc))
        money["levels"] = [str(level).strip().upper() for level in levels]
    out["moneyness"] = money


def _check_output(data: dict[str, Any], out: dict[str, Any], c: _Collector) -> None:
    given = c.object(data, "output") or {}
    c.unknown(given, set(OUTPUT_DEFAULTS), "output.")
    merged = {**OUTPUT_DEFAULTS, **given}
    for key in ("redis_list", "redis_stream", "store_to_database", "websocket"):
        c.boolean(merged, key, "output.")
    c.integer(merged, "cache_ttl_seconds", "output.", 1, 86_400 * 7)
    out["output"] = merged


def validate_config(data: Any, *, function_exists: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Validate a config document; return it normalised with defaults, or raise `ConfigError`.

    ``function_exists`` answers whether an external function name has been uploaded (the database's view); without
    it external function names are not checked.
    """
    if not isinstance(data, dict):
        raise ConfigError([("config", "must be a JSON object")])
    try:
        check_document(data)  # before anything walks it: deepcopy and JSON encoding recurse
    except LimitError as exc:
        raise ConfigError([(exc.field or "config", str(exc))]) from None
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
    _check_function_names(out, c)
    _check_moneyness(data, out, c)
    _check_output(data, out, c)
    if c.errors:
        raise ConfigError(c.errors, c.total)
    computations = (
        out.get("option_greeks", {}).get("enabled") or out["technical_indicators"] or out["internal_functions"]
        or out["external_functions"] or out.get("moneyness")
    )
    if not computations:
        raise ConfigError([("config", "enables no computation: add option_greeks, technical_indicators, functions "
                                      "or moneyness")])
    return out
