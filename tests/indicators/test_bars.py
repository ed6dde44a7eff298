"""Bars: alignment, the reference resampler (vs an independent pandas resample), merging, SQL parameters."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import pandas as pd
import pytest

from indicators.bars import (
    BAR_COLUMNS,
    bar_end,
    bucket_start,
    merge_bars,
    resample_ticks,
    session_open_utc,
)
from indicators.sql_buckets import sql_bucket_expression, sql_bucket_params

IST = "Asia/Kolkata"
# Thu, Fri, (weekend), Mon 30 Jun, Tue 1 Jul: spans a week and a month boundary.
DAYS = ["2025-06-26", "2025-06-27", "2025-06-30", "2025-07-01"]
GAP = (pd.Timedelta(hours=11), pd.Timedelta(hours=11, minutes=30))  # no ticks 11:00-11:30 on the first day


def make_ticks(seed: int = 7, per_day: int = 600) -> pd.DataFrame:
    """Ticks over 4 exchange days, rows shuffled; cumulative day volume; some ticks without OI."""
    rng = np.random.default_rng(seed)
    frames = []
    price = 24000.0
    for d, day in enumerate(DAYS):
        midnight = pd.Timestamp(day, tz=IST)
        # milliseconds after 09:15 within the session (09:15-15:30 = 22_500 s), unique
        ms = np.sort(rng.choice(22_500_000, size=per_day, replace=False))
        offsets = pd.to_timedelta(ms, unit="ms") + pd.Timedelta(hours=9, minutes=15)
        if d == 0:
            offsets = offsets[(offsets < GAP[0]) | (offsets >= GAP[1])]
            # explicit boundary ticks: exactly at the open and one second before it
            extra = [pd.Timedelta(hours=9, minutes=15), pd.Timedelta(hours=9, minutes=14, seconds=59)]
        else:
            extra = [pd.Timedelta(hours=9, minutes=3, seconds=20)]  # pre-open tick
        offsets = offsets.union(pd.TimedeltaIndex(extra))
        n = len(offsets)
        price = price + np.cumsum(rng.normal(0, 3, n))
        qty = rng.integers(1, 50, n).astype("float64")
        oi = rng.integers(100_000, 200_000, n).astype("float64")
        oi[rng.random(n) < 0.2] = np.nan
        frames.append(
            pd.DataFrame({"time": midnight + offsets, "ltp": price, "volume": np.cumsum(qty), "oi": oi})
        )
        price = float(price[-1])
    ticks = pd.concat(frames, ignore_index=True)
    ticks["time"] = ticks["time"].dt.tz_convert("UTC")
    return ticks.sample(frac=1.0, random_state=3).reset_index(drop=True)


def reference_bars(ticks: pd.DataFrame, tf: str) -> pd.DataFrame:
    """Independent reference: pandas resample per exchange date with origin = that date's 09:15 IST."""
    df = ticks.sort_values("time", kind="stable")
    local = df.set_index(df["time"].dt.tz_convert(IST)).drop(columns="time")
    if tf.endswith("min"):
        parts = []
        for day, g in local.groupby(local.index.date):
            origin = pd.Timestamp(f"{day} 09:15", tz=IST)
            r = g.resample(tf, origin=origin, label="left", closed="left")
            bars = pd.DataFrame(
                {
                    "open": r["ltp"].first(),
                    "high": r["ltp"].max(),
                    "low": r["ltp"].min(),
                    "close": r["ltp"].last(),
                    "cum": r["volume"].last(),
                    "oi": r["oi"].last(),
                }
            ).dropna(subset=["open"])
            # per-bar volume: last cumulative minus the previous bar's (same day); first bar: its cumulative
            bars["volume"] = bars["cum"].diff().fillna(bars["cum"])
            parts.append(bars)
        out = pd.concat(parts)
    else:
        freq = {"1d": "D", "1w": "W-MON", "1M": "MS"}[tf]
        kw = {"label": "left", "closed": "left"} if freq == "W-MON" else {}
        r = local.resample(freq, **kw)
        out = pd.DataFrame(
            {
                "open": r["ltp"].first(),
                "high": r["ltp"].max(),
                "low": r["ltp"].min(),
                "close": r["ltp"].last(),
                "oi": r["oi"].last(),
            }
        )
        day_volume = local["volume"].groupby(local.index.normalize()).last()  # day total = last cumulative
        out["volume"] = day_volume.resample(freq, **kw).sum()
        out = out.dropna(subset=["open"])
    out.index = out.index.tz_convert("UTC")
    out.index.name = "time"
    return out.reset_index()[list(BAR_COLUMNS)]


def _local(ts: pd.Timestamp) -> str:
    return ts.tz_convert(IST).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return make_ticks()


