"""The one-minute bar rollup of plain PostgreSQL (signals.bars.rollup): bars re-bucketed from it equal the bars aggregated
from the raw ticks exactly (every timeframe, several sessions, cumulative volume and OI, ties, midnight), right after
new ticks and after a late tick; the triggers record what was really stored; refreshes stay right when they race;
the beat task and the bars service use it."""

from __future__ import annotations

import threading
import time as _time
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from signals import storage
from signals.bars import rollup, rollup_triggers, timescale
from signals.bars.grid import Alignment
from signals.bars.rows import bars_frame
from signals.bars.sql import query_bars
from signals.bars.store import BarsService
from signals.pipeline.batch import process_batch
from tests.bars_helpers import (
    FUTURE,
    assert_same_bars,
    make_ticks,
    normalised_batch,
    reference_bars,
    store,
)
from tests.support import worker_database_url

IST = "Asia/Kolkata"
OTHER = "NSE@BANKNIFTY@futures@2025-07-31"
DAYS = [date(2025, 6, 19), date(2025, 6, 20), date(2025, 6, 23), date(2025, 7, 1)]
ALIGN = Alignment(time(9, 15), IST)
LO = datetime(2025, 5, 1, tzinfo=UTC).timestamp()
HI = datetime(2025, 8, 1, tzinfo=UTC).timestamp()


pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain_postgresql(django_db_blocker: Any) -> None:
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        if not rollup.installed(cursor):
            pytest.skip("the rollup triggers are not installed (TimescaleDB layout)")


