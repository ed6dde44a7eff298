"""The bounds every client value is held to before anything uses it (docs/REFERENCE.md §6, "Limits").

Django-free: the JSON body parser, the query parameters, the token's subject, the config validation (API, admin,
config stream) and the WebSocket consumer all call these, so a value refused in one place is refused in all.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from typing import Any

# Deeper than any config needs (a config is 4 levels deep; indicator parameters add one or two), far below the
# depth at which Python's recursive JSON encoder, decoder and deepcopy give up (about 1,000).
MAX_DEPTH = 32
# A request body, WebSocket message or config document: a config of 100 indicators is about 15 KB.
MAX_BODY_BYTES = 256 * 1024
# Error responses list at most this many problems and count the rest.
MAX_LISTED_ERRORS = 20
MAX_MESSAGE_CHARS = 500
# Times a client may send: what every store and bar grid can convert (years 1 and 9999 overflow when a day or a
# month is added or when a time zone shifts them).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)

# PostgreSQL text and jsonb cannot hold NUL, and UTF-8 cannot encode a lone surrogate (JSON's "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class LimitError(ValueError):
    """A value outside the bounds; ``field`` names where (a dotted path), when known."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.field = field
        self.code = code


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    return "must not contain NUL characters" if char == "\x00" else \
        f"must not contain the lone surrogate U+{ord(char):04X} (not encodable as UTF-8)"


def check_text(text: str, field: str | None = None) -> str:
    problem = text_problem(text)
    if problem:
        raise LimitError(problem, field)
    return text


def check_document(value: Any, field: str = "", max_depth: int = MAX_DEPTH,
                   max_bytes: int = MAX_BODY_BYTES) -> None:
    """Refuse a decoded JSON document that is too deep, too large, holds non-finite numbers or unstorable text.

    Iterative, so a document nested far deeper than the limit is refused without recursion; it stops at the first
    problem and never walks more than about ``max_bytes`` worth of values.
    """
    budget = max_bytes  # counted as the compact JSON encoding would take, near enough
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise LimitError(f"nested deeper than {max_depth} levels", path or None, "too_deep")
        if isinstance(item, dict):
            budget -= 2
            for key, child in item.items():
                if not isinstance(key, str):
                    raise LimitError("object keys must be strings", path or None)
                _check_storable(key, path)
                budget -= len(key) + 4
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):
            budget -= 2 + len(item)
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_storable(item, path)
            budget -= len(item) + 2
        elif isinstance(item, float) and not math.isfinite(item):
            raise LimitError("numbers must be finite (no NaN or Infinity)", path or None)
        elif isinstance(item, bool | int | float) or item is None:
            # an int's digits from its bits: str() refuses ints of more than 4,300 digits
            budget -= 5 if isinstance(item, bool) or item is None else \
                item.bit_length() * 3 // 10 + 1 if isinstance(item, int) else 8
        else:
            raise LimitError(f"{type(item).__name__} is not a JSON value", path or None)
        if budget < 0:
            raise LimitError(f"larger than {max_bytes} bytes", path or None, "too_large")


def _check_storable(text: str, path: str) -> None:
    problem = text_problem(text)
    if problem:
        raise LimitError(problem, path or None)


def parse_json(raw: bytes | str, field: str | None = None) -> Any:
    """Decode a JSON body or message within the limits (size, depth, finite numbers, storable text)."""
    if len(raw) > MAX_BODY_BYTES:
        raise LimitError(f"larger than {MAX_BODY_BYTES} bytes", field, "too_large")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise LimitError(f"nested deeper than {MAX_DEPTH} levels", field, "too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LimitError(f"not valid JSON: {exc}"[:MAX_MESSAGE_CHARS], field, "bad_json") from None
    check_document(document, field or "")
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_time(value: datetime, field: str | None = None) -> datetime:
    """A time within [EARLIEST_TIME, LATEST_TIME)."""
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise LimitError(f"must be between {EARLIEST_TIME.isoformat()} and {LATEST_TIME.isoformat()} "
                         "(exclusive)", field)
    return value


def check_date(value: date, field: str | None = None) -> date:
    """A date (an expiry) within the same range as times."""
    if not EARLIEST_TIME.date() <= value < LATEST_TIME.date():
        raise LimitError(f"must be between {EARLIEST_TIME.date().isoformat()} and {LATEST_TIME.date().isoformat()} "
                         "(exclusive)", field)
    return value


def ascii_int(text: str, field: str | None = None, low: int = 0, high: int = 2**63 - 1) -> int:
    """An integer written in ASCII digits (``str.isdigit`` also accepts '²' and other digits ``int`` refuses)."""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] == "-" else stripped
    if not body or not body.isascii() or not body.isdigit() or len(body) > 19:
        raise LimitError(f"{text[:40]!r} is not an integer", field)
    number = int(stripped)
    if not low <= number <= high:
        raise LimitError(f"must be between {low} and {high}", field)
    return number