@pytest.mark.parametrize(("tf", "freq"), [("1m", "1min"), ("5m", "5min"), ("7m", "7min"), ("1h", "60min")])
def test_intraday_bars_equal_reference(ticks: pd.DataFrame, tf: str, freq: str) -> None:
    bars = resample_ticks(ticks, tf)
    expected = reference_bars(ticks, freq)
    pd.testing.assert_frame_equal(bars, expected, check_exact=True)
    assert str(bars["time"].dt.tz) == "UTC"
    assert bars["time"].is_monotonic_increasing


@pytest.mark.parametrize("tf", ["1d", "1w", "1M"])
def test_calendar_bars_equal_reference(ticks: pd.DataFrame, tf: str) -> None:
    bars = resample_ticks(ticks, tf)
    expected = reference_bars(ticks, tf)
    pd.testing.assert_frame_equal(bars, expected, check_exact=True)


def test_calendar_bar_starts(ticks: pd.DataFrame) -> None:
    days = resample_ticks(ticks, "1d")["time"].map(_local).tolist()
    assert days == [f"{d} 00:00:00" for d in DAYS]
    weeks = resample_ticks(ticks, "1w")["time"].map(_local).tolist()
    assert weeks == ["2025-06-23 00:00:00", "2025-06-30 00:00:00"]  # Mondays
    months = resample_ticks(ticks, "1M")["time"].map(_local).tolist()
    assert months == ["2025-06-01 00:00:00", "2025-07-01 00:00:00"]
    # daily volume is the day's last cumulative traded quantity
    daily = resample_ticks(ticks, "1d")
    local_day = ticks["time"].dt.tz_convert(IST).dt.date
    assert daily["volume"].tolist() == ticks.groupby(local_day)["volume"].max().tolist()


def test_session_alignment_and_pre_open(ticks: pd.DataFrame) -> None:
    bars = resample_ticks(ticks, "7m")
    starts = bars["time"].map(_local)
    first_day = starts[starts.str.startswith(DAYS[0])].tolist()
    # 09:14:59 goes to the bucket counted backwards from the open: [09:08, 09:15)
    assert first_day[:2] == [f"{DAYS[0]} 09:08:00", f"{DAYS[0]} 09:15:00"]
    pre = bars.iloc[0]
    open_tick = ticks.loc[ticks["time"].map(_local) == f"{DAYS[0]} 09:14:59"].iloc[0]
    assert pre["open"] == pre["close"] == open_tick["ltp"]
    # every session bar on every day sits on the 7-minute grid from that day's 09:15
    for day in DAYS:
        open_ = pd.Timestamp(f"{day} 09:15", tz=IST)
        day_bars = bars[bars["time"].dt.tz_convert(IST).dt.date.astype(str) == day]
        session = day_bars[day_bars["time"] >= open_]
        assert session["time"].iloc[0] == open_
        minutes = (session["time"] - open_).dt.total_seconds() / 60
        assert (minutes % 7 == 0).all()
    # day 2 pre-open tick at 09:03:20 -> [09:01, 09:08)
    assert f"{DAYS[1]} 09:01:00" in set(starts)


@pytest.mark.parametrize(
    ("local_time", "tf", "expected"),
    [
        ("09:14:59", "7m", "09:08:00"),
        ("09:15:00", "7m", "09:15:00"),
        ("09:21:59.999", "7m", "09:15:00"),
        ("09:22:00", "7m", "09:22:00"),
        ("09:14:59", "1h", "08:15:00"),
        ("10:14:59", "1h", "09:15:00"),
        ("15:29:00", "1h", "15:15:00"),
        ("09:16:00", "13m", "09:15:00"),
        ("09:28:00", "custom_13", "09:28:00"),
        ("23:59:00", "1d", "00:00:00"),
        ("00:10:00", "1h", "00:15:00"),  # counted backwards from 09:15: [23:15 prev day, 00:15)
    ],
)
def test_bucket_start_scalar(local_time: str, tf: str, expected: str) -> None:
    ts = pd.Timestamp(f"2025-06-26 {local_time}", tz=IST)
    start = bucket_start(ts, tf)
    assert isinstance(start, pd.Timestamp)
    assert str(start.tz) == "UTC"
    if local_time == "00:10:00":
        assert _local(start) == "2025-06-25 23:15:00"
    else:
        assert _local(start) == f"2025-06-26 {expected}"


