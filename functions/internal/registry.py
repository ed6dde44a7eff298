"""Registry of internal (in-code) user functions and the binding of their parameters — docs/REFERENCE.md §3.4.

No Django imports.  The built-in functions register themselves in :mod:`functions.internal.builtin_functions`;
importing :mod:`functions.internal` (the package) loads both, so the catalogue is complete whenever it is used.

Every function has the shared signature ``NAME(tick: dict, bars: list[dict], params: dict) -> dict``:

* ``tick`` — the normalised tick (``instrument_key``, ``timestamp`` ISO string, ``ltp``, ``open``, ``high``,
  ``low``, ``close``, ``volume``, ``oi``, ``bid``, ``ask`` …).  The pipeline adds ``tick["previous"]`` =
  ``{"ltp", "timestamp"}`` of the instrument's previous tick (or ``None``) and, for chain-level functions, may add
  ``tick["chain"]`` = a snapshot of the option chain (see ``put_call_ratio``).
* ``bars`` — the config's recent bars, oldest first (``time, open, high, low, close, volume, oi``).  Per docs/REFERENCE.md §5
  the still-open bar is merged in, so ``bars[-1]`` is the *current* bar and ``bars[-2]`` the last completed one.
* ``params`` — the config entry's ``parameters`` merged over the function's declared defaults.

Results follow :func:`functions.results.validate_result`: a flat dict of numbers/strings/booleans/``None``;
``None`` means "not computable" (missing input, empty window, zero denominator); NaN/±inf never escape.

API: :func:`register` (decorator), :func:`get`, :func:`spec`, :func:`names`, :func:`needs_bars`,
:func:`validate_params` (used by the config validator), :func:`bind` and :func:`call_internal` (used by the pipeline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from functions.results import FunctionError, FunctionResult, ResultError, validate_result

__all__ = [
    "FunctionError",
    "FunctionSpec",
    "InvalidParamsError",
    "Param",
    "ResultError",
    "UnknownFunctionError",
    "bind",
    "call_internal",
    "get",
    "names",
    "needs_bars",
    "needs_chain",
    "register",
    "spec",
    "validate_params",
]

InternalFunction = Callable[[dict[str, Any], list[dict[str, Any]], dict[str, Any]], Mapping[str, Any]]
"""Type of a registered function."""

F = TypeVar("F", bound=InternalFunction)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnknownFunctionError(FunctionError, KeyError):
    """No internal function is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown internal function"


class InvalidParamsError(FunctionError, ValueError):
    """Parameters failed the function's declared schema; ``errors`` lists the messages."""

    def __init__(self, name: str, errors: list[str]) -> None:
        super().__init__(f"invalid parameters for {name!r}: " + "; ".join(errors))
        self.errors = errors


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "list": "a list",
}


@dataclass(frozen=True)
class Param:
    """Declared parameter of an internal function.

    ``type`` is one of ``"int"`` (bools refused), ``"float"`` (ints accepted, must be finite), ``"str"``,
    ``"bool"``, ``"list"``.  ``minimum``/``maximum`` are inclusive bounds for numbers (and list lengths);
    ``choices`` restricts the allowed values; ``nullable`` allows ``None``; ``default`` is merged in by
    :func:`call_internal` when the parameter is absent.
    """

    type: str
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    description: str = ""

    def check(self, name: str, value: Any) -> str | None:
        """Return an error message naming parameter ``name`` if ``value`` is unacceptable, else ``None``."""
        if value is None:
            return None if self.nullable else f"parameter {name!r} must not be null"
        kind = self.type
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "list": isinstance(value, list),
        }.get(kind, False)
        what = _TYPE_NAMES.get(kind, kind)
        bounds = ""
        if self.minimum is not None and self.maximum is not None:
            bounds = f" between {self.minimum:g} and {self.maximum:g}"
        elif self.minimum is not None:
            bounds = f" >= {self.minimum:g}"
        elif self.maximum is not None:
            bounds = f" <= {self.maximum:g}"
        if kind == "list" and bounds:
            bounds = f" with a length{bounds}"
        if not ok:
            return f"parameter {name!r} must be {what}{bounds} (got {value!r:.60})"
        measure = len(value) if kind == "list" else value
        if kind in ("int", "float", "list") and (
            (self.minimum is not None and measure < self.minimum)
            or (self.maximum is not None and measure > self.maximum)
        ):
            return f"parameter {name!r} must be {what}{bounds} (got {value!r:.60})"
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            return f"parameter {name!r} must be one of {allowed} (got {value!r:.60})"
        return None


@dataclass(frozen=True)
class FunctionSpec:
    """A registered internal function: callable, declared parameters (``None`` = accepts any), description."""

    name: str
    func: InternalFunction
    params: Mapping[str, Param] | None = None
    description: str = ""
    needs_bars: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)
    needs_chain: bool = False


_REGISTRY: dict[str, FunctionSpec] = {}


