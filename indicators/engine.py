"""Technical-indicator execution: config validation, the pandas_ta Study, and a TA-Lib fast path (no Django).

Indicator specs (the config's ``technical_indicators``, docs/REFERENCE.md §3.3/§5)::

    [{"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
     {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}}]

* ``name`` — any pandas_ta indicator (``pandas_ta.Category``; case-insensitive) that runs on bar columns alone.
* ``parameters`` — keyword arguments of that pandas_ta function, checked against its signature (types from its
  annotations) plus the kwargs its docstring documents (``fillna``, ``adjust``, ``percent``…). The bar column
  an indicator reads can be redirected with the source keys pandas_ta's DataFrame accessor understands
  (``"close": "volume"``, ``"close": "oi"``; values are bar column names).
* ``output_key`` — optional stable name for the result.

Output keys (columns of :func:`compute`, keys of :func:`compute_latest`):

* no ``output_key``: pandas_ta's own column names for these parameters, e.g. ``RSI_14``, ``EMA_20``,
  ``MACD_12_26_9``/``MACDh_12_26_9``/``MACDs_12_26_9``, ``BBL_20_2.0``/``BBM_…``/``BBU_…``/``BBB_…``/``BBP_…``
  (this pandas_ta names bbands ``_{length}_{std}`` with ``std`` as given: ``2`` → ``BBL_20_2``, default or
  ``2.0`` → ``BBL_20_2.0``), ``ATRr_14``, ``SUPERT_7_3.0``…, ``VWAP_D``;
* ``output_key`` and a single-column result: ``output_key`` itself;
* ``output_key`` and a multi-column result: ``{output_key}_{suffix}`` per pandas_ta column, in pandas_ta's
  column order, with the suffixes of :data:`OUTPUT_SUFFIXES` (e.g. macd → ``_macd``, ``_hist``, ``_signal``;
  bbands → ``_lower``, ``_mid``, ``_upper``, ``_bandwidth``, ``_percent``; supertrend → ``_trend``,
  ``_direction``, ``_long``, ``_short``) and otherwise the lower-cased column prefix before the first ``_``
  (adx → ``_adx``, ``_adxr``, ``_dmp``, ``_dmn``); if those would collide, the whole lower-cased pandas_ta
  column name.

Keys never depend on the data: with too few bars pandas_ta returns nothing, this engine returns the same
columns filled with NaN (``None`` in :func:`compute_latest`, which also maps ±inf to ``None``).

Execution. Indicators with a TA-Lib equivalent (:data:`FAST_INDICATORS`) are computed by calling ``talib``
directly on float64 arrays, reproducing exactly (bit for bit) the columns pandas_ta produces with its TA-Lib
backend (its default), including its quirks: ``atr`` is TA-Lib's Wilder ATR and is named ``ATRr_{n}``;
``bbands`` uses TA-Lib's population standard deviation (``ddof`` has no effect, as in pandas_ta) and pandas_ta's
epsilon guard for ``BBB``/``BBP``; ``macd`` swaps ``fast``/``slow`` if given reversed; ``stoch`` passes ``d``
as TA-Lib's slow-%K period (``smooth_k`` only selects the TA-Lib path when > 2); ``adx``'s ``DMP``/``DMN`` are
TA-Lib's ``PLUS_DM``/``MINUS_DM``. ``supertrend`` (no TA-Lib equivalent) is a NumPy port of pandas_ta's loop on
TA-Lib's ATR, again identical. A spec with any parameter outside a fast path's list (``offset``, ``fillna``,
``talib: false``, a non-default ``mamode``…) is computed by pandas_ta itself (its DataFrame accessor, which uses
TA-Lib where it can), as is every other indicator — including ``kama`` (pandas_ta's own recursion, not TA-Lib's
KAMA) and ``trix`` (EMA chain + pandas rolling mean, not TA-Lib's TRIX), whose values TA-Lib would not match.

Time: bar times are tz-aware (UTC from :mod:`indicators.bars`); pandas_ta runs on an index converted to the
exchange zone (``tz``, default Asia/Kolkata) so that anchored indicators (``vwap`` anchor ``D``/``W``…) reset on
exchange days. :func:`compute` returns the bars' own time index unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import io
import json
import math
import re
import sys
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta as ta
import talib
from pandas_ta.core import AnalysisIndicators
from pandas_ta.utils._study import Study  # the class pandas_ta exports as pandas_ta.Study

from indicators.timeframes import EXCHANGE_TZ

__all__ = [
    "FAST_INDICATORS",
    "OUTPUT_SUFFIXES",
    "CompiledIndicator",
    "IndicatorConfigError",
    "IndicatorSet",
    "IndicatorSpec",
    "build_study",
    "compile_indicators",
    "compute",
    "compute_latest",
    "indicator_parameters",
    "valid_indicator_names",
    "validate_indicators",
]

FieldError = tuple[str, str]
Specs = Sequence[Mapping[str, Any]]

#: Bar columns an indicator may read (``parameters`` source keys take one of these as value).
SOURCE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "oi")
#: pandas_ta function arguments that receive bar series, and the accessor kwarg that redirects each.
_SERIES_ARGS: dict[str, str] = {
    "open_": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
}
_SPEC_KEYS = ("name", "parameters", "output_key")
_OUTPUT_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_POSITIVE_PARAMS = frozenset(
    {
        "length",
        "fast",
        "slow",
        "signal",
        "drift",
        "std",
        "multiplier",
        "k",
        "d",
        "smooth_k",
        "lensig",
        "period",
    }
)
_MAX_INT_PARAM = 100_000
_EPS = sys.float_info.epsilon

#: Friendly suffixes for ``{output_key}_{suffix}`` of multi-column indicators (by pandas_ta column prefix).
OUTPUT_SUFFIXES: dict[str, dict[str, str]] = {
    "macd": {"MACD": "macd", "MACDh": "hist", "MACDs": "signal"},
    "bbands": {"BBL": "lower", "BBM": "mid", "BBU": "upper", "BBB": "bandwidth", "BBP": "percent"},
    "stoch": {"STOCHk": "k", "STOCHd": "d", "STOCHh": "hist"},
    "supertrend": {"SUPERT": "trend", "SUPERTd": "direction", "SUPERTl": "long", "SUPERTs": "short"},
    "trix": {"TRIX": "trix", "TRIXs": "signal"},
}


class IndicatorConfigError(ValueError):
    """Invalid indicator specs; ``errors`` holds ``(field path, message)`` pairs."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors))


