"""Tick messages from the feed (docs/REFERENCE.md §3.2): one parser for every alias, and one error type for the dead-letter path.

`parse_tick` turns a stream entry's fields into a flat JSON-ready dict with canonical names, or raises `TickError`
saying what is wrong. The stream name is never used to decide the instrument.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from feed.instruments import InstrumentKeyError, parse_instrument_key

QUOTE_FIELDS = ("ltp", "open", "high", "low", "close")  # the prices a Greeks config may price an option from
_ALIASES: dict[str, tuple[str, ...]] = {
    "ltp": ("ltp", "last"),
    "time": ("ltt", "timestamp", "ts_exch"),
    "volume": ("volume", "ttq"),
    "oi": ("oi", "OI"),
    "state": ("state", "status"),
    "bid": ("bid", "bPrice"),
    "ask": ("ask", "sPrice"),
}
_OPTIONAL_PRICES = ("open", "high", "low", "close")


class TickError(ValueError):
    """A tick that cannot be processed; the message is what the dead-letter entry records."""


def decode_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """Stream entry fields as text (redis-py returns bytes unless decoding was asked for)."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        k = key.decode() if isinstance(key, bytes) else str(key)
        out[k] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


def message_body(fields: dict[str, Any]) -> dict[str, Any]:
    """A message is either a ``data`` field holding a JSON object, or flat fields."""
    if "data" in fields:
        raw = fields["data"]
        if isinstance(raw, dict):
            return raw
        try:
            body = orjson.loads(raw)  # strict JSON: a NaN or Infinity literal is malformed, not a number
        except (TypeError, ValueError) as exc:
            raise TickError(f"data is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise TickError("data must hold a JSON object")
        return body
    return fields


def _first(body: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = body.get(name)
        if value is not None and value != "":
            return value
    return None


def number(value: Any, field: str) -> float:
    """``value`` as a float, or `TickError` naming ``field`` (booleans, non-finite and negative numbers refused)."""
    if isinstance(value, bool):
        raise TickError(f"{field} must be a number, got {value!r}")
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise TickError(f"{field} must be a number, got {value!r}") from None
    if not math.isfinite(parsed):
        raise TickError(f"{field} must be finite, got {value!r}")
    if parsed < 0:
        raise TickError(f"{field} must not be negative, got {value!r}")
    return parsed


def _optional_number(body: dict[str, Any], names: tuple[str, ...], field: str) -> float | None:
    value = _first(body, names)
    return None if value is None else number(value, field)


def _optional_int(body: dict[str, Any], names: tuple[str, ...], field: str) -> int | None:
    value = _optional_number(body, names, field)
    return None if value is None else int(value)


def parse_time(value: Any) -> datetime:
    """ISO-8601 with an offset, or epoch seconds / milliseconds / microseconds / nanoseconds, to an aware UTC time."""
    if isinstance(value, bool):
        raise TickError(f"time {value!r} is not a timestamp")
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise TickError(f"time {value!r} is not ISO-8601 or epoch seconds/ms") from None
            if parsed.tzinfo is None:
                raise TickError(f"time {value!r} has no UTC offset")
            return parsed.astimezone(UTC)
    else:
        raise TickError(f"time {value!r} is not a timestamp")
    if not math.isfinite(number) or number <= 0:
        raise TickError(f"time {value!r} is not a valid epoch timestamp")
    for scale in (1.0, 1e3, 1e6, 1e9):
        if number / scale < 1e11:
            return datetime.fromtimestamp(number / scale, UTC)
    raise TickError(f"time {value!r} is not a valid epoch timestamp")


@lru_cache(maxsize=65536)
def _key_names(raw_key: str) -> tuple[str, str]:
    """The normalised key and ``EXCHANGE@SYMBOL`` of a raw key (a feed repeats the same few thousand keys; parsing
    one costs more than the rest of its tick). Keys that fail to parse raise each time: errors are not cached."""
    instrument = parse_instrument_key(raw_key)
    return instrument.key, instrument.symbol_key


def parse_tick(fields: dict[str, Any]) -> dict[str, Any]:
    """Normalise one message; raise `TickError` if it is malformed.

    Returned keys: instrument_key, symbol_key (``EXCHANGE@SYMBOL``), ts (epoch seconds), timestamp (ISO-8601 UTC),
    ltp, open, high, low, close, volume, oi, bid, ask, ltq, state ('U' or 'P'); absent optional values are None.
    """
    body = message_body(fields)
    raw_key = body.get("instrument_key")
    if raw_key is None or raw_key == "":
        raise TickError("instrument_key is missing")
    try:
        key, symbol_key = _key_names(str(raw_key))
    except InstrumentKeyError as exc:
        raise TickError(f"instrument_key: {exc}") from None
    ltp = _first(body, _ALIASES["ltp"])
    if ltp is None:
        raise TickError("price (ltp or last) is missing")
    raw_time = _first(body, _ALIASES["time"])
    if raw_time is None:
        raise TickError("time (ltt, timestamp or ts_exch) is missing")
    when = parse_time(raw_time)
    state = str(_first(body, _ALIASES["state"]) or "U").upper()
    if state not in ("U", "P"):
        raise TickError(f"state {state!r} must be U or P")
    tick: dict[str, Any] = {
        "instrument_key": key,
        "symbol_key": symbol_key,
        "ts": when.timestamp(),
        "timestamp": when.isoformat(),
        "ltp": number(ltp, "ltp"),
    }
    for name in _OPTIONAL_PRICES:
        tick[name] = _optional_number(body, (name,), name)
    tick["volume"] = _optional_int(body, _ALIASES["volume"], "volume")
    tick["oi"] = _optional_int(body, _ALIASES["oi"], "oi")
    tick["bid"] = _optional_number(body, _ALIASES["bid"], "bid")
    tick["ask"] = _optional_number(body, _ALIASES["ask"], "ask")
    tick["ltq"] = _optional_int(body, ("ltq",), "ltq")
    tick["state"] = state
    return tick
