"""Benchmark: technical-indicator evaluation through ``indicators.compute`` vs pandas_ta and raw TA-Lib.

Config: RSI 14, EMA 20, MACD 12/26/9, BBANDS 20/2, ATR 14 over 500 bars. Each variant is timed per evaluation
(all five indicators), median over many repeats after a warm-up, all in the same process:

* engine ``compute_latest`` / ``compute`` (specs as the config holds them: cache lookup + TA-Lib fast path),
  and ``compute_latest`` on a pre-compiled ``IndicatorSet``;
* pandas_ta native (``talib=False``): the five ``df.ta.<indicator>(talib=False, …)`` calls, and the same as a
  ``df.ta.study(Study)`` (on a fresh copy of the bars, since a Study appends columns);
* pandas_ta with its TA-Lib backend (``talib=True``, its default): the same two ways;
* TA-Lib called directly on float64 arrays (lower bound; no BBANDS bandwidth/percent, no DataFrame).

Targets: engine ≤ 1.5 ms per evaluation and ≥ 4× faster than pandas_ta native.

Run from the repository root: ``.venv/bin/python -m bench.indicators`` (or ``.venv/bin/python
bench/indicators.py``); ``--repeats N`` and ``--json`` are optional. ``run()`` returns the figures as a dict so
other benchmark parts (e.g. API latency) can be added alongside.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/ must not shadow the top-level indicators package
    _root = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _root / "bench"]
    sys.path.insert(0, str(_root))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # pandas_ta vs pandas 3 deprecations
warnings.filterwarnings("ignore", category=FutureWarning)

import pandas_ta as ta  # noqa: E402
import talib  # noqa: E402
from pandas_ta.utils._study import Study  # noqa: E402 - exported as pandas_ta.Study

from indicators.compute import compile_indicators, compute, compute_latest  # noqa: E402

N_BARS = 500
SPECS: list[dict[str, Any]] = [
    {"name": "rsi", "parameters": {"length": 14}},
    {"name": "ema", "parameters": {"length": 20}},
    {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}},
    {"name": "bbands", "parameters": {"length": 20, "std": 2}},
    {"name": "atr", "parameters": {"length": 14}},
]
TARGET_MS = 1.5
TARGET_SPEEDUP = 4.0


def make_bars(n: int = N_BARS, seed: int = 42) -> pd.DataFrame:
    """Synthetic 5-minute NIFTY-like bars, ``time`` tz-aware UTC (09:15 IST session start)."""
    rng = np.random.default_rng(seed)
    close = 24_000 + np.cumsum(rng.normal(0, 8, n))
    spread = rng.uniform(1, 15, n)
    high = close + spread * rng.uniform(0.2, 1.0, n)
    low = close - spread * rng.uniform(0.2, 1.0, n)
    times = pd.date_range("2025-06-02 09:15", periods=n, freq="5min", tz="Asia/Kolkata").tz_convert("UTC")
    return pd.DataFrame(
        {
            "time": times,
            "open": np.clip(close + rng.normal(0, 5, n), low, high),
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 50_000, n).astype("float64"),
            "oi": 1e6 + np.cumsum(rng.integers(-500, 500, n)).astype("float64"),
        }
    )


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples) / 1e6


def _pandas_ta_calls(frame: pd.DataFrame, use_talib: bool) -> Callable[[], object]:
    def run() -> object:
        return [
            frame.ta.rsi(length=14, talib=use_talib),
            frame.ta.ema(length=20, talib=use_talib),
            frame.ta.macd(fast=12, slow=26, signal=9, talib=use_talib),
            frame.ta.bbands(length=20, std=2, talib=use_talib),
            frame.ta.atr(length=14, talib=use_talib),
        ]

    return run


def _pandas_ta_study(frame: pd.DataFrame, use_talib: bool) -> Callable[[], object]:
    entries = [{"kind": s["name"], **s["parameters"], "talib": use_talib} for s in SPECS]

    def run() -> object:
        work = frame.copy()
        work.ta.study(Study(name="bench", ta=[dict(e) for e in entries], cores=0))
        return work

    return run


def _talib_direct(bars: pd.DataFrame) -> Callable[[], object]:
    def run() -> object:
        c = bars["close"].to_numpy(dtype="float64")
        h = bars["high"].to_numpy(dtype="float64")
        lo = bars["low"].to_numpy(dtype="float64")
        return [
            talib.RSI(c, 14),
            talib.EMA(c, 20),
            talib.MACD(c, 12, 26, 9),
            talib.BBANDS(c, 20, 2, 2, talib.MA_Type.SMA),
            talib.ATR(h, lo, c, 14),
        ]

    return run


def _check_equal(bars: pd.DataFrame, frame: pd.DataFrame) -> bool:
    """The engine's columns equal pandas_ta's TA-Lib-backed output exactly (sanity check of the fast path)."""
    ours = compute(bars, SPECS)
    ref = pd.concat(
        [
            frame.ta.rsi(length=14),
            frame.ta.ema(length=20),
            frame.ta.macd(fast=12, slow=26, signal=9),
            frame.ta.bbands(length=20, std=2),
            frame.ta.atr(length=14),
        ],
        axis=1,
    )
    return list(ours.columns) == list(ref.columns) and all(
        np.array_equal(ours[c].to_numpy(), ref[c].to_numpy(dtype="float64"), equal_nan=True)
        for c in ref.columns
    )


def run(repeats: int = 300, n_bars: int = N_BARS) -> dict[str, Any]:
    """Time every variant (median ms per evaluation of all five indicators) and return the figures."""
    bars = make_bars(n_bars)
    frame = bars.set_index(pd.DatetimeIndex(bars["time"]).tz_convert("Asia/Kolkata")).drop(columns="time")
    compiled = compile_indicators(SPECS)
    slow_repeats = max(20, repeats // 5)  # pandas_ta native is ~10x slower; fewer samples keep the run short

    ms = {
        "engine_compute_latest": _median_ms(lambda: compute_latest(bars, SPECS), repeats),
        "engine_compute": _median_ms(lambda: compute(bars, SPECS), repeats),
        "engine_compute_latest_precompiled": _median_ms(lambda: compiled.compute_latest(bars), repeats),
        "pandas_ta_native_calls": _median_ms(_pandas_ta_calls(frame, False), slow_repeats),
        "pandas_ta_native_study": _median_ms(_pandas_ta_study(frame, False), slow_repeats),
        "pandas_ta_talib_calls": _median_ms(_pandas_ta_calls(frame, True), repeats),
        "pandas_ta_talib_study": _median_ms(_pandas_ta_study(frame, True), slow_repeats),
        "talib_direct": _median_ms(_talib_direct(bars), repeats),
    }
    native = ms["pandas_ta_native_calls"]
    ratios = {
        "native_calls_over_engine_latest": native / ms["engine_compute_latest"],
        "native_calls_over_engine_compute": native / ms["engine_compute"],
        "native_study_over_engine_compute": ms["pandas_ta_native_study"] / ms["engine_compute"],
        "talib_calls_over_engine_latest": ms["pandas_ta_talib_calls"] / ms["engine_compute_latest"],
        "engine_latest_over_talib_direct": ms["engine_compute_latest"] / ms["talib_direct"],
        "engine_compute_over_talib_direct": ms["engine_compute"] / ms["talib_direct"],
    }
    worst_engine = max(ms["engine_compute_latest"], ms["engine_compute"])
    targets = {
        "engine_ms_le_1_5": worst_engine <= TARGET_MS,
        "speedup_vs_native_ge_4": min(
            ratios["native_calls_over_engine_latest"], ratios["native_calls_over_engine_compute"]
        )
        >= TARGET_SPEEDUP,
    }
    return {
        "config": {"bars": n_bars, "indicators": SPECS, "repeats": repeats, "native_repeats": slow_repeats},
        "ms_per_evaluation": ms,
        "ratios": ratios,
        "targets": targets,
        "engine_equals_pandas_ta_talib": _check_equal(bars, frame),
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pandas_ta": ta.version,
            "talib": talib.__version__,
        },
    }


def _print(result: dict[str, Any]) -> None:
    cfg = result["config"]
    print(f"indicators benchmark: {cfg['bars']} bars, RSI14 EMA20 MACD12/26/9 BBANDS20/2 ATR14")
    print(
        f"repeats: {cfg['repeats']} (pandas_ta native/study: {cfg['native_repeats']}); median ms per evaluation"
    )
    for name, value in result["ms_per_evaluation"].items():
        print(f"  {name:<36} {value:9.3f} ms")
    print("ratios:")
    for name, value in result["ratios"].items():
        print(f"  {name:<36} {value:9.2f}x")
    for name, ok in result["targets"].items():
        print(f"target {name}: {'PASS' if ok else 'FAIL'}")
    print(f"engine output equals pandas_ta (TA-Lib backend): {result['engine_equals_pandas_ta_talib']}")
    print("environment:", json.dumps(result["environment"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--bars", type=int, default=N_BARS)
    parser.add_argument("--json", action="store_true", help="print the result dict as JSON")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats, n_bars=args.bars)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print(result)
    return 0 if all(result["targets"].values()) and result["engine_equals_pandas_ta_talib"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
