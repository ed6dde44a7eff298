"""TimescaleDB layout: the SQL text is checked everywhere; the aggregates' queries and the service's
continuous-aggregate read path run on plain PostgreSQL against look-alike functions; the real statements run in
the last test, which needs the extension (skipped where it is not available)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from indicators.timeframes import parse_timeframe
from signals.bars import timescale
from signals.bars.rows import bars_frame
from signals.bars.sql import aggregate_for
from signals.bars.store import BarsService
from tests.bars_helpers import (
    FUTURE,
    assert_same_bars,
    make_ticks,
    reference_bars,
    session_days,
    store,
    with_source_ids,
)

IST = "Asia/Kolkata"


# --- SQL generation -------------------------------------------------------------------------------------------
def test_hypertable_compression_and_retention_sql() -> None:
    assert timescale.hypertable_sql("signal_ticks", "1 day") == (
        "SELECT create_hypertable('signal_ticks', 'time', chunk_time_interval => INTERVAL '1 day', "
        "create_default_indexes => false, migrate_data => true, if_not_exists => true)")
    alter, policy = timescale.compression_sql("signal_ticks", "instrument_key", "time DESC, source_id", 7)
    assert alter == ("ALTER TABLE signal_ticks SET (timescaledb.compress, timescaledb.compress_segmentby = "
                     "'instrument_key', timescaledb.compress_orderby = 'time DESC, source_id')")
    assert policy == "SELECT add_compression_policy('signal_ticks', INTERVAL '7 days', if_not_exists => true)"
    assert timescale.retention_sql("signal_greeks", 365) == (
        "SELECT add_retention_policy('signal_greeks', INTERVAL '365 days', if_not_exists => true)")


def test_continuous_aggregate_sql() -> None:
    sql = timescale.cagg_create_sql("signal_bars_5m", "5m", "09:15", IST)
    assert sql.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS signal_bars_5m WITH (timescaledb.continuous, "
                          "timescaledb.materialized_only = false) AS SELECT instrument_key, ")
    assert ("time_bucket(INTERVAL '5 minutes', time, origin => TIMESTAMPTZ '2000-01-03T09:15:00+05:30') AS bucket"
            in sql)
    for part in ('(array_agg(ltp ORDER BY time, source_id COLLATE "C"))[1] AS open',
                 '(array_agg(ltp ORDER BY time DESC, source_id COLLATE "C" DESC))[1] AS close',
                 "max(volume)::float8 AS vmax", "FILTER (WHERE oi IS NOT NULL))[1])::float8 AS oi",
                 "GROUP BY instrument_key, bucket"):
        assert part in sql
    assert sql.endswith("WITH NO DATA")
    assert "time_bucket(INTERVAL '1 hour'" not in sql
    assert ("time_bucket(INTERVAL '60 minutes', time, origin => TIMESTAMPTZ '2000-01-03T09:15:00+05:30')"
            in timescale.cagg_create_sql("signal_bars_1h", "1h", "09:15", IST))
    assert "time_bucket(INTERVAL '1 day', time, 'Asia/Kolkata') AS bucket" in timescale.cagg_create_sql(
        "signal_bars_1d", "1d", "09:15", IST)
    with pytest.raises(ValueError):
        timescale.cagg_bucket_sql("7m", "09:15", IST)  # no fixed-origin aggregate for sizes not dividing a day
    assert timescale.cagg_policy_sql("signal_bars_1m") == (
        "SELECT add_continuous_aggregate_policy('signal_bars_1m', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => true)")
    assert timescale.cagg_refresh_sql("signal_bars_1d", "2025-06-01T00:00:00+00:00", None) == (
        "CALL refresh_continuous_aggregate('signal_bars_1d', TIMESTAMPTZ '2025-06-01T00:00:00+00:00', NULL)")


def test_setup_statements_cover_every_table_and_aggregate() -> None:
    statements = timescale.setup_statements(timescale.Policies(), "09:15", IST)
    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    for table in ("signal_ticks", "signal_computed", "signal_greeks"):
        assert any(s.startswith(f"SELECT create_hypertable('{table}'") for s in statements)
        assert any(s.startswith(f"SELECT add_compression_policy('{table}'") for s in statements)
        assert any(s.startswith(f"SELECT add_retention_policy('{table}'") for s in statements)
    for name in ("signal_bars_1m", "signal_bars_5m", "signal_bars_15m", "signal_bars_1d"):
        create = next(i for i, s in enumerate(statements) if f"VIEW IF NOT EXISTS {name} " in s)
        assert statements[create + 1].startswith(f"SELECT add_continuous_aggregate_policy('{name}'")
    without = timescale.setup_statements(timescale.Policies(), "09:15", IST, with_aggregates=False)
    assert not any("MATERIALIZED VIEW" in s for s in without)
    assert not any("signal_bars_1h" in s for s in statements)  # never read: not created
    teardown = timescale.teardown_statements()
    assert all(s.startswith(("DROP MATERIALIZED VIEW IF EXISTS", "SELECT remove_")) for s in teardown)
    assert "DROP MATERIALIZED VIEW IF EXISTS signal_bars_1h CASCADE" in teardown  # an earlier layout's


def test_versions_and_aggregate_choice() -> None:
    assert timescale.parse_version("2.17.2") == (2, 17, 2)
    assert timescale.parse_version("2.15.0-dev") == (2, 15, 0)
    assert timescale.supports_caggs((2, 15, 0)) and not timescale.supports_caggs((2, 14, 2))
    assert not timescale.supports_caggs(None)
    every = set(timescale.CAGGS)
    choose = {name: aggregate_for(parse_timeframe(name), every)
              for name in ("1m", "5m", "7m", "10m", "15m", "30m", "1h", "2h", "13m", "1d", "1w", "1M")}
    assert choose == {"1m": "signal_bars_1m", "5m": "signal_bars_5m", "7m": "signal_bars_1m",
                      "10m": "signal_bars_5m", "15m": "signal_bars_15m", "30m": "signal_bars_15m",
                      "1h": "signal_bars_15m", "2h": "signal_bars_15m", "13m": "signal_bars_1m",
                      "1d": "signal_bars_1d", "1w": "signal_bars_1d", "1M": "signal_bars_1d"}
    assert aggregate_for(parse_timeframe("5m"), set()) is None


# --- detection: by what works -------------------------------------------------------------------------------
def _preloaded(cursor: Any) -> bool:
    cursor.execute("SELECT current_setting('shared_preload_libraries')")
    return "timescaledb" in [name.strip() for name in cursor.fetchone()[0].split(",")]


def _listed(cursor: Any) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return cursor.fetchone() is not None


@pytest.mark.django_db
def test_detection_creates_the_extension_instead_of_trusting_the_listing() -> None:
    """available() says yes exactly where creating the extension works: listed *and* preloaded. Where it is
    listed but not preloaded (the files are shared by every cluster of the version), CREATE EXTENSION ends the
    session with a FATAL error; the probe runs on its own connection, so this one stays usable. CI runs this on
    both outcomes: on plain PostgreSQL after installing the TimescaleDB files (listed, not preloaded: no) and on
    the TimescaleDB cluster (yes)."""
    with connection.cursor() as cursor:
        listed, preloaded = _listed(cursor), _preloaded(cursor)
        installed = timescale.installed_version(cursor)
    works = timescale.available(connection)
    assert works == (listed and preloaded)
    with connection.cursor() as cursor:  # the test's own connection survived the probe
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
        assert timescale.installed_version(cursor) == installed  # the probe rolled back what it created
    assert timescale.apply(connection) == ("timescaledb" if works else "plain")


@pytest.mark.django_db
def test_plain_postgresql_keeps_plain_indexed_tables() -> None:
    if timescale.available(connection):
        pytest.skip("TimescaleDB works here: see test_timescaledb_layout")
    with connection.cursor() as cursor:
        assert timescale.installed_version(cursor) is None
        assert timescale.existing_aggregates(cursor) == set()
        assert timescale.apply(connection) == "plain"  # what migration 0002 did
        cursor.execute("SELECT to_regclass('signal_bars_5m')")
        assert cursor.fetchone()[0] is None
        cursor.execute("""SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                          AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'signal_ticks'::regclass
                          AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)""")
        assert [row[0] for row in cursor.fetchall()] == ["instrument_key", "time", "source_id"]
    timescale.remove(connection)  # reversing the migration on plain PostgreSQL: nothing to undo


LOOK_ALIKES = """
CREATE SCHEMA tsemu;
CREATE FUNCTION tsemu.time_bucket(bucket_width interval, ts timestamptz, origin timestamptz) RETURNS timestamptz
  IMMUTABLE LANGUAGE sql AS $$ SELECT date_bin(bucket_width, ts, origin) $$;