def register(
    name: str,
    *,
    params: Mapping[str, Param] | None = None,
    description: str | None = None,
    needs_bars: bool = True,
    needs_chain: bool = False,
    replace: bool = False,
) -> Callable[[F], F]:
    """Decorator registering ``func`` as internal function ``name`` (lower-case identifier, unique).

    ``params`` declares the accepted parameters (unknown ones are then rejected by :func:`validate_params`);
    ``None`` accepts anything.  ``needs_bars=False`` tells the pipeline it may pass ``[]`` for bars; ``needs_chain=True`` that
    it reads ``tick["chain"]``, which the pipeline then supplies.  Registering
    an existing name raises ``ValueError`` unless ``replace=True``.  Returns the function unchanged.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid internal function name {name!r}")

    def decorator(func: F) -> F:
        if name in _REGISTRY and not replace:
            raise ValueError(f"internal function {name!r} is already registered")
        doc = description if description is not None else (func.__doc__ or "").strip().split("\n\n")[0]
        declared = dict(params) if params is not None else None
        defaults = {k: p.default for k, p in (declared or {}).items() if p.default is not None}
        _REGISTRY[name] = FunctionSpec(name, func, declared, " ".join(doc.split()), needs_bars, defaults,
                                       needs_chain)
        return func

    return decorator


def spec(name: str) -> FunctionSpec:
    """The :class:`FunctionSpec` of ``name``; raises :class:`UnknownFunctionError` (a ``KeyError``)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownFunctionError(
            f"unknown internal function {name!r}; known: {', '.join(names())}"
        ) from None


def get(name: str) -> InternalFunction:
    """The registered callable ``name``; raises :class:`UnknownFunctionError` (a ``KeyError``)."""
    return spec(name).func


def unregister(name: str) -> None:
    """Forget a registered function (tests register and drop their own)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Sorted names of all registered internal functions."""
    return sorted(_REGISTRY)


def needs_bars(name: str) -> bool:
    """Whether ``name`` reads ``bars`` (the pipeline may skip loading bars otherwise); True if unknown."""
    entry = _REGISTRY.get(name)
    return True if entry is None else entry.needs_bars


def needs_chain(name: str) -> bool:
    """Whether ``name`` reads ``tick["chain"]``: the underlying's option chain, which the pipeline then adds."""
    entry = _REGISTRY.get(name)
    return entry is not None and entry.needs_chain


def validate_params(name: str, params: Any) -> list[str]:
    """Check ``params`` against ``name``'s declared schema; return messages naming each bad parameter.

    Reports unknown parameters, missing required ones, wrong types / out-of-range / not-allowed values.  An
    unknown function or a non-dict ``params`` is reported too (never raises).  Functions registered without a
    schema accept any dict.
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        return [f"unknown internal function {name!r}; known: {', '.join(names())}"]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return ["parameters must be an object"]
    if entry.params is None:
        return []
    errors: list[str] = []
    for key in params:
        if key not in entry.params:
            accepted = ", ".join(sorted(entry.params)) or "none"
            errors.append(f"parameter {key!r} is not accepted by {name} (accepted: {accepted})")
    for key, declared in entry.params.items():
        if key not in params:
            if declared.required:
                errors.append(f"parameter {key!r} is required")
            continue
        message = declared.check(key, params[key])
        if message:
            errors.append(message)
    return errors


def bind(
    name: str, params: Mapping[str, Any] | None
) -> Callable[[dict[str, Any], list[dict[str, Any]]], FunctionResult]:
    """Validate ``params`` once and return ``call(tick, bars)`` for many ticks (same errors and result checks as
    :func:`call_internal`). The pipeline binds each config entry once per batch; the callee gets the caller's
    ``tick`` and ``bars`` objects (no defensive copies), so the caller must pass ones it does not reuse."""
    entry = spec(name)
    errors = validate_params(name, params or {})
    if errors:
        raise InvalidParamsError(name, errors)
    merged = {**entry.defaults, **(params or {})}
    func = entry.func

    def call(tick: dict[str, Any], bars: list[dict[str, Any]]) -> FunctionResult:
        try:
            raw = func(tick, bars, dict(merged))
        except FunctionError:
            raise
        except Exception as exc:
            raise FunctionError(f"internal function {name!r} failed: {type(exc).__name__}: {exc}") from exc
        return validate_result(raw)

    return call


def call_internal(
    name: str,
    tick: Mapping[str, Any],
    bars: Sequence[Mapping[str, Any]] | None,
    params: Mapping[str, Any] | None,
) -> FunctionResult:
    """Call internal function ``name`` and return its validated result (same rules as external functions).

    Raises :class:`UnknownFunctionError`, :class:`InvalidParamsError` (bad parameters),
    :class:`ResultError` (bad return value) or :class:`FunctionError` wrapping any exception the function
    raised (message ``"<Type>: <message>"``, original as ``__cause__``) — all subclasses of
    :class:`FunctionError`.  ``tick``, ``bars`` and ``params`` are not modified.
    """
    entry = spec(name)
    errors = validate_params(name, params or {})
    if errors:
        raise InvalidParamsError(name, errors)
    merged = {**entry.defaults, **(params or {})}
    try:
        raw = entry.func(dict(tick), list(bars or []), merged)
    except FunctionError:
        raise
    except Exception as exc:
        raise FunctionError(f"internal function {name!r} failed: {type(exc).__name__}: {exc}") from exc
    return validate_result(raw)
