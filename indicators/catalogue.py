"""The catalogue of pandas_ta indicators a spec may name, and the parameters each accepts (no Django).

An indicator is in the catalogue when it is listed in ``pandas_ta.Category``, has a DataFrame-accessor method and
reads bar columns alone (functions that need another series, e.g. ``tsignals``, are left out). Its parameters are
the function's signature (kinds from its annotations; the bar-series arguments become *source* parameters that
redirect the column read) plus the kwargs its docstring documents (``fillna``, ``adjust``, ``percent``…).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas_ta as ta
from pandas_ta.core import AnalysisIndicators

__all__ = [
    "SOURCE_COLUMNS",
    "IndicatorInfo",
    "ParamInfo",
    "catalog",
    "indicator_parameters",
    "is_int",
    "is_number",
    "ma_names",
    "valid_indicator_names",
]

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


def _indicator_info(category: str, name: str) -> IndicatorInfo | None:
    """The catalogue entry of one pandas_ta indicator, or None when a spec cannot run it."""
    fn = getattr(ta, name, None)
    if fn is None or not callable(getattr(AnalysisIndicators, name, None)):
        return None
    params: dict[str, ParamInfo] = {}
    inputs: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in _SERIES_ARGS:
            key = _SERIES_ARGS[p.name]
            inputs.append(key)
            params[key] = ParamInfo(key, "source", key)
            continue
        if p.default is inspect.Parameter.empty:
            return None  # needs a non-bar series (tsignals, xsignals, long_run, short_run)
        params[p.name] = ParamInfo(p.name, _kind_from_annotation(p.annotation), p.default)
    for kw, type_text in _doc_kwargs(fn).items():
        if kw not in params:
            params[kw] = ParamInfo(kw, _kind_from_doc(type_text))
    return IndicatorInfo(name, category, fn, params, tuple(inputs))


@functools.cache
def catalog() -> dict[str, IndicatorInfo]:
    """Every indicator a spec may name, by lower-case name, sorted."""
    found: dict[str, IndicatorInfo] = {}
    for category, names in ta.Category.items():
        for name in names:
            info = _indicator_info(category, name)
            if info is not None:
                found[name] = info
    return dict(sorted(found.items()))


def valid_indicator_names() -> list[str]:
    """Sorted names of every indicator a spec may use (from ``pandas_ta.Category``)."""
    return list(catalog())


def indicator_parameters(name: str) -> dict[str, str]:
    """Accepted parameter names of an indicator → kind (``int``, ``number``, ``bool``, ``str``, ``source``…)."""
    info = catalog().get(name.lower())
    if info is None:
        raise KeyError(name)
    return {p.name: p.kind for p in info.params.values()}


@functools.cache
def ma_names() -> frozenset[str]:
    names = ta.ma()  # pandas_ta returns its list of moving averages when called without arguments
    return frozenset(str(n) for n in names)


def is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def is_number(v: Any) -> bool:
    return (is_int(v) or isinstance(v, float | np.floating)) and math.isfinite(float(v))
