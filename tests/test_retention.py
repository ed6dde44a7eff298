"""Retention and compression as settings (issue 16): plain PostgreSQL deletes expired rows in bounded steps (and the
one-minute rollup forgets their bars); TimescaleDB's policies follow the settings, drop expired chunks and compress
old ones (bars over compressed chunks unchanged, stores into them still idempotent); an import refuses rows the
retention would delete, naming the setting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from signals.bars import retention, rollup, timescale
from signals.bars.rows import bars_frame
from signals.bars.store import BarsService
from signals.models import Tick
from tests.bars_helpers import FUTURE, assert_same_bars, make_ticks, reference_bars, session_days, store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def on_timescaledb() -> bool:
    with connection.cursor() as cursor:
        return timescale.installed_version(cursor) is not None


def test_policies_come_from_the_settings(settings: Any) -> None:
    assert timescale.Policies() == timescale.Policies(1826, 1826, 1826, 1)  # five years, compressed after a day
    settings.SIGNAL_TICKS_RETENTION_DAYS = 30
    settings.SIGNAL_COMPRESS_AFTER_DAYS = 0
    policies = timescale.Policies.from_settings()
    assert (policies.retention("signal_ticks"), policies.compress_after_days) == (30, 0)
    statements = timescale.setup_statements(policies, "09:15", "Asia/Kolkata")
    assert "SELECT add_retention_policy('signal_ticks', INTERVAL '30 days', if_not_exists => true)" in statements
    assert not any(s.startswith("SELECT add_compression_policy") for s in statements)  # 0: off
    assert retention.cutoff(0) is None
    assert retention.cutoff(30, NOW) == NOW - timedelta(days=30)
    from signals.tasks import enforce_retention

    entry = settings.CELERY_BEAT_SCHEDULE["enforce-retention"]
    assert entry["task"] == enforce_retention.name == "signals.enforce_retention"
    assert entry["schedule"] == settings.SIGNAL_RETENTION_INTERVAL_S
    assert settings.CELERY_TASK_ROUTES[enforce_retention.name]["queue"] == entry["options"]["queue"]


@pytest.mark.django_db
def test_plain_postgresql_deletes_expired_rows_in_steps(r: Any) -> None:
    if on_timescaledb():
        pytest.skip("TimescaleDB drops expired chunks itself: see test_timescaledb_policies_follow_the_settings")
    old = make_ticks(session_days(date(2026, 10, 5), 3), seed=21, mean_gap_s=120)
    kept = make_ticks(session_days(date(2026, 11, 23), 2), seed=22, mean_gap_s=120)
    store(old + kept)
    other = make_ticks(session_days(date(2026, 10, 5), 1), key="NSE@NIFTY@index", seed=23, mean_gap_s=600)
    store(other, first_id=1_000_000)
    policies = timescale.Policies(ticks_retention_days=30)
    before = retention.cutoff(30, NOW)
    assert retention.enforce(policies, now=NOW, budget_s=0)["signal_ticks"] == 0  # no time: nothing, next run goes on
    done = retention.enforce(policies, now=NOW)
    assert done["signal_ticks"] == len(old) + len(other)
    assert done["signal_computed"] == done["signal_greeks"] == 0
    assert not Tick.objects.filter(time__lt=before).exists()
    assert Tick.objects.count() == len(kept)
    if rollup.enabled():  # the rollup's triggers recorded the deletes: its bars of those days go too
        rollup.refresh_pending()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {rollup.TABLE} WHERE bucket < %s", [before])
            assert cursor.fetchone()[0] == 0
    assert_same_bars(bars_frame(BarsService(r).bars(FUTURE, "5m", 0, 2e9)), reference_bars(kept, "5m"))
    assert retention.enforce(timescale.Policies(0, 0, 0, 0), now=NOW)["signal_ticks"] == 0  # 0 keeps forever
    from signals.tasks import enforce_retention

    # the beat task's body, in this test's transaction (Celery's own call would recycle the connection)
    assert enforce_retention() == {"signal_ticks": 0, "signal_computed": 0, "signal_greeks": 0}


def _jobs() -> dict[tuple[str, str], str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT hypertable_name, proc_name, coalesce(config->>'drop_after', config->>'compress_after') "
                       "FROM timescaledb_information.jobs WHERE proc_name IN ('policy_retention', "
                       "'policy_compression') AND hypertable_name LIKE 'signal_%%'")
        return {(table, proc): age for table, proc, age in cursor.fetchall()}


def _run_jobs(proc: str) -> None:
    """Run the tables' policy jobs now, from this session (TimescaleDB's background runs of them report Failed
    on PostgreSQL 15.20 after doing their work: their status says nothing, their effect does)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s "
                       "AND hypertable_name = 'signal_ticks'", [proc])
        for (job_id,) in cursor.fetchall():
            cursor.execute("CALL run_job(%s)", [job_id])


