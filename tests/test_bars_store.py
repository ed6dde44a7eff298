"""Bars served by signals.bars.store from ticks stored in PostgreSQL (through the pipeline) equal an independent
pandas resample of the same ticks: every timeframe, session alignment, pre-open and midnight ticks, the Redis
cache, the open bar kept in Redis, late ticks, replays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import keys
from indicators.bars import bucket_start, merge_bars, resample_ticks
from signals.bars import rollup, timescale
from signals.bars.grid import Alignment, Grid
from signals.bars.open_bar import OpenBar
from signals.bars.rows import bar_dicts, bars_frame, merge_open_bar
from signals.bars.store import BarsService, recent_bars
from signals.pipeline.batch import process_batch
from tests.bars_helpers import (
    FUTURE,
    as_frame,
    assert_same_bars,
    feed_bodies,
    make_ticks,
    normalised_batch,
    reference_bars,
    session_days,
    ticks_frame,
)
from tests.factories import create_config, normalised

pytestmark = pytest.mark.django_db
DAYS = [date(2025, 6, 19), date(2025, 6, 20), date(2025, 6, 23), date(2025, 6, 30), date(2025, 7, 1)]
TIMEFRAMES = ["1m", "5m", "7m", "13m", "1h", "1d", "1w", "1M"]
SPELLINGS = {"custom_13": "13m", "5minute": "5m", "1hour": "1h", "1day": "1d"}


def feed(ticks: list[dict[str, Any]], batch: int = 400, first_id: int = 1) -> None:
    for i in range(0, len(ticks), batch):
        process_batch(normalised_batch(ticks[i:i + batch], first_id + i))


def everything(service: BarsService, timeframe: str, key: str = FUTURE) -> pd.DataFrame:
    lo = datetime(2025, 5, 1, tzinfo=UTC).timestamp()
    hi = datetime(2025, 8, 1, tzinfo=UTC).timestamp()
    return bars_frame(service.bars(key, timeframe, lo, hi))


def sql_on_ticks(ctx: CaptureQueriesContext) -> int:
    """Queries that aggregate bars: over raw ticks, the one-minute rollup (plain PostgreSQL) or a continuous
    aggregate (TimescaleDB)."""
    sources = ("signal_ticks", rollup.TABLE, *timescale.CAGGS)
    return sum(any(source in q["sql"] for source in sources) for q in ctx.captured_queries)


def test_grid_agrees_with_indicators_bucket_start() -> None:
    times = pd.DatetimeIndex(ticks_frame(make_ticks([date(2025, 6, 20)], midnight_on=date(2025, 6, 20)))["time"])
    extra = pd.DatetimeIndex(["2025-06-20T03:44:59.999+00:00", "2025-06-20T03:45:00+00:00",
                              "2025-06-29T18:29:59+00:00", "2025-06-29T18:30:00+00:00"])
    times = times.append(extra)
    for timeframe in ["1m", "5m", "7m", "13m", "90m", "1h", "4h", "1d", "1w", "1M"]:
        grid = Grid(timeframe, Alignment(time(9, 15), "Asia/Kolkata"))
        expected = bucket_start(times, timeframe).asi8 // 1_000_000_000
        got = np.array([grid.bucket(t.timestamp()) for t in times])
        assert (got == expected).all(), timeframe


@pytest.mark.parametrize("timeframe", TIMEFRAMES + list(SPELLINGS))
def test_bars_from_pipeline_ticks_equal_a_pandas_resample(timeframe: str, r: Any) -> None:
    ticks = make_ticks(DAYS, midnight_on=date(2025, 6, 20))
    feed(ticks)
    service = BarsService(r)
    expected = reference_bars(ticks, SPELLINGS.get(timeframe, timeframe))
    first = everything(service, timeframe)
    assert_same_bars(first, expected)
    # the same through the other engineer's reference resampler (one convention for the whole service)
    assert_same_bars(first, resample_ticks(ticks_frame(ticks), timeframe))
    # second read: from the Redis cache; only the bars of the last SIGNAL_BARS_SETTLE_S of ticks (not settled:
    # nothing reports this instrument's late ticks) are aggregated again, in one query
    with CaptureQueriesContext(connection) as queries:
        again = everything(service, timeframe)
    assert_same_bars(again, expected)
    assert sql_on_ticks(queries) == 1


def test_session_alignment_and_pre_open_bars(r: Any) -> None:
    ticks = make_ticks([date(2025, 6, 20)], seed=3)
    feed(ticks)
    bars = everything(BarsService(r), "7m")
    local = pd.DatetimeIndex(bars["time"]).tz_convert("Asia/Kolkata")
    assert "09:15" in set(local.strftime("%H:%M"))  # the first session bar starts at the open
    assert local[0].strftime("%H:%M") == "08:54"  # a 09:00 pre-open tick: counted back, 09:15 - 3 x 7m
    assert all(((t - t.normalize()) - pd.Timedelta(hours=9, minutes=15)) % pd.Timedelta(minutes=7)
               == pd.Timedelta(0) for t in local)
    day = BarsService(r).bars(FUTURE, "1d", 0, 2e9)
    assert datetime.fromtimestamp(day[0][0], UTC).isoformat() == "2025-06-19T18:30:00+00:00"  # IST midnight


def test_a_range_returns_the_bars_starting_in_it(r: Any) -> None:
    ticks = make_ticks(DAYS[:2])
    feed(ticks)
    start = datetime(2025, 6, 19, 5, 0, tzinfo=UTC).timestamp()
    end = datetime(2025, 6, 20, 4, 0, tzinfo=UTC).timestamp()
    got = bars_frame(BarsService(r).bars(FUTURE, "5m", start, end))
    expected = reference_bars(ticks, "5m")
    expected = expected[(expected["time"] >= pd.Timestamp(start, unit="s", tz="UTC"))
                        & (expected["time"] < pd.Timestamp(end, unit="s", tz="UTC"))]
    assert_same_bars(got, expected.reset_index(drop=True))


def test_late_tick_corrects_cached_bars_when_ticks_are_recorded(r: Any) -> None:
    """An instrument with an every-tick indicators config: its ticks are reported to the bars service, so a late
    tick (hours older than the newest one) drops the cached chunks it belongs to."""
    create_config({"name": "late-ind", "instrument_key": FUTURE, "interval": "5m", "frequency": "every_tick",
                   "technical_indicators": [{"name": "sma", "parameters": {"length": 3}}]})
    ticks = make_ticks(DAYS[:3])
    feed(ticks)
    service = BarsService(r)
    for timeframe in ("1m", "5m", "7m", "1h", "1d"):
        assert_same_bars(everything(service, timeframe), reference_bars(ticks, timeframe))
    chunk = "2025-06-20"
    assert r.hexists(keys.bars_chunks("5m", FUTURE), chunk)

    at = datetime(2025, 6, 20, 6, 2, 30, tzinfo=UTC).timestamp()  # 11:32:30 IST, inside a cached bar
    late = {"instrument_key": FUTURE, "ts": at, "ltp": 99999.0, "volume": None, "oi": 1}
    process_batch(normalised_batch([late], first_id=900_000))
    # the complete chunk was dropped by the late tick; the indicators computation of that tick then re-cached the
    # day only up to the late tick's bar (its bars are evaluated as of the tick's own time)
    assert float(r.hget(keys.bars_upto("5m", FUTURE), chunk)) <= at
    assert r.hget(keys.bars_upto("1m", FUTURE), chunk) is None  # dropped, not read since
    day_end = datetime(2025, 6, 19, 18, 30, tzinfo=UTC).timestamp()
    assert float(r.hget(keys.bars_upto("5m", FUTURE), "2025-06-19")) == day_end  # other days untouched
    with_late = sorted([*ticks, late], key=lambda t: t["ts"])
    for timeframe in ("1m", "5m", "7m", "1h", "1d"):
        got = everything(service, timeframe)
        assert_same_bars(got, reference_bars(with_late, timeframe))
        assert got["high"].max() == 99999.0


def test_late_tick_within_the_settle_window_is_picked_up_without_recording(r: Any, settings: Any) -> None:
    """No config reports this instrument's ticks: bars newer than SIGNAL_BARS_SETTLE_S before its latest tick are
    not cached, so a late tick inside that window still corrects them."""
    settings.SIGNAL_BARS_SETTLE_S = 3600
    ticks = make_ticks(DAYS[:1], seed=11)
    feed(ticks)
    service = BarsService(r)
    assert_same_bars(everything(service, "5m"), reference_bars(ticks, "5m"))
    late = {"instrument_key": FUTURE, "ts": ticks[-1]["ts"] - 1800, "ltp": 1.0, "volume": None, "oi": None}
    process_batch(normalised_batch([late], first_id=900_000))
    with_late = sorted([*ticks, late], key=lambda t: t["ts"])
    assert_same_bars(everything(service, "5m"), reference_bars(with_late, "5m"))


def test_open_bar_is_kept_in_redis_and_merged(r: Any) -> None:
    create_config({"name": "open-ind", "instrument_key": FUTURE, "interval": "5m", "frequency": "every_tick",
                   "technical_indicators": [{"name": "sma", "parameters": {"length": 3}}]})
    ticks = make_ticks(DAYS[:2], seed=5, pre_open=False, mean_gap_s=5)
    grid = Grid("5m", Alignment(time(9, 15), "Asia/Kolkata"))
    noon = datetime(2025, 6, 20, 7, 0, 40, tzinfo=UTC).timestamp()  # 12:30:40 IST
    cut = next(i for i, t in enumerate(ticks) if t["ts"] >= noon)
    same_bar = next(i for i in range(cut, len(ticks)) if grid.bucket(ticks[i]["ts"]) != grid.bucket(noon))
    assert same_bar - cut >= 3
    feed(ticks[:cut])
    service = BarsService(r)
    until = ticks[cut - 1]["ts"]
    first = service.recent(FUTURE, "5m", until, 200)
    assert_same_bars(bars_frame(first), reference_bars(ticks[:cut], "5m").tail(200).reset_index(drop=True))
    live = OpenBar.from_hash(r.hgetall(keys.bars_open("5m", FUTURE)))
    assert live is not None and live.seeded and live.start == grid.bucket(until)  # seeded from SQL

    # more ticks in the same bar (kept in Redis by the pipeline's queue_record), then in later bars
    for lo, hi in ((cut, same_bar), (same_bar, same_bar + 150)):
        feed(ticks[lo:hi], batch=10, first_id=lo + 1)
        until = ticks[hi - 1]["ts"]
        with CaptureQueriesContext(connection) as queries:
            got = service.recent(FUTURE, "5m", until, 200)
        expected = reference_bars(ticks[:hi], "5m").tail(200).reset_index(drop=True)
        assert_same_bars(bars_frame(got), expected)
        live = OpenBar.from_hash(r.hgetall(keys.bars_open("5m", FUTURE)))
        assert live.start == grid.bucket(until) and live.close_time == until and live.seeded
        if hi == same_bar:
            assert sql_on_ticks(queries) == 0, [q["sql"][-300:] for q in queries.captured_queries]
        else:
            assert sql_on_ticks(queries) == 0  # the handler of each batch already cached the bars closed since


def test_recent_bars_in_a_replay_ignore_later_ticks(r: Any) -> None:
    ticks = make_ticks(DAYS[:2], seed=9)
    feed(ticks)
    service = BarsService(r)
    everything(service, "5m")  # caches both days completely
    until = datetime(2025, 6, 20, 6, 7, 10, tzinfo=UTC).timestamp()
    got = service.recent(FUTURE, "5m", until, 50)
    before = [t for t in ticks if t["ts"] <= until]
    assert_same_bars(bars_frame(got), reference_bars(before, "5m").tail(50).reset_index(drop=True))
    closed = service.recent(FUTURE, "5m", until, 50, include_open=False)
    assert closed[-1][0] < got[-1][0] and closed[-1][:7] == got[-2][:7]


def test_recent_bars_shape(r: Any) -> None:
    ticks = make_ticks(DAYS[:1], seed=2)
    feed(ticks)
    bars = recent_bars(FUTURE, "15m", ticks[-1]["ts"], 5)
    assert [set(b) for b in bars] == [{"time", "open", "high", "low", "close", "volume", "oi"}] * 5
    assert bars[0]["time"] < bars[-1]["time"] and bars[-1]["time"].endswith("+00:00")
    assert_same_bars(as_frame(bars), reference_bars(ticks, "15m").tail(5).reset_index(drop=True))


def test_merge_open_bar_matches_indicators_merge_bars() -> None:
    base = [[60, 10.0, 12.0, 9.0, 11.0, 100.0, 5.0, 100.0], [120, 11.0, 13.0, 10.0, 12.0, 50.0, None, 150.0]]
    for live in ([120, 11.5, 14.0, 9.5, 13.5, 70.0, 7.0, 170.0], [180, 12.0, 12.5, 11.0, 12.2, None, None, None]):
        mine = bars_frame(merge_open_bar([list(b) for b in base], live))
        theirs = merge_bars(bars_frame(base), {"time": pd.Timestamp(live[0], unit="s", tz="UTC"),
                                               "open": live[1], "high": live[2], "low": live[3], "close": live[4],
                                               "volume": live[5], "oi": live[6]})
        assert_same_bars(mine, theirs)


def test_many_days_of_one_minute_ticks_across_weekends(r: Any) -> None:
    days = session_days(date(2025, 6, 2), 8)
    ticks = make_ticks(days, seed=21, mean_gap_s=40)
    feed(ticks, batch=2000)
    service = BarsService(r)
    got = service.recent(FUTURE, "1m", ticks[-1]["ts"], 1000)
    assert_same_bars(bars_frame(got), reference_bars(ticks, "1m").tail(1000).reset_index(drop=True))
    assert len(bar_dicts(got)) == 1000


def test_ticks_of_one_instant_order_by_source_id_on_every_path(r: Any) -> None:
    """One-second ``ltt`` feeds give many ticks the same time. Their order in a bar (open, close, last OI) is by
    source id in byte order on every path: the Redis open bar tick by tick (across batches, and after a seed from
    SQL), raw ticks, the rollup or continuous aggregates, and the pandas reference. Byte order differs from arrival
    order here ("s/10" < "s/7"), so a path that follows arrival fails."""
    def tick(clock: str, price: float, sid: str, oi: int) -> dict[str, Any]:
        ts = datetime.fromisoformat(f"2025-06-19T{clock}+05:30").timestamp()
        return {"instrument_key": FUTURE, "ts": ts, "ltp": price, "volume": int(price), "oi": oi,
                "source_id": f"tick_stream:NSE@NIFTY/{sid}"}

    batches = [
        [tick("10:00:05", 100, "5-0", 1)],
        [tick("10:00:15", 101, "7-0", 2), tick("10:00:15", 102, "10-0", 3)],
        [tick("10:00:15", 103, "8-0", 4)],
        [tick("10:00:15", 104, "11-0", 5)],  # arrives last, sorts before 8-0: not the close
        [tick("10:01:05", 200, "20-0", 6)],
        [tick("10:01:05", 199, "13-0", 7)],  # arrives later, sorts first: the open
    ]
    service = BarsService(r)
    for n, batch in enumerate(batches):
        bodies = feed_bodies(batch)
        process_batch([normalised(body, t["source_id"]) for body, t in zip(bodies, batch, strict=True)])
        if n == 0:
            everything(service, "1m")  # seeds the open bar from SQL: its ticks' source ids are not known there
    ticks = [t for batch in batches for t in batch]
    expected = reference_bars(ticks, "1m")
    assert expected[["open", "high", "low", "close", "oi"]].values.tolist() == [
        [100, 104, 100, 103, 4], [199, 200, 199, 200, 6]]
    live = OpenBar.from_hash(r.hgetall(keys.bars_open("1m", FUTURE)))
    assert live is not None and live.seeded
    assert (live.open, live.close, live.oi) == (199, 200, 6)
    assert_same_bars(everything(service, "1m"), expected)  # closed bars from SQL, the open one from Redis
    for sources in (set(), None):  # raw ticks; then the rollup or the continuous aggregates
        r.flushdb()
        assert_same_bars(everything(BarsService(r, aggregates=sources), "1m"), expected)
        assert_same_bars(everything(BarsService(r, aggregates=sources), "5m"), reference_bars(ticks, "5m"))
    assert_same_bars(bars_frame(BarsService(r).bars(FUTURE, "1m", 0, 2e9)), resample_ticks(ticks_frame(ticks), "1m"))