# --------------------------------------------------------------------------------------------------------------
# Catalogue of pandas_ta indicators and their parameters
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamInfo:
    """One accepted parameter: ``kind`` is int | number | bool | str | list | str_or_list | scalar | source | any."""

    name: str
    kind: str
    default: Any = None


@dataclass(frozen=True)
class IndicatorInfo:
    name: str
    category: str
    function: Callable[..., Any]
    params: dict[str, ParamInfo]
    inputs: tuple[str, ...]  # accessor source keys the function reads (open/high/low/close/volume)


def _kind_from_annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "number"
    if annotation is str:
        return "str"
    args = set(typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin in (list, typing.List):  # noqa: UP006 - pandas_ta annotates with typing.List
        return "list"
    if annotation is typing.List:  # noqa: UP006
        return "list"
    if args:
        if str in args:
            return "str_or_list" if any(typing.get_origin(a) is list for a in args) else "str"
        if float in args:
            return "number"
        if int in args:
            return "int"
    return "any"


def _kind_from_doc(text: str) -> str:
    word = text.split(",")[0].strip().lower()
    return {"bool": "bool", "int": "int", "float": "number", "str": "str", "value": "scalar"}.get(word, "any")


def _doc_kwargs(fn: Callable[..., Any]) -> dict[str, str]:
    """Names (→ declared type word) listed in the ``Kwargs:`` section of a pandas_ta docstring."""
    doc = inspect.getdoc(fn) or ""
    out: dict[str, str] = {}
    in_kwargs = False
    for line in doc.splitlines():
        if line.strip() == "Kwargs:":
            in_kwargs = True
            continue
        if in_kwargs:
            if line and not line[0].isspace():
                break
            match = re.match(r"^\s+(\w+)\s*\(([^)]*)\)", line)
            if match:
                out[match.group(1)] = match.group(2)
    return out


@functools.cache
def _catalog() -> dict[str, IndicatorInfo]:
    catalog: dict[str, IndicatorInfo] = {}
    for category, names in ta.Category.items():
        for name in names:
            fn = getattr(ta, name, None)
            if fn is None or not callable(getattr(AnalysisIndicators, name, None)):
                continue
            sig = inspect.signature(fn)
            params: dict[str, ParamInfo] = {}
            inputs: list[str] = []
            runnable = True
            for p in sig.parameters.values():
                if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    continue
                if p.name in _SERIES_ARGS:
                    key = _SERIES_ARGS[p.name]
                    inputs.append(key)
                    params[key] = ParamInfo(key, "source", key)
                    continue
                if p.default is inspect.Parameter.empty:
                    runnable = False  # needs a non-bar series (tsignals, xsignals, long_run, short_run)
                    break
                params[p.name] = ParamInfo(p.name, _kind_from_annotation(p.annotation), p.default)
            if not runnable:
                continue
            for kw, type_text in _doc_kwargs(fn).items():
                if kw not in params:
                    params[kw] = ParamInfo(kw, _kind_from_doc(type_text))
            catalog[name] = IndicatorInfo(name, category, fn, params, tuple(inputs))
    return dict(sorted(catalog.items()))


def valid_indicator_names() -> list[str]:
    """Sorted names of every indicator a spec may use (from ``pandas_ta.Category``)."""
    return list(_catalog())


def indicator_parameters(name: str) -> dict[str, str]:
    """Accepted parameter names of an indicator → kind (``int``, ``number``, ``bool``, ``str``, ``source``…)."""
    info = _catalog().get(name.lower())
    if info is None:
        raise KeyError(name)
    return {p.name: p.kind for p in info.params.values()}


@functools.cache
def _ma_names() -> frozenset[str]:
    names = ta.ma()  # pandas_ta returns its list of moving averages when called without arguments
    return frozenset(str(n) for n in names)


# --------------------------------------------------------------------------------------------------------------
# Spec validation
# --------------------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float | np.floating)) and math.isfinite(float(v))


def _check_param(info: IndicatorInfo, pinfo: ParamInfo, value: Any) -> str | None:
    kind = pinfo.kind
    if kind == "source":
        if value not in SOURCE_COLUMNS:
            return f"must be one of the bar columns {', '.join(SOURCE_COLUMNS)}, got {value!r}"
        return None
    if kind == "int":
        if not _is_int(value):
            return f"must be an integer, got {type(value).__name__} {value!r}"
    elif kind == "number":
        if not _is_number(value):
            return f"must be a finite number, got {type(value).__name__} {value!r}"
    elif kind == "bool":
        if not isinstance(value, bool):
            return f"must be true or false, got {type(value).__name__} {value!r}"
    elif kind == "str":
        if not isinstance(value, str) or not value:
            return f"must be a non-empty string, got {type(value).__name__} {value!r}"
    elif kind == "list":
        if not isinstance(value, list | tuple):
            return f"must be a list, got {type(value).__name__} {value!r}"
    elif kind == "str_or_list":
        if not isinstance(value, str | list | tuple):
            return f"must be a string or a list of strings, got {type(value).__name__} {value!r}"
    elif kind == "scalar":
        if not (value is None or isinstance(value, bool | str) or _is_number(value)):
            return f"must be a number, string, boolean or null, got {type(value).__name__} {value!r}"
    name = pinfo.name
    if kind in ("int", "number") and (name in _POSITIVE_PARAMS or name.endswith("length")):
        if value <= 0:
            return f"must be > 0, got {value!r}"
        if value > _MAX_INT_PARAM:
            return f"must be <= {_MAX_INT_PARAM}, got {value!r}"
    if kind == "str" and (name == "mamode" or name.endswith("_mamode")) and value.lower() not in _ma_names():
        return f"unknown moving average {value!r}; valid: {', '.join(sorted(_ma_names()))}"
    return None


def _close_matches(word: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(m) for m in matches)}? " if matches else ""


