"""Indicator specs: their format, validation and compilation into runnable indicators (no Django).

Indicator specs (the config's ``technical_indicators``, docs/REFERENCE.md §3.3/§5)::

    [{"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
     {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}}]

* ``name`` — any pandas_ta indicator (``pandas_ta.Category``; case-insensitive) that runs on bar columns alone
  (:mod:`indicators.catalogue`).
* ``parameters`` — keyword arguments of that pandas_ta function, checked against its signature (types from its
  annotations) plus the kwargs its docstring documents (``fillna``, ``adjust``, ``percent``…). The bar column
  an indicator reads can be redirected with the source keys pandas_ta's DataFrame accessor understands
  (``"close": "volume"``, ``"close": "oi"``; values are bar column names).
* ``output_key`` — optional stable name for the result.

Output keys (columns of :func:`indicators.compute.compute`, keys of :func:`indicators.compute.compute_latest`):

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

Keys never depend on the data: with too few bars pandas_ta returns nothing, the engine returns the same
columns filled with NaN (``None`` in ``compute_latest``, which also maps ±inf to ``None``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from indicators.catalogue import (
    SOURCE_COLUMNS,
    IndicatorInfo,
    ParamInfo,
    catalog,
    is_int,
    is_number,
    ma_names,
)
from indicators.pandas_ta_path import ProbeError, pandas_ta_kwargs, probe_columns
from indicators.talib_path import FastPlan, fast_plan

__all__ = [
    "OUTPUT_SUFFIXES",
    "CompiledIndicator",
    "FieldError",
    "IndicatorConfigError",
    "IndicatorSpec",
    "Specs",
    "check_specs",
    "compile_spec",
    "validate_indicators",
]

FieldError = tuple[str, str]
Specs = Sequence[Mapping[str, Any]]
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


def _check_param(info: IndicatorInfo, pinfo: ParamInfo, value: Any) -> str | None:
    kind = pinfo.kind
    if kind == "source":
        if value not in SOURCE_COLUMNS:
            return f"must be one of the bar columns {', '.join(SOURCE_COLUMNS)}, got {value!r}"
        return None
    if kind == "int":
        if not is_int(value):
            return f"must be an integer, got {type(value).__name__} {value!r}"
    elif kind == "number":
        if not is_number(value):
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
        if not (value is None or isinstance(value, bool | str) or is_number(value)):
            return f"must be a number, string, boolean or null, got {type(value).__name__} {value!r}"
    name = pinfo.name
    if kind in ("int", "number") and (name in _POSITIVE_PARAMS or name.endswith("length")):
        if value <= 0:
            return f"must be > 0, got {value!r}"
        if value > _MAX_INT_PARAM:
            return f"must be <= {_MAX_INT_PARAM}, got {value!r}"
    if kind == "str" and (name == "mamode" or name.endswith("_mamode")) and value.lower() not in ma_names():
        return f"unknown moving average {value!r}; valid: {', '.join(sorted(ma_names()))}"
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


def _check_name(
    item: str, name: Any, known: dict[str, IndicatorInfo]
) -> tuple[IndicatorInfo | None, list[FieldError]]:
    if not isinstance(name, str) or not name.strip():
        return None, [(f"{item}.name", "required: a pandas_ta indicator name")]
    info = known.get(name.strip().lower())
    if info is None:
        return None, [
            (
                f"{item}.name",
                f"unknown indicator {name!r}; {_close_matches(name.strip().lower(), list(known))}"
                f"valid indicators: {', '.join(known)}",
            )
        ]
    return info, []


def _check_parameters(item: str, info: IndicatorInfo, params: Mapping[Any, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
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
            continue
        problem = _check_param(info, pinfo, value)
        if problem is not None:
            errors.append((ppath, problem))
    return errors


def _check_output_key(item: str, output_key: Any) -> list[FieldError]:
    if output_key is None or (isinstance(output_key, str) and _OUTPUT_KEY_RE.fullmatch(output_key)):
        return []
    return [
        (
            f"{item}.output_key",
            "must be 1-64 characters of letters, digits, '_', '.', '-' (not starting with '.' or '-')",
        )
    ]


def _check_spec(
    item: str, spec: Mapping[Any, Any], known: dict[str, IndicatorInfo]
) -> tuple[list[FieldError], IndicatorSpec | None]:
    """One spec's field errors (unknown fields first, as they do not make the spec unusable) and its normal form."""
    errors: list[FieldError] = [
        (f"{item}.{key}", f"unknown field; allowed: {', '.join(_SPEC_KEYS)}")
        for key in spec
        if key not in _SPEC_KEYS
    ]
    info, problems = _check_name(item, spec.get("name"), known)
    params = spec.get("parameters", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        problems.append((f"{item}.parameters", f"must be an object, got {type(params).__name__}"))
        params = {}
    elif info is not None:
        problems += _check_parameters(item, info, params)
    output_key = spec.get("output_key")
    problems += _check_output_key(item, output_key)
    errors += problems
    if problems or info is None:
        return errors, None
    return errors, IndicatorSpec(
        info.name, tuple(sorted((k, _freeze(v)) for k, v in params.items())), output_key
    )


def check_specs(specs: Any, path: str) -> tuple[list[FieldError], list[IndicatorSpec | None]]:
    """Field-level checks; returns errors and the normalised specs (None where a spec is unusable)."""
    if not isinstance(specs, list | tuple):
        return [(path, f"must be a list of indicator objects, got {type(specs).__name__}")], []
    known = catalog()
    errors: list[FieldError] = []
    normalised: list[IndicatorSpec | None] = []
    for i, spec in enumerate(specs):
        item = f"{path}[{i}]"
        if not isinstance(spec, Mapping):
            errors.append((item, f"must be an object with keys {', '.join(_SPEC_KEYS)}"))
            normalised.append(None)
            continue
        spec_errors, normal = _check_spec(item, spec, known)
        errors += spec_errors
        normalised.append(normal)
    return errors, normalised


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
        return pandas_ta_kwargs(self.spec.parameters)


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


def compile_spec(index: int, spec: IndicatorSpec) -> CompiledIndicator:
    """A normalised spec made runnable: its TA-Lib plan, else the columns a pandas_ta probe produced (may raise
    :class:`~indicators.pandas_ta_path.ProbeError`)."""
    fast = fast_plan(spec.name, spec.params)
    columns = fast.columns if fast is not None else probe_columns(spec.name, spec.parameters)
    return CompiledIndicator(index, spec, columns, _output_names(spec.name, columns, spec.output_key), fast)


def validate_indicators(specs: Any, path: str = "technical_indicators") -> list[FieldError]:
    """Validate a config's indicator list. Returns ``[(field path, message), …]``; empty means valid.

    Checks: the list shape and allowed keys; ``name`` against pandas_ta's indicators (with close matches and
    the full list); each parameter against the function's signature and documented kwargs, with its type
    (from pandas_ta's annotations: integers for lengths, finite numbers, booleans, strings, bar-column names for
    source keys), positive lengths/periods, known moving-average names for ``mamode``; ``output_key`` format;
    and that no two specs produce the same output key (a spec pandas_ta cannot run with its parameters is also
    reported). Paths look like ``technical_indicators[1].parameters.fastt``.
    """
    errors, normalised = check_specs(specs, path)
    seen: dict[str, int] = {}
    for i, spec in enumerate(normalised):
        if spec is None:
            continue
        try:
            compiled = compile_spec(i, spec)
        except ProbeError as exc:
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