def pending() -> list[tuple[str, datetime, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT instrument_key, lo, hi FROM {rollup_triggers.PENDING} ORDER BY id")
        return cursor.fetchall()


def rollup_rows(key: str | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(rollup.COLUMNS)} FROM {rollup.TABLE} "
                       "WHERE %(key)s::text IS NULL OR instrument_key = %(key)s ORDER BY instrument_key, bucket",
                       {"key": key})
        return cursor.fetchall()


def from_scratch() -> list[tuple[Any, ...]]:
    """What the rollup must hold: every tick aggregated now, with the rollup's own SELECT."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({rollup.aggregate_sql()}) a ORDER BY instrument_key, bucket")
        return cursor.fetchall()


def with_ties(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every 50th tick again at the same time with another price (and source id): open/close/oi ties."""
    return [{**t, "ltp": t["ltp"] + 3.0, "oi": None if t["oi"] is None else t["oi"] + 7}
            for t in ticks[::50]]


def feed(ticks: list[dict[str, Any]], first_id: int, batch: int = 400) -> None:
    for i in range(0, len(ticks), batch):
        process_batch(normalised_batch(ticks[i:i + batch], first_id + i))


# --- exactness ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("timeframe", ["1m", "5m", "7m", "1h", "1d", "1w", "1M"])
def test_bars_from_the_rollup_equal_bars_from_raw_ticks(timeframe: str) -> None:
    ticks = make_ticks(DAYS, midnight_on=date(2025, 6, 20))
    store(ticks)
    store(with_ties(ticks), first_id=5_000_000)
    other = make_ticks(DAYS[:2], key=OTHER, seed=11, start_price=51000.0)
    store(other, first_id=9_000_000)
    assert {row[0] for row in pending()} == {FUTURE, OTHER}

    assert rollup.refresh() > 0
    assert pending() == []
    rows = rollup_rows(FUTURE)
    assert 1000 < len(rows) < len(ticks) / 2  # a real rollup: fewer rows than ticks
    assert sum(row[-1] for row in rows) == len(ticks) + len(with_ties(ticks))
    for key in (FUTURE, OTHER):
        raw = query_bars(timeframe, ALIGN, key, LO, HI, "raw")
        rolled = query_bars(timeframe, ALIGN, key, LO, HI, rollup.TABLE)
        assert len(raw) > 0
        assert rolled == raw  # every field, bit for bit: open/close ties broken by source_id on both paths
    # and a range starting mid-day with a volume base (what the cache's partial chunks ask for)
    cut = datetime(2025, 6, 20, 6, 0, tzinfo=UTC).timestamp()
    before = query_bars(timeframe, ALIGN, FUTURE, LO, cut, "raw")
    day_base = [b for b in before if b.last_day == date(2025, 6, 20)]
    if day_base and timeframe in ("1m", "5m", "1h"):  # cut is a bar boundary of these
        base = (date(2025, 6, 20), day_base[-1].run_end)
        assert (query_bars(timeframe, ALIGN, FUTURE, cut, HI, rollup.TABLE, *base)
                == query_bars(timeframe, ALIGN, FUTURE, cut, HI, "raw", *base))


def test_rollup_rows_equal_the_one_minute_continuous_aggregate_query() -> None:
    """The rollup's SELECT computes what ``signal_bars_1m`` (timescale.cagg_select_sql) computes: run on TimescaleDB
    look-alikes (time_bucket/first/last in SQL), over ticks without time ties (where first/last are defined)."""
    from tests.test_timescale import LOOK_ALIKES

    store(make_ticks(DAYS[:2], midnight_on=date(2025, 6, 19), seed=5))
    rollup.refresh()
    with connection.cursor() as cursor:
        cursor.execute(LOOK_ALIKES)
        cursor.execute(f"SELECT * FROM ({timescale.cagg_select_sql('1m', '09:15', IST)}) c "
                       "ORDER BY instrument_key, bucket")
        cagg = cursor.fetchall()
        cursor.execute("RESET search_path")
    assert len(cagg) > 700
    assert rollup_rows() == cagg


def test_new_ticks_and_a_late_tick_are_in_the_next_read(r: Any) -> None:
    ticks = make_ticks(DAYS[:2], seed=3)
    half = len(ticks) // 2
    feed(ticks[:half], first_id=1)
    service, raw_only = BarsService(r), BarsService(r, aggregates=set())
    for timeframe in ("1m", "5m", "1d"):
        assert_same_bars(bars_frame(service.bars(FUTURE, timeframe, LO, HI)), reference_bars(ticks[:half], timeframe))
    assert pending() == []  # the reads folded the pipeline's ranges in

    feed(ticks[half:], first_id=half + 1)  # live ticks: pending until someone reads (or the beat runs)
    assert pending()
    for timeframe in ("1m", "7m", "1d"):
        got = service.bars(FUTURE, timeframe, LO, HI)
        assert got == raw_only.bars(FUTURE, timeframe, LO, HI)
        assert_same_bars(bars_frame(got), reference_bars(ticks, timeframe))

    late = {**ticks[40], "ts": ticks[40]["ts"] + 0.0005, "ltp": 1.0}  # into an old, already rolled-up minute
    feed([late], first_id=10_000_000)
    assert [row[0] for row in pending()] == [FUTURE]
    with_late = sorted([*ticks, late], key=lambda t: t["ts"])
    for timeframe in ("1m", "5m", "1h", "1d"):
        r.flushdb()  # what the bars read from SQL, not from the Redis cache
        got = bars_frame(service.bars(FUTURE, timeframe, LO, HI))
        assert_same_bars(got, reference_bars(with_late, timeframe))
        assert (got["low"] == 1.0).sum() == 1
    assert pending() == []


def test_deleted_and_updated_ticks_are_refreshed_too() -> None:
    ticks = make_ticks(DAYS[:1], seed=8)
    store(ticks)
    rollup.refresh()
    with connection.cursor() as cursor:
        # a whole minute removed, and one price changed (nothing in the service does either; a DBA might)
        minute = datetime(2025, 6, 19, 4, 0, tzinfo=UTC)
        cursor.execute("DELETE FROM signal_ticks WHERE time >= %s AND time < %s",
                       [minute, minute + timedelta(minutes=1)])
        assert cursor.rowcount > 0
        cursor.execute("UPDATE signal_ticks SET ltp = 2.5 WHERE time = (SELECT max(time) FROM signal_ticks)")
    assert len(pending()) == 2
    assert rollup.refresh() >= 2
    assert rollup_rows() == from_scratch()
    assert minute not in {row[1] for row in rollup_rows()}


# --- what the triggers record --------------------------------------------------------------------------------------
def test_a_redelivered_batch_records_no_pending_range() -> None:
    ticks = make_ticks(DAYS[:1], seed=4)[:300] + make_ticks(DAYS[:1], key=OTHER, seed=6)[:200]
    batch = normalised_batch(ticks)
    assert storage.store_ticks(batch) == 500
    got = {key: (lo, hi) for key, lo, hi in pending()}
    for key in (FUTURE, OTHER):
        times = [t["ts"] for t in ticks if t["instrument_key"] == key]
        assert got[key] == (datetime.fromtimestamp(min(times), UTC), datetime.fromtimestamp(max(times), UTC))
    assert len(pending()) == 2  # one range per instrument and statement
    rollup.refresh()
    assert storage.store_ticks(batch) == 0  # re-delivery: ON CONFLICT DO NOTHING inserts nothing...
    assert pending() == []  # ...so the transition table is empty
    partly_new = batch[:10] + normalised_batch(make_ticks([date(2025, 6, 24)], seed=4)[:5], first_id=7_000)
    assert storage.store_ticks(partly_new) == 5
    assert [(k, lo.date()) for k, lo, _ in pending()] == [(FUTURE, date(2025, 6, 24))]  # only the new rows


def test_copy_into_signal_ticks_records_a_pending_range() -> None:
    start = datetime(2025, 6, 19, 4, 0, 5, tzinfo=UTC)
    with connection.cursor() as cursor, cursor.cursor.copy(
            "COPY signal_ticks (instrument_key, time, source_id, ltp, volume, oi) FROM STDIN") as copy:
        for i in range(120):
            copy.write_row((FUTURE, start + timedelta(seconds=i), f"copy/{i}", 100.0 + i, 10 * i, 5))
    assert pending() == [(FUTURE, start, start + timedelta(seconds=119))]
    assert rollup.refresh() == 3  # 04:00:05-04:01:59: three minutes
    assert [row[1] for row in rollup_rows()] == [start.replace(second=0) + timedelta(minutes=m) for m in range(3)]


def test_installing_on_a_table_with_ticks_seeds_pending_ranges(monkeypatch: Any) -> None:
    with connection.cursor() as cursor:
        rollup.uninstall(cursor)
        assert not rollup.installed(cursor)
        store(make_ticks(DAYS[:3], seed=2))  # stored before the triggers exist: nothing recorded
        assert pending() == []
        assert rollup.wanted(cursor)  # plain PostgreSQL
        assert rollup.install(cursor)
        assert rollup.installed(cursor)
    zone = ZoneInfo(IST)
    assert sorted((k, lo.astimezone(zone).date(), hi.astimezone(zone).date()) for k, lo, hi in pending()) == [
        (FUTURE, day, day) for day in DAYS[:3]]  # one per instrument and exchange day
    monkeypatch.setattr(rollup, "STEP_SPAN", timedelta(hours=1))  # each range is a 6.5 h session: one per step
    with CaptureQueriesContext(connection) as queries:
        result = rollup.refresh_pending(max_ranges=500)  # a backlog, a bounded piece per transaction
    assert result["ranges"] == 3 and pending() == []
    assert sum(f"DELETE FROM {rollup_triggers.PENDING}" in q["sql"] for q in queries.captured_queries) == 3
    assert rollup_rows() == from_scratch()


def test_timescaledb_setup_drops_the_rollup_triggers_first() -> None:
    statements = timescale.setup_statements(timescale.Policies(), "09:15", IST)
    drops = [i for i, s in enumerate(statements) if s.startswith("DROP TRIGGER IF EXISTS signal_ticks_rollup_")]
    first_hypertable = next(i for i, s in enumerate(statements) if "create_hypertable" in s)
    assert len(drops) == len(rollup_triggers.TRIGGERS) and max(drops) < first_hypertable


def test_one_minute_buckets_nest_only_in_whole_minute_alignments() -> None:
    lo = datetime(2025, 6, 19, 18, 30, tzinfo=UTC).timestamp()  # IST midnight
    assert rollup.covers(time(9, 15), IST, lo, lo + 86_400)
    assert not rollup.covers(time(9, 15, 30), IST, lo, lo + 86_400)  # bars at :30 s would split minutes
    assert not rollup.covers(time(9, 15), IST, lo + 30, lo + 86_400)
    old = datetime(1960, 1, 1, tzinfo=UTC).timestamp()
    assert not rollup.covers(time(9, 15), "Africa/Monrovia", old, old + 86_400)  # UTC-0:44:30 then


# --- concurrency ------------------------------------------------------------------------------------------------------
def _thread(target: Any, *args: Any) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_refresher_waits_for_the_other_and_then_sees_everything_it_committed() -> None:
    ticks = make_ticks(DAYS[:1], seed=12)
    store(ticks[:500])
    holder = psycopg.connect(worker_database_url(), autocommit=False)
    try:
        holder.execute(rollup._LOCK_SQL, [[FUTURE]])  # another refresher's lock, held
        done: dict[str, int] = {}
        thread = _thread(lambda: done.setdefault("written", rollup.refresh(FUTURE)))
        _time.sleep(0.6)
        assert thread.is_alive() and "written" not in done  # waiting for the lock
        store(ticks[500:900], first_id=501)  # committed while it waits
        holder.commit()
        thread.join(20)
        assert not thread.is_alive()
    finally:
        holder.close()
    assert done["written"] > 0
    assert pending() == []  # its data statement's snapshot, taken after the lock, included the later ticks
    assert rollup_rows() == from_scratch()
    assert sum(row[-1] for row in rollup_rows()) == 900


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_refreshers_end_with_the_right_bars() -> None:
    """Two writers store ticks into the same few minutes and refresh after each batch, while a third runs the beat's
    refresh: whatever the interleaving, nothing is left pending and the rollup equals a fresh aggregate."""
    base = datetime(2025, 6, 19, 4, 0, tzinfo=UTC).timestamp()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                batch = [{"instrument_key": key, "ts": base + ((i * 7 + j * 13 + n * 5) % 180) + n * 0.001 + j * 1e-5,
                          "ltp": 100.0 + n * 10 + i + j / 10, "volume": 1000 * i + j + n, "oi": 10 + i + n}
                         for j in range(12) for key in (FUTURE, OTHER)]
                storage.store_ticks(normalised_batch(batch, first_id=n * 1_000_000 + i * 100,
                                                     stream=f"tick_stream:W{n}"))
                rollup.refresh(FUTURE)
                rollup.refresh(OTHER)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def beat(stop: threading.Event) -> None:
        while not stop.is_set():
            rollup.refresh_pending(max_ranges=3)

    stop = threading.Event()
    threads = [_thread(writer, 1), _thread(writer, 2), _thread(beat, stop)]
    for thread in threads[:2]:
        thread.join(120)
    stop.set()
    threads[2].join(30)
    assert not errors, errors
    assert pending() == []
    expected = from_scratch()
    assert sum(row[-1] for row in expected) == 2 * 25 * 12 * 2
    assert rollup_rows() == expected


@pytest.mark.django_db(transaction=True)
def test_beat_task_folds_pending_ranges_in() -> None:
    from signals.tasks import refresh_bar_rollup

    entry = settings.CELERY_BEAT_SCHEDULE["refresh-bar-rollup"]
    assert entry["task"] == refresh_bar_rollup.name == "signals.refresh_bar_rollup"
    assert entry["schedule"] == settings.SIGNAL_ROLLUP_INTERVAL_S
    assert settings.CELERY_TASK_ROUTES[refresh_bar_rollup.name]["queue"] == entry["options"]["queue"]
    store(make_ticks(DAYS[:2], seed=21))
    store(make_ticks(DAYS[:1], key=OTHER, seed=22), first_id=500_000)
    assert len(pending()) == 2
    result = refresh_bar_rollup.apply().get()
    assert result["enabled"] and result["ranges"] == 2 and result["written"] == len(from_scratch())
    assert pending() == []
    assert rollup_rows() == from_scratch()
    assert refresh_bar_rollup.apply().get()["written"] == 0  # nothing pending: nothing written


# --- the bars service ---------------------------------------------------------------------------------------------
def test_bars_service_on_the_rollup_equals_the_raw_tick_service(r: Any) -> None:
    ticks = make_ticks(DAYS, midnight_on=date(2025, 6, 20), seed=17)
    feed(ticks, first_id=1)
    feed(with_ties(ticks), first_id=5_000_000)
    service, raw_only = BarsService(r), BarsService(r, aggregates=set())
    assert service.source_for("7m") == rollup.TABLE and raw_only.source_for("7m") is None
    until = datetime(2025, 6, 20, 8, 3, 7, tzinfo=UTC).timestamp()  # a replay point inside a bar
    for timeframe in ("1m", "5m", "7m", "13m", "1h", "1d", "1w", "1M"):
        r.flushdb()
        with CaptureQueriesContext(connection) as queries:
            got = service.bars(FUTURE, timeframe, LO, HI)
            replay = service.recent(FUTURE, timeframe, until, 40)
        assert any(rollup.TABLE in q["sql"] for q in queries.captured_queries)
        r.flushdb()
        with CaptureQueriesContext(connection) as queries:
            expected = raw_only.bars(FUTURE, timeframe, LO, HI)
            expected_replay = raw_only.recent(FUTURE, timeframe, until, 40)
        assert not any(rollup.TABLE in q["sql"] for q in queries.captured_queries)
        assert len(got) > 0 and got == expected
        assert replay == expected_replay and replay[-1][0] <= until


def test_a_reader_inside_a_transaction_does_not_wait_for_a_refresher_and_reads_raw_ticks(r: Any) -> None:
    """Inside a caller's transaction (which may hold other instruments' locks) a read does not queue for a lock:
    with another refresher holding it, the bars come from raw ticks, still exact."""
    ticks = make_ticks(DAYS[:1], seed=30)
    store(ticks)
    holder = psycopg.connect(worker_database_url(), autocommit=False)
    try:
        holder.execute(rollup._LOCK_SQL, [[FUTURE]])
        assert rollup.catch_up(FUTURE) is False
        with CaptureQueriesContext(connection) as queries:
            got = BarsService(r).bars(FUTURE, "5m", LO, HI)
        assert not any(rollup.TABLE in q["sql"] for q in queries.captured_queries)
        assert_same_bars(bars_frame(got), reference_bars(ticks, "5m"))
    finally:
        holder.rollback()
        holder.close()
    assert rollup.catch_up(FUTURE) is True and pending() == []