def test_bucket_start_shapes_and_overrides() -> None:
    idx = pd.DatetimeIndex(["2025-06-26 09:20", "2025-06-26 10:01"], tz=IST, name="t")
    out = bucket_start(idx, "5m")
    assert isinstance(out, pd.DatetimeIndex) and out.name == "t" and str(out.tz) == "UTC"
    assert [_local(x) for x in out] == ["2025-06-26 09:20:00", "2025-06-26 10:00:00"]
    series = pd.Series(idx.tz_convert("UTC"), index=[10, 20], name="when")
    s_out = bucket_start(series, "1h")
    assert list(s_out.index) == [10, 20] and s_out.name == "when"
    assert [_local(x) for x in s_out] == ["2025-06-26 09:15:00", "2025-06-26 09:15:00"]
    # other session open and time zone
    assert _local(bucket_start(idx, "1h", session_open="09:00")[1]) == "2025-06-26 10:00:00"
    utc = bucket_start(pd.Timestamp("2025-06-26 10:01", tz="UTC"), "1h", session_open=time(9, 30), tz="UTC")
    assert utc == pd.Timestamp("2025-06-26 09:30", tz="UTC")
    # naive times are refused
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_start(pd.Timestamp("2025-06-26 09:20"), "5m")


def test_late_tick_lands_in_its_own_bar(ticks: pd.DataFrame) -> None:
    base = resample_ticks(ticks, "7m")
    local = ticks["time"].dt.tz_convert(IST)
    day0 = local.dt.date.astype(str) == DAYS[0]
    before_gap = ticks[day0 & (local < pd.Timestamp(f"{DAYS[0]} 11:00", tz=IST))]["volume"].max()
    late_time = pd.Timestamp(f"{DAYS[0]} 11:12:30", tz=IST).tz_convert("UTC")
    late = pd.DataFrame({"time": [late_time], "ltp": [12345.5], "volume": [before_gap], "oi": [1.0]})
    with_late = pd.concat([ticks, late], ignore_index=True)  # arrives last, out of time order
    bars = resample_ticks(with_late, "7m")
    pd.testing.assert_frame_equal(bars, reference_bars(with_late, "7min"), check_exact=True)
    # 11:12:30 on the 7m grid from 09:15 (09:15 + 16 * 7 min) -> [11:07, 11:14)
    row = bars[bars["time"] == pd.Timestamp(f"{DAYS[0]} 11:07", tz=IST)]
    assert len(row) == 1
    assert row[["open", "high", "low", "close"]].iloc[0].tolist() == [12345.5] * 4
    assert row["volume"].iloc[0] == 0.0 and row["oi"].iloc[0] == 1.0
    assert len(bars) == len(base) + 1
    others = bars[bars["time"] != row["time"].iloc[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, base)


def test_late_tick_with_stale_cumulative_volume(ticks: pd.DataFrame) -> None:
    late_time = pd.Timestamp(f"{DAYS[2]} 14:00:00.5", tz=IST).tz_convert("UTC")
    late = pd.DataFrame({"time": [late_time], "ltp": [24000.0], "volume": [3.0], "oi": [np.nan]})
    bars = resample_ticks(pd.concat([ticks, late], ignore_index=True), "5m")
    assert (bars["volume"] >= 0).all()
    daily = bars.groupby(bars["time"].dt.tz_convert(IST).dt.date)["volume"].sum()
    local_day = ticks["time"].dt.tz_convert(IST).dt.date
    assert daily.tolist() == ticks.groupby(local_day)["volume"].max().tolist()


def test_per_tick_volume_mode_and_aliases() -> None:
    t0 = pd.Timestamp("2025-06-26 09:15", tz=IST)
    ticks = pd.DataFrame(
        {
            "ltt": [t0 + pd.Timedelta(seconds=s) for s in (0, 10, 70, 130)],
            "last": [10.0, 12.0, 11.0, 9.0],
            "ttq": [5, 7, 1, 2],
            "OI": [1, 2, 3, np.nan],
        }
    )
    bars = resample_ticks(ticks, "1m", volume_mode="per_tick")
    assert bars["volume"].tolist() == [12.0, 1.0, 2.0]
    assert bars["oi"].iloc[:2].tolist() == [2.0, 3.0] and np.isnan(bars["oi"].iloc[2])  # last non-null OI
    assert bars["open"].tolist() == [10.0, 11.0, 9.0] and bars["high"].tolist() == [12.0, 11.0, 9.0]
    cum = resample_ticks(ticks.assign(ttq=[5, 12, 13, 15]), "1m")
    assert cum["volume"].tolist() == [12.0, 1.0, 2.0]
    no_volume = resample_ticks(ticks[["ltt", "last"]], "1m")
    assert no_volume["volume"].isna().all() and no_volume["oi"].isna().all()
    empty = resample_ticks(ticks.iloc[0:0], "1m")
    assert list(empty.columns) == list(BAR_COLUMNS) and empty.empty
    with pytest.raises(ValueError, match="price column"):
        resample_ticks(ticks[["ltt"]], "1m")


def test_merge_bars() -> None:
    t = pd.date_range("2025-06-26 09:15", periods=3, freq="5min", tz=IST).tz_convert("UTC")
    db = pd.DataFrame(
        {
            "time": t,
            "open": [1.0, 2.0, 3.0],
            "high": [2.0, 3.0, 4.0],
            "low": [0.5, 1.5, 2.5],
            "close": [1.5, 2.5, 3.5],
            "volume": [10.0, 20.0, 5.0],
            "oi": [100.0, 110.0, 120.0],
        }
    )
    # same bucket as the last database bar: combined
    live = {"time": t[2], "open": 3.2, "high": 4.5, "low": 2.8, "close": 4.1, "volume": 9.0, "oi": np.nan}
    merged = merge_bars(db, live)
    assert len(merged) == 3
    assert merged.iloc[2][["open", "high", "low", "close", "volume", "oi"]].tolist() == [
        3.0, 4.5, 2.5, 4.1, 9.0, 120.0,
    ]  # fmt: skip
    # a newer bucket is appended (ISO time with offset accepted)
    nxt = {
        "time": "2025-06-26T09:30:00+05:30",
        "open": 4,
        "high": 5,
        "low": 3,
        "close": 4.5,
        "volume": 3,
        "oi": 1,
    }
    appended = merge_bars(db, nxt)
    assert len(appended) == 4 and appended["time"].iloc[3] == pd.Timestamp("2025-06-26 09:30", tz=IST)
    assert str(appended["time"].dt.tz) == "UTC"
    assert appended["time"].is_monotonic_increasing
    # None / empty leave the database bars unchanged
    pd.testing.assert_frame_equal(merge_bars(db, None), db)
    pd.testing.assert_frame_equal(merge_bars(db, pd.Series(live)).iloc[:2], db.iloc[:2])
    # merging into no database bars
    only = merge_bars(db.iloc[0:0], nxt)
    assert len(only) == 1 and only["close"].iloc[0] == 4.5


def _date_bin(times: pd.Series, stride: str, origin: str) -> pd.Series:
    """Python model of PostgreSQL date_bin(stride, time, origin) (floor semantics)."""
    size = pd.Timedelta(stride.replace("minutes", "min").replace("days", "D").replace("day", "D"))
    o = pd.Timestamp(origin)
    return ((times - o) // size) * size + o


@pytest.mark.parametrize("tf", ["1m", "5m", "15m", "30m", "1h", "2h", "4h", "1d", "1w"])
def test_sql_constant_origin_matches_for_day_dividing_strides(ticks: pd.DataFrame, tf: str) -> None:
    stride, origin = sql_bucket_params(tf)
    expected = bucket_start(ticks["time"], tf)
    got = _date_bin(ticks["time"], stride, origin)
    assert (got == expected).all()


def test_sql_params_and_expression() -> None:
    assert sql_bucket_params("7m") == ("7 minutes", "2000-01-03T09:15:00+05:30")
    assert sql_bucket_params("1h", session_open="09:00") == ("60 minutes", "2000-01-03T09:00:00+05:30")
    assert sql_bucket_params("1d") == ("1 day", "2000-01-03T00:00:00+05:30")
    assert sql_bucket_params("1w") == ("7 days", "2000-01-03T00:00:00+05:30")
    assert sql_bucket_params("1M") == ("1 month", "2000-01-01T00:00:00+05:30")
    expr = sql_bucket_expression("7m", column="ts")
    assert expr.startswith("date_bin(interval '7 minutes', ts, ")
    assert "date_trunc('day', (ts AT TIME ZONE 'Asia/Kolkata'))" in expr
    assert "interval '9 hours 15 minutes 0 seconds'" in expr
    assert (
        sql_bucket_expression("1w")
        == "(date_trunc('week', (time AT TIME ZONE 'Asia/Kolkata')) AT TIME ZONE 'Asia/Kolkata')"
    )
    assert sql_bucket_expression("1M").startswith("(date_trunc('month'")


def test_constant_origin_drifts_for_7m(ticks: pd.DataFrame) -> None:
    """Documented: 7m does not divide a day, so a constant origin is wrong after day one (use the expression)."""
    stride, origin = sql_bucket_params("7m")
    got = _date_bin(ticks["time"], stride, origin)
    assert not (got == bucket_start(ticks["time"], "7m")).all()


def test_session_open_and_bar_end() -> None:
    assert session_open_utc(date(2025, 6, 26)) == pd.Timestamp("2025-06-26 03:45", tz="UTC")
    start = pd.Timestamp("2025-06-26 09:15", tz=IST).tz_convert("UTC")
    assert bar_end(start, "7m") == start + pd.Timedelta(minutes=7)
    month = pd.Timestamp("2025-06-01", tz=IST).tz_convert("UTC")
    assert bar_end(month, "1M") == pd.Timestamp("2025-07-01", tz=IST)