@dataclass(frozen=True)
class IndicatorSpec:
    """A validated, normalised spec (``name`` lower-case, ``parameters`` as sorted items)."""

    name: str
    parameters: tuple[tuple[str, Any], ...]
    output_key: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.parameters)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _check_specs(specs: Any, path: str) -> tuple[list[FieldError], list[IndicatorSpec | None]]:
    """Field-level checks; returns errors and the normalised specs (None where a spec is unusable)."""
    errors: list[FieldError] = []
    normalised: list[IndicatorSpec | None] = []
    if not isinstance(specs, list | tuple):
        return [(path, f"must be a list of indicator objects, got {type(specs).__name__}")], []
    catalog = _catalog()
    for i, spec in enumerate(specs):
        item = f"{path}[{i}]"
        if not isinstance(spec, Mapping):
            errors.append((item, f"must be an object with keys {', '.join(_SPEC_KEYS)}"))
            normalised.append(None)
            continue
        bad = False
        for key in spec:
            if key not in _SPEC_KEYS:
                errors.append((f"{item}.{key}", f"unknown field; allowed: {', '.join(_SPEC_KEYS)}"))
        name = spec.get("name")
        info: IndicatorInfo | None = None
        if not isinstance(name, str) or not name.strip():
            errors.append((f"{item}.name", "required: a pandas_ta indicator name"))
            bad = True
        else:
            info = catalog.get(name.strip().lower())
            if info is None:
                errors.append(
                    (
                        f"{item}.name",
                        f"unknown indicator {name!r}; {_close_matches(name.strip().lower(), list(catalog))}"
                        f"valid indicators: {', '.join(catalog)}",
                    )
                )
                bad = True
        params = spec.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            errors.append((f"{item}.parameters", f"must be an object, got {type(params).__name__}"))
            bad = True
            params = {}
        elif info is not None:
            for key, value in params.items():
                ppath = f"{item}.parameters.{key}"
                pinfo = info.params.get(key) if isinstance(key, str) else None
                if pinfo is None:
                    valid = sorted(info.params)
                    errors.append(
                        (
                            ppath,
                            f"unknown parameter {key!r} for {info.name}; {_close_matches(str(key), valid)}"
                            f"valid parameters: {', '.join(valid)}",
                        )
                    )
                    bad = True
                    continue
                problem = _check_param(info, pinfo, value)
                if problem is not None:
                    errors.append((ppath, problem))
                    bad = True
        output_key = spec.get("output_key")
        if output_key is not None and (
            not isinstance(output_key, str) or not _OUTPUT_KEY_RE.fullmatch(output_key)
        ):
            errors.append(
                (
                    f"{item}.output_key",
                    "must be 1-64 characters of letters, digits, '_', '.', '-' (not starting with '.' or '-')",
                )
            )
            bad = True
        if bad or info is None:
            normalised.append(None)
        else:
            normalised.append(
                IndicatorSpec(
                    info.name,
                    tuple(sorted((k, _freeze(v)) for k, v in params.items())),
                    output_key,
                )
            )
    return errors, normalised


