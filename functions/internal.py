"""Internal (in-code) user functions — docs/REFERENCE.md §3.4.  No Django imports.

Every function has the shared signature ``NAME(tick: dict, bars: list[dict], params: dict) -> dict``:

* ``tick`` — the normalised tick (``instrument_key``, ``timestamp`` ISO string, ``ltp``, ``open``, ``high``,
  ``low``, ``close``, ``volume``, ``oi``, ``bid``, ``ask`` …).  The pipeline adds ``tick["previous"]`` =
  ``{"ltp", "timestamp"}`` of the instrument's previous tick (or ``None``) and, for chain-level functions, may add
  ``tick["chain"]`` = a snapshot of the option chain (see :func:`put_call_ratio`).
* ``bars`` — the config's recent bars, oldest first (``time, open, high, low, close, volume, oi``).  Per docs/REFERENCE.md §5
  the still-open bar is merged in, so ``bars[-1]`` is the *current* bar and ``bars[-2]`` the last completed one.
* ``params`` — the config entry's ``parameters`` merged over the function's declared defaults.

Results follow :func:`functions.sandbox.results.validate_result`: a flat dict of numbers/strings/booleans/``None``;
``None`` means "not computable" (missing input, empty window, zero denominator); NaN/±inf never escape.

API: :func:`register` (decorator), :func:`get`, :func:`spec`, :func:`names`, :func:`needs_bars`,
:func:`validate_params` (used by the config validator), :func:`call_internal` (used by the pipeline).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from numbers import Real
from typing import Any, TypeVar

from functions.sandbox.results import FunctionError, FunctionResult, ResultError, validate_result

__all__ = [
    "FunctionError",
    "FunctionSpec",
    "InvalidParamsError",
    "Param",
    "ResultError",
    "UnknownFunctionError",
    "call_internal",
    "get",
    "names",
    "needs_bars",
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


_REGISTRY: dict[str, FunctionSpec] = {}


def register(
    name: str,
    *,
    params: Mapping[str, Param] | None = None,
    description: str | None = None,
    needs_bars: bool = True,
    replace: bool = False,
) -> Callable[[F], F]:
    """Decorator registering ``func`` as internal function ``name`` (lower-case identifier, unique).

    ``params`` declares the accepted parameters (unknown ones are then rejected by :func:`validate_params`);
    ``None`` accepts anything.  ``needs_bars=False`` tells the pipeline it may pass ``[]`` for bars.  Registering
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
        _REGISTRY[name] = FunctionSpec(name, func, declared, " ".join(doc.split()), needs_bars, defaults)
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


def names() -> list[str]:
    """Sorted names of all registered internal functions."""
    return sorted(_REGISTRY)


def needs_bars(name: str) -> bool:
    """Whether ``name`` reads ``bars`` (the pipeline may skip loading bars otherwise); True if unknown."""
    entry = _REGISTRY.get(name)
    return True if entry is None else entry.needs_bars


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


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, bool, non-numeric, NaN/inf)."""
    if type(value) is float:  # the common case, checked first: ABC isinstance checks cost microseconds
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (Real, Decimal)):
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return f if math.isfinite(f) else None
    return None


def _ts(value: Any) -> str | None:
    """A timestamp as an ISO-8601 string (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)


def _pct(change: float | None, base: float | None) -> float | None:
    if change is None or base is None or base == 0:
        return None
    return change / abs(base) * 100.0


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _bar_value(bar: Any, key: str) -> float | None:
    return _num(bar.get(key)) if isinstance(bar, Mapping) else None


# ----------------------------------------------------------------------------------------------------------------
# built-in internal functions


