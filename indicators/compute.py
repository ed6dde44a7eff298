"""Running a set of indicator specs over bars (no Django): compile once, then :func:`compute` / :func:`compute_latest`.

Each spec runs on the TA-Lib fast path (:mod:`indicators.talib_path`) when it has a plan there, else through
pandas_ta (:mod:`indicators.pandas_ta_path`); output keys are described in :mod:`indicators.specs`.

Time: bar times are tz-aware (UTC from :mod:`indicators.bars`); pandas_ta runs on an index converted to the
exchange zone (``tz``, default Asia/Kolkata) so that anchored indicators (``vwap`` anchor ``D``/``W``…) reset on
exchange days. :func:`compute` returns the bars' own time index unchanged.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas_ta.utils._study import Study  # the class pandas_ta exports as pandas_ta.Study

from indicators.catalogue import SOURCE_COLUMNS
from indicators.pandas_ta_path import quiet_pandas_ta, run_pandas_ta
from indicators.specs import (
    CompiledIndicator,
    IndicatorConfigError,
    Specs,
    check_specs,
    compile_spec,
    validate_indicators,
)
from indicators.timeframes import EXCHANGE_TZ

__all__ = ["IndicatorSet", "build_study", "compile_indicators", "compute", "compute_latest"]


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
            result = run_pandas_ta(frame, ind.spec.name, ind.kwargs) if n else None
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
    _, normalised = check_specs(specs, "technical_indicators")
    compiled = [compile_spec(i, spec) for i, spec in enumerate(normalised) if spec is not None]
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
    with quiet_pandas_ta():  # Study prints a warning for an empty list
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