def validate_indicators(specs: Any, path: str = "technical_indicators") -> list[FieldError]:
    """Validate a config's indicator list. Returns ``[(field path, message), …]``; empty means valid.

    Checks: the list shape and allowed keys; ``name`` against pandas_ta's indicators (with close matches and
    the full list); each parameter against the function's signature and documented kwargs, with its type
    (from pandas_ta's annotations: integers for lengths, finite numbers, booleans, strings, bar-column names for
    source keys), positive lengths/periods, known moving-average names for ``mamode``; ``output_key`` format;
    and that no two specs produce the same output key (a spec pandas_ta cannot run with its parameters is also
    reported). Paths look like ``technical_indicators[1].parameters.fastt``.
    """
    errors, normalised = _check_specs(specs, path)
    seen: dict[str, int] = {}
    for i, spec in enumerate(normalised):
        if spec is None:
            continue
        try:
            compiled = _compile_one(i, spec)
        except _ProbeError as exc:
            errors.append((f"{path}[{i}]", str(exc)))
            continue
        where = f"{path}[{i}].output_key" if spec.output_key is not None else f"{path}[{i}].name"
        for key in compiled.output_names:
            if key in seen:
                errors.append(
                    (
                        where,
                        f"duplicate output key {key!r} (also produced by {path}[{seen[key]}]); "
                        "set a distinct output_key",
                    )
                )
                break
        for key in compiled.output_names:
            seen.setdefault(key, i)
    return errors


# --------------------------------------------------------------------------------------------------------------
# Fast path: TA-Lib called directly (identical to pandas_ta's TA-Lib backend)
# --------------------------------------------------------------------------------------------------------------

Arrays = Mapping[str, np.ndarray]
FastFn = Callable[[Arrays], list[np.ndarray]]


@dataclass(frozen=True)
class FastPlan:
    columns: tuple[str, ...]
    min_bars: int  # pandas_ta returns nothing below this many bars → all-NaN columns
    inputs: tuple[str, ...]  # bar columns read, in order
    fn: Callable[..., list[np.ndarray]]


def _pos(params: Mapping[str, Any], key: str, default: Any) -> Any:
    """pandas_ta's ``v_pos_default``: the given value if > 0 (keeping its int/float type), else default."""
    value = params.get(key)
    if value is None or not _is_number(value) or value <= 0:
        return default
    return int(value) if _is_int(value) else float(value)


