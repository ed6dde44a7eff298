"""Shared helpers of the bars/history tests (no tests here; TA-Lib's own functions as the indicators' reference): realistic ticks and an independent pandas resample.

The reference resampler below is written with plain pandas (``resample`` with the session open of each exchange
date as ``origin``), not with `signals.bars.store` nor `indicators.bars`: alignment to 09:15 Asia/Kolkata per
exchange date (pre-open ticks counted backwards from the open), daily bars per exchange date, weekly from Monday,
monthly from the 1st; volume = the day-cumulative feed volume turned into traded quantity per bar (running maximum
per exchange date, differenced, summed per bar); oi = last non-null open interest.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import talib

IST = "Asia/Kolkata"
SESSION_OPEN = pd.Timedelta(hours=9, minutes=15)
FUTURE = "NSE@NIFTY@futures@2025-07-31"


def session_days(first: date, count: int) -> list[date]:
    """``count`` weekdays from ``first``."""
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def make_ticks(days: list[date], key: str = FUTURE, seed: int = 7, mean_gap_s: float = 20.0,
               pre_open: bool = True, midnight_on: date | None = None, start_price: float = 24000.0,
               volume_gaps: bool = True) -> list[dict[str, Any]]:
    """Feed-like ticks (dicts with ``instrument_key, ts, ltp, volume, oi``), sorted by time: each day from 09:00
    (pre-open, with ``pre_open``) or 09:15 to 15:30 IST at irregular gaps, cumulative day volume (sometimes
    missing), OI (sometimes missing). With ``midnight_on``, that evening also trades 23:40–00:20 IST."""
    rng = np.random.default_rng(seed)
    zone = pd.Timestamp(0, tz=IST).tz
    price = start_price
    out: list[dict[str, Any]] = []
    cum: dict[date, int] = {}

    def session(start: datetime, end: datetime) -> None:
        nonlocal price
        t = start
        while True:
            t += timedelta(seconds=float(rng.exponential(mean_gap_s)) + 0.001)
            if t >= end:
                return
            price = max(1.0, price + float(rng.normal(0, 4.0)))
            local_day = t.astimezone(zone).date()
            cum[local_day] = cum.get(local_day, 0) + int(rng.integers(0, 400))
            volume = None if volume_gaps and rng.random() < 0.04 else cum[local_day]
            oi = None if rng.random() < 0.08 else int(5_000_000 + rng.integers(-20_000, 20_000))
            out.append({"instrument_key": key, "ts": round(t.timestamp(), 3), "ltp": round(price, 2),
                        "volume": volume, "oi": oi})

    for day in days:
        opening = datetime(day.year, day.month, day.day, 9, 0 if pre_open else 15, tzinfo=zone)
        session(opening, datetime(day.year, day.month, day.day, 15, 30, tzinfo=zone))
        if midnight_on == day:
            session(datetime(day.year, day.month, day.day, 23, 40, tzinfo=zone),
                    datetime(day.year, day.month, day.day, 23, 40, tzinfo=zone) + timedelta(minutes=40))
    out.sort(key=lambda t: t["ts"])
    return out


def ticks_frame(ticks: list[dict[str, Any]]) -> pd.DataFrame:
    """Ticks in bar order: by time, ticks of one instant by ``source_id`` (Python's str order, the byte order of
    the service's ``COLLATE "C"``) where they have one."""
    frame = pd.DataFrame({
        "time": pd.to_datetime(np.array([t["ts"] for t in ticks]), unit="s", utc=True),
        "source_id": [t.get("source_id", "") for t in ticks],
        "ltp": [float(t["ltp"]) for t in ticks],
        "volume": [np.nan if t.get("volume") is None else float(t["volume"]) for t in ticks],
        "oi": [np.nan if t.get("oi") is None else float(t["oi"]) for t in ticks],
    })
    frame = frame.sort_values(["time", "source_id"], kind="stable").reset_index(drop=True)
    return frame.drop(columns="source_id")


def _per_bar_volume(frame: pd.DataFrame, days: pd.Series) -> pd.Series:
    running = frame["volume"].groupby(days).cummax()
    running = running.groupby(days).ffill()
    previous = running.groupby(days).shift(1).fillna(0.0)
    return running - previous


def _aggregate(frame: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    grouped = frame.assign(label=labels).groupby("label", sort=True)
    out = pd.DataFrame({
        "open": grouped["ltp"].first(), "high": grouped["ltp"].max(), "low": grouped["ltp"].min(),
        "close": grouped["ltp"].last(), "volume": grouped["inc"].sum(min_count=1), "oi": grouped["oi"].last(),
    })
    out.index.name = "time"
    return out.reset_index()


def reference_bars(ticks: list[dict[str, Any]], timeframe: str) -> pd.DataFrame:
    """Bars of ``timeframe`` (``1m``…``Nm``, ``Nh``, ``1d``, ``1w``, ``1M``) computed independently with pandas."""
    frame = ticks_frame(ticks)
    local = frame["time"].dt.tz_convert(IST)
    days = local.dt.normalize()
    frame["inc"] = _per_bar_volume(frame, days).to_numpy()
    if timeframe.endswith("m") and not timeframe.endswith("M") or timeframe.endswith("h"):
        minutes = int(timeframe[:-1]) * (60 if timeframe.endswith("h") else 1)
        pieces = []
        for day, part in frame.groupby(days, sort=True):
            origin = pd.Timestamp(day) + SESSION_OPEN
            if origin.tzinfo is None:
                origin = origin.tz_localize(IST)
            res = part.set_index("time").resample(f"{minutes}min", origin=origin.tz_convert("UTC"))
            counts = res["ltp"].count()
            bars = pd.DataFrame({
                "open": res["ltp"].first(), "high": res["ltp"].max(), "low": res["ltp"].min(),
                "close": res["ltp"].last(), "volume": res["inc"].sum(min_count=1), "oi": res["oi"].last(),
            })[counts > 0]
            bars.index.name = "time"
            pieces.append(bars.reset_index())
        joined = pd.concat(pieces, ignore_index=True)
        # the same bar start from two exchange dates (ticks on both sides of midnight): one bar
        joined = joined.groupby("time", sort=True).agg(
            open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
            volume=("volume", lambda s: s.sum(min_count=1)), oi=("oi", "last")).reset_index()
        return joined[["time", "open", "high", "low", "close", "volume", "oi"]]
    if timeframe == "1d":
        labels = days
    elif timeframe == "1w":
        labels = days - pd.to_timedelta(days.dt.day_of_week, unit="D")
    elif timeframe == "1M":
        labels = days - pd.to_timedelta(days.dt.day - 1, unit="D")
    else:
        raise ValueError(timeframe)
    out = _aggregate(frame, labels)
    out["time"] = pd.DatetimeIndex(out["time"]).tz_convert("UTC")
    return out[["time", "open", "high", "low", "close", "volume", "oi"]]


def as_frame(bars: list[dict[str, Any]]) -> pd.DataFrame:
    """API/provider bars (dicts with ISO times) as a frame comparable with :func:`reference_bars`."""
    frame = pd.DataFrame(bars, columns=["time", "open", "high", "low", "close", "volume", "oi"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("open", "high", "low", "close", "volume", "oi"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def assert_same_bars(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(got) == len(expected), f"{len(got)} bars, expected {len(expected)}"
    got_times = pd.DatetimeIndex(got["time"]).tz_convert("UTC").as_unit("s")
    expected_times = pd.DatetimeIndex(expected["time"]).tz_convert("UTC").as_unit("s")
    assert list(got_times) == list(expected_times)
    for column in ("open", "high", "low", "close", "volume", "oi"):
        np.testing.assert_allclose(got[column].to_numpy(dtype="float64"),
                                   expected[column].to_numpy(dtype="float64"), rtol=1e-12, atol=1e-9,
                                   equal_nan=True, err_msg=column)


def feed_bodies(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ticks as feed messages (what arrives on a stream)."""
    out = []
    for t in ticks:
        body = {"instrument_key": t["instrument_key"], "ltp": t["ltp"],
                "ltt": datetime.fromtimestamp(t["ts"], UTC).isoformat()}
        if t.get("volume") is not None:
            body["volume"] = t["volume"]
        if t.get("oi") is not None:
            body["oi"] = t["oi"]
        out.append(body)
    return out


def normalised_batch(ticks: list[dict[str, Any]], first_id: int = 1,
                     stream: str = "tick_stream:NSE@NIFTY") -> list[dict[str, Any]]:
    """Ticks as the pipeline receives them (parsed, with a stream source id each)."""
    from tests.factories import normalised

    return [normalised(body, f"{stream}/{first_id + i}-0") for i, body in enumerate(feed_bodies(ticks))]


def with_source_ids(ticks: list[dict[str, Any]], first_id: int = 1,
                    stream: str = "tick_stream:NSE@NIFTY") -> list[dict[str, Any]]:
    """The ticks with the source ids :func:`normalised_batch` gives them (for references that order ties by it)."""
    return [{**t, "source_id": f"{stream}/{first_id + i}-0"} for i, t in enumerate(ticks)]


def store(ticks: list[dict[str, Any]], first_id: int = 1) -> int:
    """Store ticks directly (as the pipeline's storage step does)."""
    from signals import storage

    return storage.store_ticks(normalised_batch(ticks, first_id))


# The indicators the history and pipeline tests ask for, and the same computed by TA-Lib's own functions.
SPECS = [
    {"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
    {"name": "ema", "parameters": {"length": 20}},
    {"name": "sma", "parameters": {"length": 10}},
    {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}, "output_key": "macd"},
    {"name": "bbands", "parameters": {"length": 20, "std": 2}, "output_key": "bb"},
    {"name": "atr", "parameters": {"length": 14}},
]


def talib_columns(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c = (bars[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    del o
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, mid, lower = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
    return {"rsi_14": talib.RSI(c, 14), "EMA_20": talib.EMA(c, 20), "SMA_10": talib.SMA(c, 10),
            "macd_macd": macd, "macd_signal": signal, "macd_hist": hist, "bb_lower": lower, "bb_mid": mid,
            "bb_upper": upper, "ATRr_14": talib.ATR(h, lo, c, 14)}
