"""Indicator engine: TA-Lib fast path vs TA-Lib and pandas_ta, references for SUPERTREND/VWAP, validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta
import pytest
import talib

from indicators.catalogue import indicator_parameters, valid_indicator_names
from indicators.compute import build_study, compile_indicators, compute, compute_latest
from indicators.specs import IndicatorConfigError, validate_indicators
from indicators.talib_path import FAST_INDICATORS

IST = "Asia/Kolkata"
# pandas_ta itself (called directly below as the reference) trips pandas 3 deprecation warnings.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pandas_ta.*")


def make_bars(n: int = 600, seed: int = 11, freq: str = "5min", per_day: int | None = 75) -> pd.DataFrame:
    """Session bars (09:15 IST, ``per_day`` bars a business day) or continuous bars; ``time`` tz-aware UTC."""
    rng = np.random.default_rng(seed)
    if per_day is None:
        times = pd.date_range("2025-06-02 00:00", periods=n, freq=freq, tz=IST)
    else:
        days = pd.bdate_range("2025-06-02", periods=math.ceil(n / per_day))
        step = pd.Timedelta(freq)
        stamps = [d + pd.Timedelta(hours=9, minutes=15) + k * step for d in days for k in range(per_day)]
        times = pd.DatetimeIndex(stamps[:n]).tz_localize(IST)
    close = 24000 + np.cumsum(rng.normal(0, 8, n))
    spread = rng.uniform(1, 15, n)
    high = close + spread * rng.uniform(0.2, 1.0, n)
    low = close - spread * rng.uniform(0.2, 1.0, n)
    open_ = np.clip(close + rng.normal(0, 5, n), low, high)
    volume = rng.integers(1_000, 50_000, n).astype("float64")
    oi = 1e6 + np.cumsum(rng.integers(-500, 500, n)).astype("float64")
    return pd.DataFrame(
        {"time": times.tz_convert("UTC"), "open": open_, "high": high, "low": low, "close": close,
         "volume": volume, "oi": oi}
    )  # fmt: skip


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars()


def ta_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars as pandas_ta expects them: exchange-time DatetimeIndex, float columns."""
    return bars.set_index(pd.DatetimeIndex(bars["time"]).tz_convert(IST)).drop(columns="time")


def arr(bars: pd.DataFrame, col: str) -> np.ndarray:
    return bars[col].to_numpy(dtype="float64")


def assert_same(actual: pd.Series | np.ndarray, expected: np.ndarray) -> None:
    """Bit-identical including NaN positions (warm-up region)."""
    np.testing.assert_array_equal(np.asarray(actual, dtype="float64"), np.asarray(expected, dtype="float64"))


def latest_of(values: np.ndarray) -> float | None:
    v = float(values[-1])
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------------------------
# TA-Lib called directly in the test
# ---------------------------------------------------------------------------------------------------------------

CORE_SPECS: list[dict[str, Any]] = [
    {"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
    {"name": "ema", "parameters": {"length": 20}},
    {"name": "sma", "parameters": {"length": 50}},
    {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}},
    {"name": "bbands", "parameters": {"length": 20, "std": 2.0}},
    {"name": "atr", "parameters": {"length": 14}},
]