def _nzr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pandas_ta ``non_zero_range``: a - b, plus machine epsilon everywhere if any difference is exactly 0."""
    diff = a - b
    if (diff == 0).any():
        diff = diff + _EPS
    return diff


def _sources(params: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(params.get(n, n)) for n in names)


def _fast_rsi(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan((f"RSI_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.RSI(c, n)])


def _fast_sma(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 10)
    if n <= 1:
        return None
    return FastPlan((f"SMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.SMA(c, n)])


def _fast_ema(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 10)
    if n <= 1:
        return None
    return FastPlan((f"EMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.EMA(c, n)])


def _fast_wma(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"WMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.WMA(c, n)])


def _fast_dema(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"DEMA_{n}",), n, _sources(p, ("close",)), lambda c: [talib.DEMA(c, n)])


def _fast_tema(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"TEMA_{n}",), 3 * n, _sources(p, ("close",)), lambda c: [talib.TEMA(c, n)])


def _fast_roc(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"ROC_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.ROC(c, n)])


def _fast_mom(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 10)
    return FastPlan((f"MOM_{n}",), n + 1, _sources(p, ("close",)), lambda c: [talib.MOM(c, n)])


def _fast_macd(p: Mapping[str, Any]) -> FastPlan:
    fast, slow, signal = _pos(p, "fast", 12), _pos(p, "slow", 26), _pos(p, "signal", 9)
    if slow < fast:
        fast, slow = slow, fast
    props = f"_{fast}_{slow}_{signal}"

    def fn(c: np.ndarray) -> list[np.ndarray]:
        macd, sig, hist = talib.MACD(c, fast, slow, signal)
        return [macd, hist, sig]

    return FastPlan(
        (f"MACD{props}", f"MACDh{props}", f"MACDs{props}"), slow + signal - 1, _sources(p, ("close",)), fn
    )


def _fast_bbands(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("mamode", "sma")).lower() != "sma":
        return None
    n = _pos(p, "length", 5)
    std = _pos(p, "std", 2.0)
    props = f"_{n}_{std}"

    def fn(c: np.ndarray) -> list[np.ndarray]:
        upper, mid, lower = talib.BBANDS(c, n, std, std, talib.MA_Type.SMA)
        ulr = _nzr(upper, lower)
        return [lower, mid, upper, 100 * ulr / mid, _nzr(c, lower) / ulr]

    cols = tuple(f"{x}{props}" for x in ("BBL", "BBM", "BBU", "BBB", "BBP"))
    return FastPlan(cols, n, _sources(p, ("close",)), fn)


def _fast_atr(p: Mapping[str, Any]) -> FastPlan | None:
    if p.get("mamode", "rma") != "rma":  # pandas_ta names it ATR{mamode[0]}: only "rma" gives ATRr
        return None
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"ATRr_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.ATR(h, lo, c, n)],
    )


def _fast_natr(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"NATR_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.NATR(h, lo, c, n)],
    )


def _fast_willr(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"WILLR_{n}",), n, _sources(p, ("high", "low", "close")), lambda h, lo, c: [talib.WILLR(h, lo, c, n)]
    )


def _fast_cci(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    cval = _pos(p, "c", 0.015)
    return FastPlan(
        (f"CCI_{n}_{cval}",),
        n,
        _sources(p, ("high", "low", "close")),
        lambda h, lo, c: [talib.CCI(h, lo, c, n)],
    )


def _fast_mfi(p: Mapping[str, Any]) -> FastPlan:
    n = _pos(p, "length", 14)
    return FastPlan(
        (f"MFI_{n}",),
        n + 1,
        _sources(p, ("high", "low", "close", "volume")),
        lambda h, lo, c, v: [talib.MFI(h, lo, c, v, n)],
    )


def _fast_obv(p: Mapping[str, Any]) -> FastPlan:
    return FastPlan(("OBV",), 1, _sources(p, ("close", "volume")), lambda c, v: [talib.OBV(c, v)])


def _fast_stoch(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("mamode", "sma")).lower() != "sma":
        return None
    k, d, smooth_k = _pos(p, "k", 14), _pos(p, "d", 3), _pos(p, "smooth_k", 3)
    if smooth_k <= 2:
        return None
    props = f"_{k}_{d}_{smooth_k}"

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        sk, sd = talib.STOCH(h, lo, c, k, d, talib.MA_Type.SMA, d, talib.MA_Type.SMA)
        return [sk, sd, sk - sd]

    cols = (f"STOCHk{props}", f"STOCHd{props}", f"STOCHh{props}")
    return FastPlan(cols, k + d + smooth_k, _sources(p, ("high", "low", "close")), fn)


def _fast_adx(p: Mapping[str, Any]) -> FastPlan | None:
    n = _pos(p, "length", 14)
    if n <= 1:
        return None
    lensig = _pos(p, "lensig", n)
    adxr_n = _pos(p, "adxr_length", 2)

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        adx = talib.ADX(h, lo, c, n)
        prev = np.full_like(adx, np.nan)
        if adxr_n < adx.size:
            prev[adxr_n:] = adx[:-adxr_n]
        return [adx, 0.5 * (adx + prev), talib.PLUS_DM(h, lo, n), talib.MINUS_DM(h, lo, n)]

    cols = (f"ADX_{lensig}", f"ADXR_{lensig}_{adxr_n}", f"DMP_{n}", f"DMN_{n}")
    return FastPlan(cols, max(n + 1, lensig, adxr_n), _sources(p, ("high", "low", "close")), fn)


def _supertrend_loop(
    close: np.ndarray, lb: np.ndarray, ub: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pandas_ta 0.4.25 ``supertrend`` loop, verbatim on NumPy arrays (lb/ub modified in place)."""
    m = close.size
    dir_ = np.ones(m)
    trend = np.zeros(m)
    long = np.full(m, np.nan)
    short = np.full(m, np.nan)
    cl, lbl, ubl = close.tolist(), lb.tolist(), ub.tolist()
    d = 1.0
    for i in range(1, m):
        if cl[i] > ubl[i - 1]:
            d = 1.0
        elif cl[i] < lbl[i - 1]:
            d = -1.0
        else:
            if d > 0 and lbl[i] < lbl[i - 1]:
                lbl[i] = lbl[i - 1]
            if d < 0 and ubl[i] > ubl[i - 1]:
                ubl[i] = ubl[i - 1]
        dir_[i] = d
        if d > 0:
            trend[i] = long[i] = lbl[i]
        else:
            trend[i] = short[i] = ubl[i]
    trend[0] = np.nan
    dir_[:length] = np.nan
    return trend, dir_, long, short


