"""Start-up of the sandbox worker: import and warm up everything user code may touch, before the privilege drop.

Once the worker runs as ``nobody`` the interpreter's stdlib directory may be unreadable, so anything imported
lazily later (by user code paths in numpy/pandas/datetime/statistics) must already be in ``sys.modules``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import statistics
import traceback
import warnings

from functions.sandbox import policy, user_globals

PRELOAD_MODULES = [
    "_strptime", "calendar", "locale", "decimal", "fractions", "numbers", "statistics", "random", "bisect",
    "heapq", "copy", "pprint", "textwrap", "string", "re", "unicodedata", "zoneinfo",
    "encodings.idna", "encodings.latin_1", "encodings.ascii", "encodings.utf_8", "encodings.utf_16",
    "json.decoder", "json.encoder", "dataclasses", "enum", "weakref", "contextlib", "operator", "warnings",
    "linecache", "tokenize", "dateutil", "dateutil.parser", "dateutil.tz", "dateutil.relativedelta", "pytz",
    "tzdata", "numpy.linalg", "numpy.random", "numpy.polynomial", "numpy.fft",
]  # fmt: skip


def preload() -> None:
    """Import and warm up everything user code may touch (see module docstring)."""
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # pragma: no cover - optional
            pass
    # why: numpy/pandas load only here, after child.main() has moved the protocol pipes off fds 0/1
    import numpy as np
    import pandas as pd

    warnings.simplefilter("ignore")
    closes = np.arange(1.0, 61.0)
    idx = pd.date_range("2025-01-01 09:15", periods=60, freq="1min", tz="Asia/Kolkata")
    df = pd.DataFrame({"close": closes, "volume": closes * 10}, index=idx)
    s = df["close"]
    # Exercise common numpy / pandas / datetime paths so their lazy imports happen now.  Each step is independent
    # and failures are ignored: warm-up must never prevent the worker from starting.
    steps = [
        lambda: (np.std(closes, ddof=1), np.percentile(closes, 50), np.polyfit(closes, closes, 1)),
        lambda: (np.linalg.norm(closes), np.random.default_rng(1).normal(size=3), np.nanmean(closes)),
        lambda: (s.rolling(5).mean(), s.rolling(5).std(), s.ewm(span=5).mean(), s.expanding().max()),
        lambda: (s.pct_change(), s.diff(), s.shift(1), s.cumsum(), s.rank(), s.clip(1, 2), s.where(s > 3)),
        lambda: df.resample("5min").agg({"close": "last", "volume": "sum"}),
        lambda: (df.describe(), df.corr(), df.quantile(0.5), df.fillna(0), df.dropna(), df.round(2)),
        lambda: (df.groupby(df.index.hour)["close"].mean(), df.reset_index().to_dict("records")[:1]),
        lambda: (df.iloc[-1].to_dict(), df.tail(3).to_numpy(), s.to_list(), s.values.tolist()),
        lambda: (pd.Series(["a", "b"]).str.upper(), pd.to_numeric(pd.Series(["1", "2"]))),
        lambda: pd.to_datetime(["2025-06-26T09:15:00+05:30", "2025-06-26T09:16:00+05:30"]),
        lambda: pd.to_datetime(["2025-06-26 09:15:00", "26-06-2025 09:16"], format="mixed", dayfirst=True),
        lambda: pd.to_datetime([1750909500, 1750909560], unit="s", utc=True),
        lambda: (pd.Timestamp("2025-06-26T09:15:00+05:30").tz_convert("UTC"), pd.Timedelta("5min")),
        lambda: pd.DataFrame([{"time": "2025-06-26T09:15:00+05:30", "close": 1.0}]).set_index("time"),
        lambda: dt.datetime.strptime("2025-06-26 09:15", "%Y-%m-%d %H:%M"),
        lambda: dt.datetime.fromisoformat("2025-06-26T09:15:00+05:30").astimezone(dt.UTC),
        lambda: (statistics.stdev([1.0, 2.0, 3.0]), statistics.correlation([1, 2, 3], [1, 2, 4])),
        lambda: json.dumps(json.loads('{"a": [1, 2.5, null]}')),
        lambda: "{:.2f} {!r}".format(1.234, "x"),
    ]
    for step in steps:
        try:
            step()
        except Exception:  # pragma: no cover - depends on library versions
            pass
    user_globals.preload()
    policy.compile_source("import numpy as np\ndef f(t, b, p):\n    return {'x': np.mean([1.0]) ** 2}\n")
    traceback.extract_tb(None)