def talib_expected(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    c, h, lo = arr(bars, "close"), arr(bars, "high"), arr(bars, "low")
    macd, macd_signal, macd_hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, mid, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    return {
        "rsi_14": talib.RSI(c, timeperiod=14),
        "EMA_20": talib.EMA(c, timeperiod=20),
        "SMA_50": talib.SMA(c, timeperiod=50),
        "MACD_12_26_9": macd,
        "MACDh_12_26_9": macd_hist,
        "MACDs_12_26_9": macd_signal,
        "BBL_20_2.0": lower,
        "BBM_20_2.0": mid,
        "BBU_20_2.0": upper,
        "BBB_20_2.0": 100 * (upper - lower) / mid,
        "BBP_20_2.0": (c - lower) / (upper - lower),
        "ATRr_14": talib.ATR(h, lo, c, timeperiod=14),
    }


def test_core_indicators_equal_talib(bars: pd.DataFrame) -> None:
    out = compute(bars, CORE_SPECS)
    expected = talib_expected(bars)
    assert list(out.columns) == list(expected)
    assert out.index.equals(pd.DatetimeIndex(bars["time"]))
    for key, values in expected.items():
        assert_same(out[key], values)
    latest = compute_latest(bars, CORE_SPECS)
    assert list(latest) == list(expected)
    for key, values in expected.items():
        assert latest[key] == latest_of(values)
        assert latest[key] is not None


def test_warm_up_region(bars: pd.DataFrame) -> None:
    out = compute(bars, CORE_SPECS)
    first_valid = {k: int(np.argmax(~np.isnan(out[k].to_numpy()))) for k in out.columns}
    assert first_valid["rsi_14"] == 14
    assert first_valid["EMA_20"] == 19
    assert first_valid["SMA_50"] == 49
    assert first_valid["MACD_12_26_9"] == 33  # TA-Lib emits MACD only once the signal line exists
    assert first_valid["MACDs_12_26_9"] == 33
    assert first_valid["BBL_20_2.0"] == 19
    assert first_valid["ATRr_14"] == 14
    # warm-up in compute_latest: enough bars for RSI but not for MACD -> MACD keys are None
    short = bars.iloc[:30]
    latest = compute_latest(short, CORE_SPECS)
    expected = talib_expected(short)
    assert latest["rsi_14"] == latest_of(expected["rsi_14"]) and latest["rsi_14"] is not None
    assert latest["MACD_12_26_9"] is None and latest["SMA_50"] is None
    assert latest["BBM_20_2.0"] == latest_of(expected["BBM_20_2.0"])
    out_short = compute(short, CORE_SPECS)
    for key, values in expected.items():
        if key == "SMA_50":  # pandas_ta returns nothing below 50 bars; the engine keeps the column as NaN
            assert out_short[key].isna().all()
        else:
            assert_same(out_short[key], values)


def test_too_few_bars_keeps_keys(bars: pd.DataFrame) -> None:
    tiny = bars.iloc[:5]
    assert pandas_ta.macd(tiny["close"]) is None  # pandas_ta gives nothing at all
    out = compute(tiny, CORE_SPECS)
    assert list(out.columns) == list(talib_expected(bars)) and len(out) == 5
    assert out.isna().all().all()
    assert set(compute_latest(tiny, CORE_SPECS).values()) == {None}
    empty = compute(bars.iloc[0:0], CORE_SPECS + [{"name": "vwap"}])
    assert empty.empty and "VWAP_D" in empty.columns
    assert set(compute_latest(bars.iloc[0:0], CORE_SPECS).values()) == {None}


# ---------------------------------------------------------------------------------------------------------------
# Same columns and values as pandas_ta's own TA-Lib backend, for every fast-path indicator
# ---------------------------------------------------------------------------------------------------------------

FAST_CASES: list[tuple[str, dict[str, Any]]] = [
    ("rsi", {}),
    ("rsi", {"length": 7}),
    ("rsi", {"length": 14, "talib": True}),
    ("ema", {"length": 20}),
    ("sma", {"length": 50}),
    ("wma", {"length": 9}),
    ("dema", {"length": 12}),
    ("tema", {"length": 9}),
    ("roc", {"length": 12}),
    ("mom", {}),
    ("macd", {}),
    ("macd", {"fast": 26, "slow": 12, "signal": 5}),  # reversed: pandas_ta swaps them
    ("bbands", {}),
    ("bbands", {"length": 20, "std": 2}),  # int std -> BBL_20_2
    ("bbands", {"length": 20, "std": 2.5, "ddof": 1, "mamode": "sma"}),
    ("atr", {"length": 14}),
    ("atr", {"length": 10, "mamode": "rma"}),
    ("natr", {}),
    ("willr", {"length": 21}),
    ("cci", {"length": 20}),
    ("cci", {"c": 0.02}),
    ("mfi", {}),
    ("obv", {}),
    ("stoch", {}),
    ("stoch", {"k": 9, "d": 4, "smooth_k": 5}),
    ("adx", {}),
    ("adx", {"length": 10, "lensig": 8, "adxr_length": 3}),
    ("supertrend", {}),
    ("supertrend", {"length": 10, "multiplier": 2}),
    ("supertrend", {"length": 10, "atr_length": 14, "multiplier": 3.0}),
    ("sma", {"length": 5, "close": "oi"}),
    ("rsi", {"close": "volume"}),
]


@pytest.mark.parametrize(("name", "params"), FAST_CASES, ids=[f"{n}-{p}" for n, p in FAST_CASES])
def test_fast_path_equals_pandas_ta(bars: pd.DataFrame, name: str, params: dict[str, Any]) -> None:
    specs = [{"name": name, "parameters": params}]
    compiled = compile_indicators(specs)
    assert compiled.indicators[0].fast is not None, "expected the TA-Lib fast path"
    out = compute(bars, specs)
    ref = getattr(ta_frame(bars).ta, name)(**params)  # pandas_ta, TA-Lib backend (its default)
    ref = ref.to_frame() if isinstance(ref, pd.Series) else ref
    assert list(out.columns) == list(ref.columns)
    for col in ref.columns:
        assert_same(out[col], ref[col].to_numpy(dtype="float64"))
    latest = compute_latest(bars, specs)
    assert latest == {col: latest_of(ref[col].to_numpy(dtype="float64")) for col in ref.columns}


def test_every_fast_indicator_is_covered() -> None:
    assert {name for name, _ in FAST_CASES} == set(FAST_INDICATORS)


@pytest.mark.parametrize(
    ("name", "params"),
    [("rsi", {"talib": False}), ("kama", {}), ("trix", {}), ("atr", {"mamode": "ema"}), ("ema", {"length": 10,
     "offset": 1}), ("bbands", {"length": 20, "mamode": "ema"}), ("vwap", {}), ("kc", {}), ("aroon", {})],
)  # fmt: skip
def test_fallback_equals_pandas_ta(bars: pd.DataFrame, name: str, params: dict[str, Any]) -> None:
    specs = [{"name": name, "parameters": params}]
    assert compile_indicators(specs).indicators[0].fast is None
    out = compute(bars, specs)
    ref = getattr(ta_frame(bars).ta, name)(**params)
    ref = ref.to_frame() if isinstance(ref, pd.Series) else ref
    assert list(out.columns) == list(ref.columns)
    for col in ref.columns:
        assert_same(out[col], ref[col].to_numpy(dtype="float64"))


# ---------------------------------------------------------------------------------------------------------------
# SUPERTREND and VWAP against independent references (textbook loops, pandas_ta conventions)
# ---------------------------------------------------------------------------------------------------------------


def ref_atr(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    """Wilder ATR: TR from bar 1, seed = mean of the first n TRs (at bar n), then (prev*(n-1)+TR)/n."""
    m = len(c)
    tr = np.full(m, np.nan)
    for i in range(1, m):
        tr[i] = max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
    atr = np.full(m, np.nan)
    if m > n:
        atr[n] = sum(tr[1 : n + 1]) / n
        for i in range(n + 1, m):
            atr[i] = (atr[i - 1] * (n - 1) + tr[i]) / n
    return atr


def ref_supertrend(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int, mult: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bands = (h+l)/2 ± mult*ATR(n). A close above the previous upper band turns the trend up, below the previous
    lower band turns it down; otherwise the trend continues and only its own band may tighten (lower band can only
    rise in an up-trend, upper band only fall in a down-trend). Trend line = lower band when up, upper when down.
    pandas_ta conventions: direction starts at +1 and is NaN for the first n bars, trend NaN at bar 0."""
    atr = ref_atr(h, lo, c, n)
    upper = (h + lo) / 2 + mult * atr
    lower = (h + lo) / 2 - mult * atr
    m = len(c)
    trend, direction = np.full(m, np.nan), np.full(m, np.nan)
    long_, short = np.full(m, np.nan), np.full(m, np.nan)
    up = True
    for i in range(1, m):
        if c[i] > upper[i - 1]:
            up = True
        elif c[i] < lower[i - 1]:
            up = False
        else:
            if up and lower[i] < lower[i - 1]:
                lower[i] = lower[i - 1]
            if not up and upper[i] > upper[i - 1]:
                upper[i] = upper[i - 1]
        direction[i] = 1.0 if up else -1.0
        if up:
            trend[i] = long_[i] = lower[i]
        else:
            trend[i] = short[i] = upper[i]
    direction[:n] = np.nan
    return trend, direction, long_, short


def test_supertrend_matches_reference(bars: pd.DataFrame) -> None:
    specs = [{"name": "supertrend", "parameters": {"length": 10, "multiplier": 3.0}, "output_key": "st"}]
    out = compute(bars, specs)
    assert list(out.columns) == ["st_trend", "st_direction", "st_long", "st_short"]
    trend, direction, long_, short = ref_supertrend(
        arr(bars, "high"), arr(bars, "low"), arr(bars, "close"), 10, 3.0
    )
    for col, ref in zip(out.columns, (trend, direction, long_, short), strict=True):
        np.testing.assert_allclose(out[col].to_numpy(), ref, rtol=1e-12, atol=0, equal_nan=True)
    assert set(np.unique(direction[~np.isnan(direction)])) == {-1.0, 1.0}  # the data has both regimes
    latest = compute_latest(bars, specs)
    assert latest["st_direction"] == direction[-1]
    assert latest["st_trend"] == pytest.approx(trend[-1], rel=1e-12)
    # one of long/short is always None at the last bar
    assert (latest["st_long"] is None) != (latest["st_short"] is None)


def ref_vwap(bars: pd.DataFrame, tz: str = IST) -> np.ndarray:
    """Session VWAP: cumulative sum(typical price * volume) / cumulative volume, restarting each exchange date."""
    h, lo, c, v = (arr(bars, k) for k in ("high", "low", "close", "volume"))
    days = pd.DatetimeIndex(bars["time"]).tz_convert(tz).date
    out = np.empty(len(c))
    pv = vol = 0.0
    for i in range(len(c)):
        if i == 0 or days[i] != days[i - 1]:
            pv = vol = 0.0
        tp = (h[i] + lo[i] + c[i]) / 3.0
        pv += tp * v[i]
        vol += v[i]
        out[i] = pv / vol
    return out


def test_vwap_matches_reference(bars: pd.DataFrame) -> None:
    out = compute(bars, [{"name": "vwap", "output_key": "vwap"}])
    np.testing.assert_allclose(out["vwap"].to_numpy(), ref_vwap(bars), rtol=1e-12)
    assert compute_latest(bars, [{"name": "vwap"}])["VWAP_D"] == pytest.approx(ref_vwap(bars)[-1], rel=1e-12)


def test_vwap_resets_at_exchange_midnight_not_utc() -> None:
    hourly = make_bars(n=24 * 4, freq="1h", per_day=None)  # round the clock: IST midnight = 18:30 UTC
    out = compute(hourly, [{"name": "vwap"}])["VWAP_D"].to_numpy()
    np.testing.assert_allclose(out, ref_vwap(hourly, IST), rtol=1e-12)
    assert not np.allclose(out, ref_vwap(hourly, "UTC"))
    local = pd.DatetimeIndex(hourly["time"]).tz_convert(IST)
    first_of_day = np.flatnonzero(local.hour == 0)
    tp = (arr(hourly, "high") + arr(hourly, "low") + arr(hourly, "close")) / 3
    np.testing.assert_allclose(out[first_of_day], tp[first_of_day], rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Output keys, Study, inputs
# ---------------------------------------------------------------------------------------------------------------


def test_output_key_rules(bars: pd.DataFrame) -> None:
    specs = [
        {"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
        {"name": "macd", "output_key": "m"},
        {"name": "bbands", "parameters": {"length": 20}, "output_key": "bb"},
        {"name": "adx", "output_key": "trend"},
        {"name": "stoch", "output_key": "st"},
        {"name": "macd", "parameters": {"fast": 5, "slow": 35, "signal": 5}},
        {"name": "bbands"},
    ]
    keys = compile_indicators(specs).output_keys
    assert keys == [
        "rsi_14",
        "m_macd", "m_hist", "m_signal",
        "bb_lower", "bb_mid", "bb_upper", "bb_bandwidth", "bb_percent",
        "trend_adx", "trend_adxr", "trend_dmp", "trend_dmn",
        "st_k", "st_d", "st_hist",
        "MACD_5_35_5", "MACDh_5_35_5", "MACDs_5_35_5",
        "BBL_5_2.0", "BBM_5_2.0", "BBU_5_2.0", "BBB_5_2.0", "BBP_5_2.0",
    ]  # fmt: skip
    assert list(compute(bars, specs).columns) == keys
    assert list(compute_latest(bars, specs)) == keys


def test_build_study_reproduces_compute(bars: pd.DataFrame) -> None:
    specs = [*CORE_SPECS, {"name": "supertrend", "output_key": "st"}, {"name": "vwap"}, {"name": "kama"}]
    study = build_study(specs)
    assert isinstance(study, pandas_ta.Study)
    assert study.cores == 0
    assert study.ta[0] == {"kind": "rsi", "length": 14, "col_names": ("rsi_14",)}
    assert study.ta[3] == {"kind": "macd", "fast": 12, "slow": 26, "signal": 9}
    frame = ta_frame(bars)
    width = frame.shape[1]
    frame.ta.study(study)  # pandas_ta runs the Study itself (TA-Lib backend)
    ours = compute(bars, specs)
    theirs = frame.iloc[:, width:]
    assert list(theirs.columns) == list(ours.columns)
    for col in ours.columns:
        assert_same(ours[col], theirs[col].to_numpy(dtype="float64"))
    assert build_study(specs) is not study  # a fresh object each time (pandas_ta mutates the entries)


def test_bars_with_datetime_index(bars: pd.DataFrame) -> None:
    indexed = bars.set_index("time")
    out = compute(indexed, CORE_SPECS)
    assert out.index.equals(indexed.index)
    pd.testing.assert_frame_equal(out, compute(bars, CORE_SPECS), check_names=False, check_freq=False)
    with pytest.raises(ValueError, match="'high'"):
        compute(bars[["time", "close"]], [{"name": "atr"}])


def test_integer_columns_are_accepted(bars: pd.DataFrame) -> None:
    ints = bars.assign(volume=bars["volume"].astype("int64"))
    assert compute_latest(ints, [{"name": "mfi"}]) == compute_latest(bars, [{"name": "mfi"}])


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def errors_by_path(specs: Any, **kw: Any) -> dict[str, str]:
    return dict(validate_indicators(specs, **kw))


def test_valid_config() -> None:
    assert validate_indicators(CORE_SPECS) == []
    assert validate_indicators([]) == []
    assert validate_indicators([{"name": "RSI", "parameters": None}]) == []  # case-insensitive, null = none


def test_unknown_indicator_lists_valid_names() -> None:
    errors = errors_by_path([{"name": "rsi"}, {"name": "supertrnd"}])
    msg = errors["technical_indicators[1].name"]
    assert "unknown indicator 'supertrnd'" in msg
    assert "did you mean 'supertrend'" in msg
    assert "valid indicators:" in msg
    for name in ("rsi", "macd", "bbands", "vwap", "supertrend"):
        assert name in msg
    assert "tsignals" not in valid_indicator_names()  # needs a non-bar series input
    assert set(FAST_INDICATORS) <= set(valid_indicator_names())


def test_unknown_parameter_names_field() -> None:
    errors = errors_by_path(CORE_SPECS[:1] + [{"name": "macd", "parameters": {"fastt": 12, "slow": 26}}])
    msg = errors["technical_indicators[1].parameters.fastt"]
    assert "unknown parameter 'fastt' for macd" in msg and "did you mean 'fast'" in msg
    assert "valid parameters:" in msg and "signal" in msg
    assert list(errors) == ["technical_indicators[1].parameters.fastt"]


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"length": "14"}, "length", "must be an integer"),
        ({"length": 14.5}, "length", "must be an integer"),
        ({"length": True}, "length", "must be an integer"),
        ({"length": 0}, "length", "must be > 0"),
        ({"length": -3}, "length", "must be > 0"),
        ({"length": 10**7}, "length", "must be <="),
        ({"std": "2"}, "std", "must be a finite number"),
        ({"std": float("nan")}, "std", "must be a finite number"),
        ({"talib": "yes"}, "talib", "must be true or false"),
        ({"mamode": "foo"}, "mamode", "unknown moving average 'foo'"),
        ({"close": "vol"}, "close", "must be one of the bar columns"),
    ],
)
def test_parameter_types(params: dict[str, Any], field: str, fragment: str) -> None:
    errors = errors_by_path([{"name": "bbands", "parameters": params}])
    assert fragment in errors[f"technical_indicators[0].parameters.{field}"]


def test_duplicate_output_keys() -> None:
    errors = validate_indicators(
        [{"name": "rsi"}, {"name": "ema"}, {"name": "rsi", "parameters": {"length": 14}}]
    )
    assert errors == [
        (
            "technical_indicators[2].name",
            "duplicate output key 'RSI_14' (also produced by technical_indicators[0]); set a distinct output_key",
        )
    ]
    errors = errors_by_path([{"name": "macd"}, {"name": "ema", "output_key": "MACDs_12_26_9"}])
    assert "duplicate output key 'MACDs_12_26_9'" in errors["technical_indicators[1].output_key"]
    # an output_key fixes the clash
    assert validate_indicators([{"name": "rsi"}, {"name": "rsi", "output_key": "rsi_b"}]) == []


def test_shape_errors() -> None:
    assert errors_by_path("rsi") == {"technical_indicators": "must be a list of indicator objects, got str"}
    errors = errors_by_path(
        [
            "rsi",
            {"parameters": {}},
            {"name": "rsi", "params": {}},
            {"name": "rsi", "parameters": [14]},
            {"name": "ema", "output_key": "bad key"},
        ]
    )
    assert "must be an object" in errors["technical_indicators[0]"]
    assert "required" in errors["technical_indicators[1].name"]
    assert "unknown field" in errors["technical_indicators[2].params"]
    assert "must be an object" in errors["technical_indicators[3].parameters"]
    assert "letters, digits" in errors["technical_indicators[4].output_key"]
    assert "cfg.indicators[0].name" in errors_by_path([{"name": "nope"}], path="cfg.indicators")


def test_compute_rejects_invalid_specs(bars: pd.DataFrame) -> None:
    with pytest.raises(IndicatorConfigError) as info:
        compute(bars, [{"name": "rsi", "parameters": {"lenght": 14}}])
    assert info.value.errors[0][0] == "technical_indicators[0].parameters.lenght"
    with pytest.raises(IndicatorConfigError):
        build_study([{"name": "nope"}])


def test_parameter_catalogue() -> None:
    params = indicator_parameters("bbands")
    assert params["length"] == "int" and params["std"] == "number" and params["close"] == "source"
    assert indicator_parameters("atr")["percent"] == "bool"  # documented kwarg
    with pytest.raises(KeyError):
        indicator_parameters("nope")