def _fast_supertrend(p: Mapping[str, Any]) -> FastPlan | None:
    if str(p.get("atr_mamode", "rma")).lower() != "rma":
        return None
    n = _pos(p, "length", 7)
    atr_n = _pos(p, "atr_length", n)
    mult = _pos(p, "multiplier", 3.0)
    props = f"_{n}_{mult}"

    def fn(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        hl2 = 0.5 * (h + lo)
        matr = mult * talib.ATR(h, lo, c, atr_n)
        return list(_supertrend_loop(c, hl2 - matr, hl2 + matr, n))

    cols = tuple(f"{x}{props}" for x in ("SUPERT", "SUPERTd", "SUPERTl", "SUPERTs"))
    return FastPlan(cols, max(n, atr_n) + 1, _sources(p, ("high", "low", "close")), fn)


_FAST: dict[str, tuple[frozenset[str], Callable[[Mapping[str, Any]], FastPlan | None]]] = {
    "rsi": (frozenset({"length"}), _fast_rsi),
    "sma": (frozenset({"length"}), _fast_sma),
    "ema": (frozenset({"length"}), _fast_ema),
    "wma": (frozenset({"length"}), _fast_wma),
    "dema": (frozenset({"length"}), _fast_dema),
    "tema": (frozenset({"length"}), _fast_tema),
    "roc": (frozenset({"length"}), _fast_roc),
    "mom": (frozenset({"length"}), _fast_mom),
    "macd": (frozenset({"fast", "slow", "signal"}), _fast_macd),
    "bbands": (frozenset({"length", "std", "ddof", "mamode"}), _fast_bbands),
    "atr": (frozenset({"length", "mamode"}), _fast_atr),
    "natr": (frozenset({"length"}), _fast_natr),
    "willr": (frozenset({"length"}), _fast_willr),
    "cci": (frozenset({"length", "c"}), _fast_cci),
    "mfi": (frozenset({"length"}), _fast_mfi),
    "obv": (frozenset(), _fast_obv),
    "stoch": (frozenset({"k", "d", "smooth_k", "mamode"}), _fast_stoch),
    "adx": (frozenset({"length", "lensig", "adxr_length"}), _fast_adx),
    "supertrend": (frozenset({"length", "atr_length", "multiplier", "atr_mamode"}), _fast_supertrend),
}
#: Indicators with a direct TA-Lib/NumPy path (used when all parameters are in that path's list).
FAST_INDICATORS: tuple[str, ...] = tuple(sorted(_FAST))


def _fast_plan(spec: IndicatorSpec) -> FastPlan | None:
    entry = _FAST.get(spec.name)
    if entry is None:
        return None
    allowed, factory = entry
    params = spec.params
    info = _catalog()[spec.name]
    for key, value in params.items():
        if key == "talib" and value is True:
            continue
        if info.params.get(key) is not None and info.params[key].kind == "source":
            continue
        if key not in allowed:
            return None
    return factory(params)


# --------------------------------------------------------------------------------------------------------------
# Compilation (output names, fast plans) and pandas_ta fallback
# --------------------------------------------------------------------------------------------------------------


class _ProbeError(Exception):
    pass


@dataclass(frozen=True)
class CompiledIndicator:
    """One spec ready to run: pandas_ta ``columns`` and the ``output_names`` they are published under."""

    index: int
    spec: IndicatorSpec
    columns: tuple[str, ...]
    output_names: tuple[str, ...]
    fast: FastPlan | None

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for pandas_ta (its DataFrame accessor / Study entry)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.spec.parameters}


def _output_names(name: str, columns: tuple[str, ...], output_key: str | None) -> tuple[str, ...]:
    if output_key is None:
        return columns
    if len(columns) == 1:
        return (output_key,)
    curated = OUTPUT_SUFFIXES.get(name, {})
    suffixes = [curated.get(col.split("_")[0], col.split("_")[0].lower()) for col in columns]
    if len(set(suffixes)) != len(suffixes):
        suffixes = [col.lower() for col in columns]
    return tuple(f"{output_key}_{s}" for s in suffixes)