@pytest.mark.django_db(transaction=True)
def test_timescaledb_policies_follow_the_settings(r: Any) -> None:
    if not on_timescaledb():
        pytest.skip("plain PostgreSQL: see test_plain_postgresql_deletes_expired_rows_in_steps")
    assert _jobs()[("signal_ticks", "policy_retention")] in ("1826 days", "5 years 1 day")
    assert _jobs()[("signal_ticks", "policy_compression")] == "1 day"
    try:
        ran = retention.sync_policies(timescale.Policies(300, 1826, 0, 45))
        # ticks' retention and all three compressions replaced (removed, added), greeks' retention removed
        assert sum(s.startswith("SELECT remove_") for s in ran) == 5
        assert sum(s.startswith("SELECT add_") for s in ran) == 4
        jobs = _jobs()
        assert jobs[("signal_ticks", "policy_retention")] == "300 days"
        assert ("signal_greeks", "policy_retention") not in jobs
        assert {jobs[(t, "policy_compression")] for t in timescale.HYPERTABLES} == {"45 days"}
        assert retention.enforce(timescale.Policies(300, 1826, 0, 45)) == {"policies": 0}  # in line: nothing to do
        # rows older than every refresh policy's window (so no background refresh moves a watermark over them)
        today = datetime.now(UTC).date()
        expired = make_ticks(session_days(today - timedelta(days=420), 1), seed=31, mean_gap_s=300)
        kept = make_ticks(session_days(today - timedelta(days=70), 2), seed=32, mean_gap_s=300)
        store(expired + kept)
        _run_jobs("policy_retention")
        assert Tick.objects.count() == len(kept)
        _run_jobs("policy_compression")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = "
                           "'signal_ticks' AND is_compressed")
            assert cursor.fetchone()[0] >= 2
        # raw ticks from compressed chunks (the aggregates over them: test_timescaledb_layout; these rows may lie
        # below a watermark left by earlier tests, which only a refresh would bring into the aggregates)
        raw = BarsService(r, aggregates=set())
        assert_same_bars(bars_frame(raw.bars(FUTURE, "5m", 0, 2e9)), reference_bars(kept, "5m"))
        assert store(kept, first_id=len(expired) + 1) == 0  # the same batch again, into compressed chunks: nothing
        late = {**kept[10], "ts": kept[10]["ts"] + 0.25, "ltp": 1.0}
        assert store([late], first_id=5_000_000) == 1  # nor refuses a new tick there
        r.flushdb()
        with_late = sorted([*kept, late], key=lambda t: t["ts"])
        assert_same_bars(bars_frame(raw.bars(FUTURE, "1d", 0, 2e9)), reference_bars(with_late, "1d"))
    finally:
        retention.sync_policies(timescale.Policies.from_settings())
    assert _jobs()[("signal_greeks", "policy_retention")] in ("1826 days", "5 years 1 day")


@pytest.mark.django_db
def test_an_import_older_than_the_retention_is_refused_naming_the_setting(tmp_path: Path, settings: Any) -> None:
    from tests.test_import_history import run, tick_file, write

    ticks = make_ticks([date(2025, 6, 19), date(2025, 6, 23)], seed=33, mean_gap_s=300)
    days = (datetime.now(UTC).date() - date(2025, 6, 21)).days
    settings.SIGNAL_TICKS_RETENTION_DAYS = days
    old = [t for t in ticks if t["ts"] < datetime(2025, 6, 21, tzinfo=UTC).timestamp()]
    out, _ = run(tick_file(tmp_path, ticks), "--no-progress", "--show-rejects", "1")
    assert f"{len(ticks)} rows read, {len(old)} rejected; {len(ticks) - len(old)} ticks stored" in out
    assert f"older than the tick retention: SIGNAL_TICKS_RETENTION_DAYS={days} deletes ticks before" in out
    assert "raise it to import this history" in out
    assert Tick.objects.count() == len(ticks) - len(old)
    bars = write(tmp_path / "bars.csv", ["instrument_key", "time", "open", "high", "low", "close"],
                 [[FUTURE, "2025-06-19T04:00:00+00:00", 10, 11, 9, 10],
                  [FUTURE, "2025-06-24T04:00:00+00:00", 10, 11, 9, 10]])
    out, _ = run(bars, "--kind", "bars", "--no-progress")
    assert "2 rows read, 1 rejected; 4 ticks stored" in out and "line 2: older than the tick retention" in out
    settings.SIGNAL_TICKS_RETENTION_DAYS = 0  # kept forever: nothing is too old
    out, _ = run(tick_file(tmp_path, ticks), "--no-progress")
    assert f"0 rejected; {len(old)} ticks stored" in out