CREATE FUNCTION tsemu.time_bucket(bucket_width interval, ts timestamptz, timezone text) RETURNS timestamptz
  IMMUTABLE LANGUAGE sql AS $$ SELECT date_trunc('day', ts AT TIME ZONE timezone) AT TIME ZONE timezone $$;
SET LOCAL search_path TO tsemu, public;
"""


@pytest.mark.django_db
@pytest.mark.parametrize("timeframe", ["1m", "5m", "7m", "15m", "30m", "1h", "1d", "1w", "1M"])
def test_aggregate_queries_and_the_aggregate_read_path_on_look_alikes(timeframe: str, r: Any) -> None:
    """The aggregates' SELECTs (TimescaleDB's time_bucket/first/last replaced by SQL look-alikes with the same
    results) materialised as tables, and the bars service reading them like continuous aggregates: bars equal the
    pandas reference, as the raw-tick path does."""
    days = [date(2025, 6, 19), date(2025, 6, 20), date(2025, 6, 23), date(2025, 7, 1)]
    ticks = make_ticks(days, seed=4)
    store(ticks)
    with connection.cursor() as cursor:
        cursor.execute(LOOK_ALIKES)
        for name, tf in timescale.CAGGS.items():
            cursor.execute(f"CREATE TABLE tsemu.{name} AS {timescale.cagg_select_sql(tf, '09:15', IST)}")
        cursor.execute("SELECT count(*) FROM tsemu.signal_bars_1m")
        assert cursor.fetchone()[0] > 1000
    service = BarsService(r, aggregates=set(timescale.CAGGS))
    lo, hi = datetime(2025, 5, 1, tzinfo=UTC).timestamp(), datetime(2025, 8, 1, tzinfo=UTC).timestamp()
    expected = reference_bars(ticks, timeframe)
    assert_same_bars(bars_frame(service.bars(FUTURE, timeframe, lo, hi)), expected)
    # a replay point: the aggregate up to the bar of ``until``, raw ticks for that bar
    until = datetime(2025, 6, 20, 8, 3, 7, tzinfo=UTC).timestamp()
    fresh = BarsService(r, aggregates=set(timescale.CAGGS))
    r.flushdb()
    got = bars_frame(fresh.recent(FUTURE, timeframe, until, 30))
    assert_same_bars(got, reference_bars([t for t in ticks if t["ts"] <= until], timeframe).tail(30)
                     .reset_index(drop=True))


# --- TimescaleDB (runs where the extension exists) ----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_timescaledb_layout(r: Any) -> None:
    if not timescale.available(connection):
        pytest.skip("TimescaleDB does not work in this PostgreSQL (see the detection tests)")
    with connection.cursor() as cursor:
        assert timescale.apply(connection) == "timescaledb"  # idempotent: migration 0002 already ran it
        version = timescale.installed_version(cursor)
        assert version is not None
        cursor.execute("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
                       "WHERE hypertable_name LIKE 'signal_%%'")
        hypertables = dict(cursor.fetchall())
        assert {"signal_ticks", "signal_computed", "signal_greeks"} <= set(hypertables)
        assert all(hypertables[t] for t in ("signal_ticks", "signal_computed", "signal_greeks"))
        cursor.execute("SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
                       "WHERE hypertable_name LIKE 'signal_%%' OR hypertable_name LIKE '_materialized%%'")
        jobs = cursor.fetchall()
        assert sum(1 for p, _ in jobs if p == "policy_retention") >= 3
        assert sum(1 for p, _ in jobs if p == "policy_compression") >= 3
        if not timescale.supports_caggs(version):
            pytest.skip(f"TimescaleDB {version} predates continuous aggregates with an origin")
        cursor.execute("SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates")
        caggs = dict(cursor.fetchall())
        assert {name: False for name in timescale.CAGGS}.items() <= caggs.items()
        cursor.execute("SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = "
                       "'policy_refresh_continuous_aggregate'")
        assert cursor.fetchone()[0] >= len(timescale.CAGGS)
    # recent days (the retention policy drops chunks older than a year)
    days = session_days(datetime.now(UTC).date() - timedelta(days=20), 3)
    # every 40th tick again at the same instant with another price: ties, ordered by source id on every path
    # (the tie's id sorts before or after the original's, depending on its digits)
    plain = with_source_ids(make_ticks(days, seed=8))
    ties = with_source_ids([{**t, "ltp": t["ltp"] + 3.0, "oi": None if t["oi"] is None else t["oi"] + 7}
                            for t in plain[::40]], first_id=5_000_000)
    store(plain)
    store(ties, first_id=5_000_000)
    ticks = sorted(plain + ties, key=lambda t: (t["ts"], t["source_id"]))
    first = datetime.fromtimestamp(ticks[0]["ts"], UTC)
    last = datetime.fromtimestamp(ticks[-1]["ts"], UTC)
    timescale.refresh_range(first, last)
    late_tick = {**ticks[100], "ts": ticks[100]["ts"] + 0.5, "ltp": 1.0, "source_id": "tick_stream:NSE@NIFTY/10000000-0"}
    store([late_tick], first_id=10_000_000)  # into a materialised bucket: visible after the next refresh
    with_late = sorted([*ticks, late_tick], key=lambda t: (t["ts"], t["source_id"]))
    service = BarsService(r)
    with connection.cursor() as cursor:
        assert "signal_bars_1m" in timescale.existing_aggregates(cursor)
    lo, hi = first.timestamp() - 40 * 86_400, last.timestamp() + 40 * 86_400
    timescale.refresh_range(first, last)  # what the refresh policy does within its window
    for timeframe in ("1m", "5m", "7m", "1h", "1d", "1w", "1M"):
        r.flushdb()
        got = bars_frame(service.bars(FUTURE, timeframe, lo, hi))
        assert_same_bars(got, reference_bars(with_late, timeframe))
        assert (got["low"] == 1.0).any()
    # bit for bit: every aggregate read equals the raw-tick query (ties, volume runs, OI and its time included)
    from signals.bars.grid import Alignment
    from signals.bars.sql import query_bars

    align = Alignment(dtime(9, 15), IST)
    day_lo = datetime.combine(days[0] - timedelta(days=1), dtime(0), ZoneInfo(IST)).timestamp()
    day_hi = datetime.combine(days[-1] + timedelta(days=2), dtime(0), ZoneInfo(IST)).timestamp()
    for timeframe in ("1m", "5m", "15m", "1h", "1d"):
        source = aggregate_for(parse_timeframe(timeframe), set(timescale.CAGGS))
        raw = query_bars(timeframe, align, FUTURE, day_lo, day_hi, "raw")
        assert len(raw) > 2 and query_bars(timeframe, align, FUTURE, day_lo, day_hi, source) == raw
    # the same over compressed chunks (what the compression policy makes of them after a day)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(compress_chunk(c, if_not_compressed => true)) FROM "
                       "show_chunks('signal_ticks', older_than => now() - INTERVAL '2 days') c")
        assert cursor.fetchone()[0] >= 3
    timescale.refresh_range(first, last)
    for timeframe in ("1m", "7m", "1d"):
        r.flushdb()
        assert_same_bars(bars_frame(service.bars(FUTURE, timeframe, lo, hi)), reference_bars(with_late, timeframe))
        assert_same_bars(bars_frame(BarsService(r, aggregates=set()).bars(FUTURE, timeframe, lo, hi)),
                         reference_bars(with_late, timeframe))


@pytest.mark.django_db(transaction=True)
def test_pipeline_ticks_below_the_watermark_are_read_raw_then_refreshed(r: Any) -> None:
    """A replay of a past session through the pipeline (or a late tick) lands below the aggregates' watermark,
    where real-time aggregation does not look: the batch's range is recorded, reads aggregate it from raw ticks,
    and the beat task's refresh brings it into the aggregates. (Moves the watermark to recent days: keep this file
    last in a TimescaleDB run.)"""
    from django.db import connection as conn

    from signals.bars import cagg_refresh
    from signals.models import Tick
    from signals.pipeline.batch import process_batch
    from signals.tasks import refresh_bar_rollup
    from tests.bars_helpers import normalised_batch

    if not timescale.available(connection) or not cagg_refresh.in_use():
        pytest.skip("no continuous aggregates here: the rollup's triggers record every write (test_bar_rollup)")
    recent = make_ticks(session_days(datetime.now(UTC).date() - timedelta(days=10), 1), key="NSE@NIFTY@index",
                        seed=41, mean_gap_s=600)
    store(recent, first_id=20_000_000)
    timescale.refresh_range(datetime.fromtimestamp(recent[0]["ts"], UTC), datetime.fromtimestamp(recent[-1]["ts"], UTC))
    mark = cagg_refresh.watermark()
    assert mark is not None and mark > recent[0]["ts"]
    replay = make_ticks([date(2025, 6, 25)], seed=42, mean_gap_s=60)
    try:
        for i in range(0, len(replay), 200):
            process_batch(normalised_batch(replay[i:i + 200], first_id=30_000_000 + i))
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM signal_bars_rollup_pending WHERE instrument_key = %s", [FUTURE])
            assert cursor.fetchone()[0] >= len(replay) // 200
        lo, hi = replay[0]["ts"] - 86_400, replay[-1]["ts"] + 86_400
        assert not cagg_refresh.is_current(FUTURE, lo, hi)
        for timeframe in ("5m", "1d"):
            r.flushdb()
            assert_same_bars(bars_frame(BarsService(r).bars(FUTURE, timeframe, lo, hi)),
                             reference_bars(replay, timeframe))
        assert refresh_bar_rollup.apply().get()["ranges"] >= len(replay) // 200  # the beat task's refresh
        assert cagg_refresh.is_current(FUTURE, lo, hi)
        for timeframe in ("5m", "1d"):
            r.flushdb()
            assert_same_bars(bars_frame(BarsService(r).bars(FUTURE, timeframe, lo, hi)),
                             reference_bars(replay, timeframe))
    finally:
        Tick.objects.filter(time__lt=datetime.now(UTC) - timedelta(days=400)).delete()
        timescale.refresh_range(datetime.fromtimestamp(replay[0]["ts"], UTC),
                                datetime.fromtimestamp(replay[-1]["ts"], UTC))