def _probe_frame(n: int, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    rng = np.random.default_rng(12345)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    spread = rng.uniform(0.1, 1.0, n)
    frame = pd.DataFrame(
        {
            "open": close + rng.normal(0.0, 0.3, n),
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(100, 10_000, n).astype("float64"),
            "oi": rng.integers(1_000, 50_000, n).astype("float64"),
        },
        index=pd.date_range("2024-01-01 09:15", periods=n, freq="5min", tz=tz),
    )
    frame["open"] = frame["open"].clip(frame["low"], frame["high"])
    return frame


@contextlib.contextmanager
def _quiet_pandas_ta() -> typing.Iterator[None]:
    """Silence pandas_ta's stdout chatter and its pandas deprecation warnings (not actionable here)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _run_pandas_ta(frame: pd.DataFrame, name: str, kwargs: Mapping[str, Any]) -> pd.DataFrame | None:
    """Run one indicator through pandas_ta's DataFrame accessor (what a Study runs); stdout is discarded."""
    with _quiet_pandas_ta():
        result = getattr(frame.ta, name)(**dict(kwargs))
    if isinstance(result, tuple):
        result = result[0]
    if isinstance(result, pd.Series):
        return result.to_frame()
    if isinstance(result, pd.DataFrame):
        if result is frame:  # accessor returns the input frame when the indicator produced nothing
            return None
        return result
    return None


@functools.lru_cache(maxsize=4096)
def _probe_columns(name: str, parameters: tuple[tuple[str, Any], ...]) -> tuple[str, ...]:
    kwargs = CompiledIndicator(0, IndicatorSpec(name, parameters), (), (), None).kwargs
    ints = [int(v) for _, v in parameters if _is_number(v)]
    n = min(max([300, *(5 * x + 10 for x in ints)]), 20_000)
    try:
        result = _run_pandas_ta(_probe_frame(n), name, kwargs)
    except Exception as exc:  # noqa: BLE001 - any pandas_ta failure is reported as a config error
        raise _ProbeError(
            f"pandas_ta {name} failed with these parameters: {type(exc).__name__}: {exc}"
        ) from exc
    if result is None or result.shape[1] == 0:
        raise _ProbeError(f"pandas_ta {name} produced no output with these parameters")
    return tuple(str(c) for c in result.columns)


def _compile_one(index: int, spec: IndicatorSpec) -> CompiledIndicator:
    fast = _fast_plan(spec)
    columns = fast.columns if fast is not None else _probe_columns(spec.name, spec.parameters)
    return CompiledIndicator(index, spec, columns, _output_names(spec.name, columns, spec.output_key), fast)


def _bars_index(bars: pd.DataFrame) -> pd.Index:
    if "time" in bars.columns:
        return pd.DatetimeIndex(bars["time"])
    return bars.index


@dataclass
class IndicatorSet:
    """Compiled specs: run them many times without re-validating (see :func:`compile_indicators`)."""

    indicators: list[CompiledIndicator]
    tz: str = EXCHANGE_TZ

    @property
    def output_keys(self) -> list[str]:
        """All output keys, in spec order then pandas_ta column order."""
        return [k for ind in self.indicators for k in ind.output_names]

    @property
    def study(self) -> Study:
        """A fresh pandas_ta Study recording these specs (see :func:`build_study`)."""
        return _make_study(self.indicators)

    # -- execution ---------------------------------------------------------------------------------------------
    def _arrays(self, bars: pd.DataFrame) -> dict[str, np.ndarray]:
        cache: dict[str, np.ndarray] = {}
        for ind in self.indicators:
            if ind.fast is None:
                continue
            for col in ind.fast.inputs:
                if col not in cache:
                    if col not in bars.columns:
                        raise ValueError(f"bars have no {col!r} column (needed by {ind.spec.name})")
                    cache[col] = bars[col].to_numpy(dtype="float64", na_value=np.nan)
        return cache

    def _pandas_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        frame = bars.drop(columns=["time"]) if "time" in bars.columns else bars.copy()
        frame = frame[[c for c in SOURCE_COLUMNS if c in frame.columns]].astype("float64")
        index = _bars_index(bars)
        if isinstance(index, pd.DatetimeIndex):
            if index.tz is not None:
                index = index.tz_convert(self.tz)
            frame.index = index
        return frame

    def _run(self, bars: pd.DataFrame) -> list[tuple[CompiledIndicator, list[np.ndarray]]]:
        n = len(bars)
        arrays = self._arrays(bars)
        out: list[tuple[CompiledIndicator, list[np.ndarray]]] = []
        frame: pd.DataFrame | None = None
        for ind in self.indicators:
            width = len(ind.columns)
            if ind.fast is not None:
                if n < ind.fast.min_bars:
                    out.append((ind, [np.full(n, np.nan) for _ in range(width)]))
                else:
                    out.append((ind, ind.fast.fn(*(arrays[c] for c in ind.fast.inputs))))
                continue
            if frame is None:
                frame = self._pandas_frame(bars)
            result = _run_pandas_ta(frame, ind.spec.name, ind.kwargs) if n else None
            if result is None:
                out.append((ind, [np.full(n, np.nan) for _ in range(width)]))
            elif tuple(result.columns) == ind.columns or result.shape[1] == width:
                out.append((ind, [result.iloc[:, j].to_numpy(dtype="float64") for j in range(width)]))
            else:
                raise RuntimeError(
                    f"{ind.spec.name} returned columns {list(result.columns)}, expected {list(ind.columns)}"
                )
        return out

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        """All output columns over all bars (see :func:`compute`)."""
        columns = [np.asarray(a, dtype="float64") for _, arrays in self._run(bars) for a in arrays]
        keys = self.output_keys
        index = _bars_index(bars)
        if not columns:
            return pd.DataFrame(index=index, columns=keys, dtype="float64")
        # one float64 block: much cheaper than a dict of columns
        return pd.DataFrame(np.column_stack(columns), index=index, columns=keys)

    def compute_latest(self, bars: pd.DataFrame) -> dict[str, float | None]:
        """Values at the last bar (see :func:`compute_latest`)."""
        latest: dict[str, float | None] = {}
        for ind, arrays in self._run(bars):
            for key, arr in zip(ind.output_names, arrays, strict=True):
                if arr.size == 0:
                    latest[key] = None
                    continue
                value = float(arr[-1])
                latest[key] = value if math.isfinite(value) else None
        return latest


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def _specs_key(specs: Specs) -> str:
    return json.dumps(specs, sort_keys=True, default=_json_default)


@functools.lru_cache(maxsize=512)
def _compile_cached(key: str, tz: str) -> IndicatorSet:
    specs = json.loads(key)
    errors = validate_indicators(specs)
    if errors:
        raise IndicatorConfigError(errors)
    _, normalised = _check_specs(specs, "technical_indicators")
    compiled = [_compile_one(i, spec) for i, spec in enumerate(normalised) if spec is not None]
    return IndicatorSet(compiled, tz)


def compile_indicators(specs: Specs | IndicatorSet, tz: str = EXCHANGE_TZ) -> IndicatorSet:
    """Validate and compile specs (cached by content). Raises :class:`IndicatorConfigError` if invalid."""
    if isinstance(specs, IndicatorSet):
        return specs
    try:
        key = _specs_key(specs)
    except (TypeError, ValueError) as exc:
        raise IndicatorConfigError([("technical_indicators", f"not JSON-serialisable: {exc}")]) from exc
    return _compile_cached(key, tz)


def _make_study(indicators: Sequence[CompiledIndicator], name: str = "technical_indicators") -> Study:
    entries: list[dict[str, Any]] = []
    for ind in indicators:
        entry: dict[str, Any] = {"kind": ind.spec.name, **ind.kwargs}
        if ind.spec.output_key is not None:
            entry["col_names"] = ind.output_names
        entries.append(entry)
    description = json.dumps(
        [{"name": i.spec.name, "parameters": i.kwargs, "output_key": i.spec.output_key} for i in indicators]
    )
    with _quiet_pandas_ta():  # Study prints a warning for an empty list
        return Study(name=name, ta=entries, cores=0, description=description)


def build_study(specs: Specs | IndicatorSet, name: str = "technical_indicators") -> Study:
    """The ``pandas_ta.Study`` for the specs (the object the service records as "the Study").

    Each entry is ``{"kind": name, **parameters}``; specs with an ``output_key`` also carry pandas_ta's
    ``col_names`` so that ``df.ta.study(study)`` appends exactly the columns :func:`compute` returns.
    ``cores=0`` (no multiprocessing). Raises :class:`IndicatorConfigError` for invalid specs.
    """
    return _make_study(compile_indicators(specs).indicators, name)


def compute(bars: pd.DataFrame, specs: Specs | IndicatorSet, tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """Every output column of ``specs`` over ``bars``.

    Args:
        bars: oldest first, columns ``open, high, low, close`` (+ ``volume``, ``oi`` when used) and either a
            ``time`` column (tz-aware bar start, as from :mod:`indicators.bars`) or a DatetimeIndex.
        specs: indicator specs (validated here; invalid → :class:`IndicatorConfigError`) or an IndicatorSet.
        tz: exchange zone for pandas_ta's anchored indicators (``vwap``).

    Returns:
        float64 DataFrame indexed by the bars' times, one column per output key (module docstring), warm-up
        rows NaN.
    """
    return compile_indicators(specs, tz).compute(bars)


def compute_latest(
    bars: pd.DataFrame, specs: Specs | IndicatorSet, tz: str = EXCHANGE_TZ
) -> dict[str, float | None]:
    """``{output_key: value at the last bar}``; NaN/±inf (warm-up, no bars) → None. Same keys as :func:`compute`."""
    return compile_indicators(specs, tz).compute_latest(bars)
