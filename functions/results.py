"""Result conventions shared by internal and external user functions (docs/REFERENCE.md §3.4).

A user function returns a *flat* JSON object: ``str`` keys mapped to numbers, strings, booleans or ``None``.

Decisions (documented here, relied upon by the pipeline and the tests):

* Non-finite floats (``NaN``, ``+inf``, ``-inf``) are **converted to ``None``** (JSON ``null``), not rejected:
  JSON has no NaN, and "not computable right now" (zero variance, empty window, …) should not discard the
  other keys of the result.  The same convention is used by the internal functions (``null`` = undefined).
* numpy scalars (``numpy.float64``, ``numpy.int64``, ``numpy.bool_``) are converted to the Python equivalents,
  so user code may return ``np.mean(x)`` directly.  Subclasses of ``int``/``float``/``str`` are narrowed to the
  base type.
* Anything else — lists, tuples, dicts, sets, bytes, ``Decimal``, datetimes, arbitrary objects — is rejected
  with a :class:`ResultError` that names the key and the offending type.  The top-level value must be a ``dict``
  (any ``Mapping``) with non-empty ``str`` keys.

No Django imports here: this module is imported by the sandbox child process too.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

JSONScalar = None | bool | int | float | str
"""Type of a value in a function result."""

FunctionResult = dict[str, JSONScalar]
"""Type of a validated function result."""

MAX_KEY_LENGTH = 200
"""Longest accepted result key (characters)."""


class FunctionError(Exception):
    """Base class of every error raised by the function machinery (internal registry and sandbox)."""


class ResultError(FunctionError, ValueError):
    """A function returned something that is not a flat JSON object of numbers/strings/booleans/nulls."""


def _type_name(value: object) -> str:
    return type(value).__name__


def _text(key: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ResultError(f"value for key {key!r} is not valid Unicode text (lone surrogates)") from None
    return value


def _scalar(key: str, value: object) -> JSONScalar:
    """Return ``value`` as a plain JSON scalar, or raise :class:`ResultError` naming ``key``."""
    if type(value) is str:
        return _text(key, value)
    if value is None or type(value) is bool or type(value) is int:
        return value  # type: ignore[return-value]
    if type(value) is float:
        return value if math.isfinite(value) else None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            f = float(value)
            return f if math.isfinite(f) else None
        raise ResultError(
            f"value for key {key!r} has type numpy.{_type_name(value)}; "
            "only numbers, strings, booleans and null are allowed"
        )
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, str):
        return _text(key, str(value))
    raise ResultError(
        f"value for key {key!r} has type {_type_name(value)}; only numbers, strings, booleans and null are allowed "
        "(nested lists/objects are not)"
    )


def validate_result(value: object) -> FunctionResult:
    """Validate a function's return value and return a new, plain ``dict`` of JSON scalars.

    Promises: the returned dict has only non-empty ``str`` keys (at most :data:`MAX_KEY_LENGTH` characters) and
    ``None``/``bool``/``int``/finite ``float``/``str`` values; NaN/±inf became ``None``; numpy scalars became
    Python scalars.  Raises :class:`ResultError` (a ``ValueError``) with a message naming the key otherwise.
    """
    if type(value) is dict:
        plain = _plain_copy(value)
        if plain is not None:
            return plain
    if not isinstance(value, Mapping):
        raise ResultError(f"function must return a dict (JSON object), got {_type_name(value)}")
    out: FunctionResult = {}
    for key, item in value.items():
        if type(key) is not str:
            if isinstance(key, str):
                key = str(key)
            else:
                raise ResultError(f"result keys must be strings, got {_type_name(key)} key {key!r:.60}")
        if not key:
            raise ResultError("result keys must be non-empty strings")
        _text("<key>", key)
        if len(key) > MAX_KEY_LENGTH:
            raise ResultError(f"result key {key[:40]!r}… is longer than {MAX_KEY_LENGTH} characters")
        out[key] = _scalar(key, item)
    return out


_PLAIN_TYPES = frozenset({type(None), bool, int, str})


def _plain_copy(value: dict[Any, Any]) -> FunctionResult | None:
    """The common case of :func:`validate_result` without its per-value checks: a dict whose keys are short ASCII
    ``str`` and whose values are exact ``float``/``int``/``bool``/``None`` or ASCII ``str``. Returns a copy with
    non-finite floats as ``None``, or None when anything needs the full checks (which then decide)."""
    out: FunctionResult = {}
    for key, item in value.items():
        if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            return None
        kind = type(item)
        if kind is float:
            out[key] = item if math.isfinite(item) else None
        elif kind in _PLAIN_TYPES and (kind is not str or item.isascii()):
            out[key] = item
        else:
            return None
    return out


def encode_result(result: FunctionResult) -> str:
    """Serialise an already validated result as compact JSON (no NaN; raises ``ValueError`` on failure)."""
    return json.dumps(
        result, allow_nan=False, separators=(",", ":"), ensure_ascii=False
    )  # valid UTF-8 (checked)


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` ``default=`` hook for *inputs* (tick, bars, params) sent to the sandbox.

    Converts datetimes/dates/times to ISO strings, ``Decimal`` to float, numpy scalars/arrays to Python values,
    sets/tuples to lists; raises ``TypeError`` for anything else.
    """
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"object of type {_type_name(value)} is not JSON serialisable")
