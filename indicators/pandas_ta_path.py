"""The pandas_ta path: running one indicator through pandas_ta itself, and probing its output columns (no Django).

Every spec without a TA-Lib fast plan (:mod:`indicators.talib_path`) runs through pandas_ta's DataFrame accessor
(what a ``pandas_ta.Study`` runs; it uses TA-Lib where it can). The columns such a spec produces are learnt once
per spec by running it on synthetic bars (:func:`probe_columns`), so that output keys never depend on the data.
"""

from __future__ import annotations

import contextlib
import functools
import io
import typing
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta  # noqa: F401 - registers the DataFrame.ta accessor run below

from indicators.catalogue import is_number
from indicators.timeframes import EXCHANGE_TZ

__all__ = ["ProbeError", "pandas_ta_kwargs", "probe_columns", "quiet_pandas_ta", "run_pandas_ta"]


class ProbeError(Exception):
    """pandas_ta failed, or produced nothing, with a spec's parameters."""


def pandas_ta_kwargs(parameters: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Keyword arguments for pandas_ta (its DataFrame accessor / Study entry) from a spec's frozen parameters."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in parameters}


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
def quiet_pandas_ta() -> typing.Iterator[None]:
    """Silence pandas_ta's stdout chatter and its pandas deprecation warnings (not actionable here)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def run_pandas_ta(frame: pd.DataFrame, name: str, kwargs: Mapping[str, Any]) -> pd.DataFrame | None:
    """Run one indicator through pandas_ta's DataFrame accessor (what a Study runs); stdout is discarded."""
    with quiet_pandas_ta():
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
def probe_columns(name: str, parameters: tuple[tuple[str, Any], ...]) -> tuple[str, ...]:
    """pandas_ta's column names for a spec, from a run on synthetic bars long enough for its lengths."""
    kwargs = pandas_ta_kwargs(parameters)
    ints = [int(v) for _, v in parameters if is_number(v)]
    n = min(max([300, *(5 * x + 10 for x in ints)]), 20_000)
    try:
        result = run_pandas_ta(_probe_frame(n), name, kwargs)
    except Exception as exc:  # noqa: BLE001 - any pandas_ta failure is reported as a config error
        raise ProbeError(
            f"pandas_ta {name} failed with these parameters: {type(exc).__name__}: {exc}"
        ) from exc
    if result is None or result.shape[1] == 0:
        raise ProbeError(f"pandas_ta {name} produced no output with these parameters")
    return tuple(str(c) for c in result.columns)