@register("price", params={}, needs_bars=False)
def price(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Last traded price and its change since the previous tick.

    Returns ``ltp``, ``previous_ltp``, ``change`` (ltp − previous ltp), ``change_pct`` (change / |previous| ×
    100; ``None`` when the previous ltp is 0 or unknown), ``timestamp`` (tick time, ISO) and
    ``previous_timestamp``.  The previous tick comes from ``tick["previous"]`` (``{"ltp", "timestamp"}`` or None).
    """
    ltp = _num(tick.get("ltp"))
    previous = tick.get("previous")
    prev_ltp = _num(previous.get("ltp")) if isinstance(previous, Mapping) else None
    prev_ts = previous.get("timestamp") if isinstance(previous, Mapping) else None
    change = _diff(ltp, prev_ltp)
    return {
        "ltp": ltp,
        "previous_ltp": prev_ltp,
        "change": change,
        "change_pct": _pct(change, prev_ltp),
        "timestamp": _ts(tick.get("timestamp")),
        "previous_timestamp": _ts(prev_ts),
    }


@register(
    "vwap_deviation",
    params={
        "length": Param(
            "int",
            minimum=1,
            maximum=100_000,
            nullable=True,
            description="use only the last N bars (default: all)",
        )
    },
)
def vwap_deviation(
    tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Deviation of the last price from the VWAP of the bars.

    VWAP = Σ(typical price × volume) / Σ volume with typical price = (high + low + close) / 3, over all bars or
    the last ``length``; bars with a missing value or non-positive volume are skipped.  Returns ``vwap``,
    ``ltp`` (tick ltp, else the last bar's close), ``deviation`` (ltp − vwap), ``deviation_pct``
    (deviation / vwap × 100) and ``bars_used``; values are ``None`` when no volume traded.
    """
    length = params.get("length")
    window = bars[-length:] if length else bars
    weighted = 0.0
    volume_total = 0.0
    used = 0
    for bar in window:
        high, low, close, volume = (_bar_value(bar, k) for k in ("high", "low", "close", "volume"))
        if high is None or low is None or close is None or volume is None or volume <= 0:
            continue
        weighted += (high + low + close) / 3.0 * volume
        volume_total += volume
        used += 1
    vwap = weighted / volume_total if volume_total > 0 else None
    ltp = _num(tick.get("ltp"))
    if ltp is None and bars:
        ltp = _bar_value(bars[-1], "close")
    deviation = _diff(ltp, vwap)
    return {
        "vwap": vwap,
        "ltp": ltp,
        "deviation": deviation,
        "deviation_pct": _pct(deviation, vwap),
        "bars_used": used,
    }


@register(
    "zscore",
    params={
        "length": Param("int", default=20, minimum=2, maximum=10_000, description="window length in bars"),
        "ddof": Param(
            "int", default=1, choices=(0, 1), description="1 = sample std (pandas), 0 = population"
        ),
    },
)
def zscore(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Rolling z-score of the close over the last ``length`` bars (default 20).

    ``zscore`` = (latest close − mean) / std of the last ``length`` closes (the latest close is ``bars[-1]``,
    the still-open bar, i.e. the current price); std uses ``ddof`` (default 1, like pandas' rolling std).
    Returns ``zscore``, ``close``, ``mean``, ``std``, ``length``; all ``None`` (except ``length``) until
    ``length`` closes exist, and ``zscore`` is ``None`` when std is 0.
    """
    length = int(params.get("length", 20))
    ddof = int(params.get("ddof", 1))
    closes = [c for c in (_bar_value(bar, "close") for bar in bars) if c is not None]
    window = closes[-length:]
    if len(window) < length or len(window) - ddof <= 0:
        return {
            "zscore": None,
            "close": window[-1] if window else None,
            "mean": None,
            "std": None,
            "length": length,
        }
    mean = math.fsum(window) / len(window)
    variance = math.fsum((x - mean) ** 2 for x in window) / (len(window) - ddof)
    std = math.sqrt(variance)
    last = window[-1]
    z = (last - mean) / std if std > 0 else None
    return {"zscore": z, "close": last, "mean": mean, "std": std, "length": length}


@register("oi_change", params={})
def oi_change(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Open-interest change versus the first bar of the window and versus the previous (last completed) bar.

    Current OI = ``tick["oi"]``, else the last bar's OI.  The first bar is ``bars[0]``; the previous bar is
    ``bars[-2]`` (``bars[-1]`` is the still-open current bar, docs/REFERENCE.md §5).  Returns ``oi``, ``first_oi``,
    ``previous_oi``, ``oi_change_first``, ``oi_change_first_pct``, ``oi_change_prev``, ``oi_change_prev_pct``
    (percent of |base|; ``None`` when the base is 0 or unknown).
    """
    oi = _num(tick.get("oi"))
    if oi is None and bars:
        oi = _bar_value(bars[-1], "oi")
    first_oi = _bar_value(bars[0], "oi") if bars else None
    previous_oi = _bar_value(bars[-2], "oi") if len(bars) >= 2 else None
    change_first = _diff(oi, first_oi)
    change_prev = _diff(oi, previous_oi)
    return {
        "oi": oi,
        "first_oi": first_oi,
        "previous_oi": previous_oi,
        "oi_change_first": change_first,
        "oi_change_first_pct": _pct(change_first, first_oi),
        "oi_change_prev": change_prev,
        "oi_change_prev_pct": _pct(change_prev, previous_oi),
    }


_RIGHTS = {"call": "call", "ce": "call", "c": "call", "put": "put", "pe": "put", "p": "put"}


def _chain_right_and_expiry(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    right = entry.get("right")
    expiry = entry.get("expiry") or entry.get("expiry_date")
    key = entry.get("instrument_key")
    if isinstance(key, str):
        parts = key.split("@")  # EXCHANGE@SYMBOL@options@EXPIRY@RIGHT@STRIKE
        if len(parts) >= 5:
            right = right or parts[4]
            expiry = expiry or parts[3]
    normalised = _RIGHTS.get(right.strip().lower()) if isinstance(right, str) else None
    return normalised, _ts(expiry)


@register(
    "put_call_ratio",
    params={
        "chain": Param(
            "list", nullable=True, description="chain snapshot (if the pipeline passes none in the tick)"
        ),
        "expiry": Param("str", nullable=True, description="only contracts of this expiry (YYYY-MM-DD)"),
    },
    needs_bars=False,
)
def put_call_ratio(
    tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Put/call ratios of an underlying's option chain: by open interest and by volume.

    The chain snapshot is ``tick["chain"]`` (provided by the pipeline for the underlying) or else
    ``params["chain"]``: a list of ``{"right": "call"|"put" (CE/PE accepted), "oi": …, "volume": …}``; ``right``
    and ``expiry`` may instead come from an ``instrument_key``.  With ``params["expiry"]`` only that expiry
    counts.  Returns ``oi_pcr`` = put OI / call OI and ``volume_pcr`` = put volume / call volume (``None`` when
    the call side is 0 or no chain is available), the four totals and ``contracts`` (entries counted).
    """
    chain = tick.get("chain")
    if chain is None:
        chain = params.get("chain")
    totals = {"call_oi": 0.0, "put_oi": 0.0, "call_volume": 0.0, "put_volume": 0.0}
    contracts = 0
    if chain is not None and not isinstance(chain, (list, tuple)):
        raise ValueError("the chain snapshot must be a list of {right, oi, volume} objects")
    wanted_expiry = params.get("expiry")
    for entry in chain or []:
        if not isinstance(entry, Mapping):
            continue
        right, expiry = _chain_right_and_expiry(entry)
        if right is None:
            continue
        if wanted_expiry and (expiry or "")[:10] != wanted_expiry:
            continue
        contracts += 1
        totals[f"{right}_oi"] += _num(entry.get("oi")) or 0.0
        totals[f"{right}_volume"] += _num(entry.get("volume")) or 0.0
    available = chain is not None
    return {
        "oi_pcr": totals["put_oi"] / totals["call_oi"] if totals["call_oi"] > 0 else None,
        "volume_pcr": totals["put_volume"] / totals["call_volume"] if totals["call_volume"] > 0 else None,
        **{k: (v if available else None) for k, v in totals.items()},
        "contracts": contracts,
    }
