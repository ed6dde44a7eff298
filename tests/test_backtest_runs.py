"""Backtest runs from stored ticks: time-driven frequencies fire at their exchange times in tick time; a run on two
workers, one of them killed mid-run, equals a run on one worker."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from signals.backtest import progress
from signals.backtest.runs import create_run
from signals.models import BacktestState
from tests.backtest_helpers import (
    SESSION_START,
    comparable,
    create_session_configs,
    run_inline,
    run_records,
    session_ticks,
    store_session,
)
from tests.support import wait_for

IST = ZoneInfo("Asia/Kolkata")
PRICE = [{"name": "price", "parameters": {}}]


def period(record: dict[str, Any]) -> str:
    """The schedule period in a time-driven record's id (``config:period:source``)."""
    return record["record_id"].split(":", 1)[1].split(":tick_stream:")[0]


def documents(*frequencies: str) -> list[dict[str, Any]]:
    return [{"name": f"bt-timed-{i}", "instrument_key": "NSE@NIFTY@index", "frequency": frequency,
             "internal_functions": PRICE} for i, frequency in enumerate(frequencies)]


@pytest.mark.django_db(transaction=True)
def test_time_driven_frequencies_fire_at_their_exchange_times_in_tick_time() -> None:
    stored = store_session(session_ticks(rounds=9))
    start, end = SESSION_START - timedelta(minutes=1), SESSION_START + timedelta(minutes=5)
    run = run_inline(create_run(name="timed", start=start, end=end, instruments=["NSE@NIFTY@index"],
                                config_names=[], config_documents=documents("30s", "daily@09:31"), send=False))
    assert run.status == "completed"
    records = list(run_records(run.id).values())
    spot = sorted((t for t in stored if t["instrument_key"] == "NSE@NIFTY@index"), key=lambda t: t["ts"])

    def held_at(at: float) -> dict[str, Any] | None:
        before = [t for t in spot if t["ts"] <= at]
        return before[-1] if before else None

    fired = sorted((period(r), r["tick_data"]["ts"]) for r in records if r["config_id"] == -1)
    expected = []
    for slot in range(math.ceil(start.timestamp() / 30), math.ceil(end.timestamp() / 30)):
        tick = held_at(slot * 30.0)
        if tick is not None:
            expected.append((f"every-30s@{slot}", tick["ts"]))
    assert len(expected) >= 8 and fired == sorted(expected)

    daily = [r for r in records if r["config_id"] == -2]
    at = datetime(2025, 6, 20, 9, 31, tzinfo=IST)
    assert [(period(r), r["tick_data"]["ts"]) for r in daily] == [
        ("cron-31_9_x_x_x@2025-06-20T09:31", held_at(at.timestamp())["ts"])]
    assert all(c["success"] for r in records for c in r["computations"])


def wait_done(run: Any, timeout: float = 90.0, resume: bool = False) -> Any:
    def done() -> bool:
        run.refresh_from_db()
        if resume:
            progress.resume_stalled(run, stall_s=1.0)  # as the command's and the API's status reads do
        return run.status in ("completed", "failed")

    wait_for(done, timeout=timeout, interval=0.1)
    assert run.status == "completed", run.error
    return run


@pytest.mark.django_db(transaction=True)
def test_two_workers_one_killed_mid_run_give_the_records_of_one_worker(start_worker: Any) -> None:
    create_session_configs()
    stored = store_session(session_ticks(rounds=16, step_s=10.0, strikes=6))
    env = {"SIGNAL_BACKTEST_CHUNK_TICKS": "25"}

    def start_run() -> Any:
        return create_run(name="workers", start=SESSION_START, end=SESSION_START + timedelta(minutes=5),
                          instruments=["NSE@*"], config_names=[], config_documents=[])

    one = start_worker("backtest", name="b1", extra_env=env)
    reference = wait_done(start_run())
    one.stop()
    assert reference.underlyings.keys() == {"NSE@NIFTY", "NSE@INDVIX"}
    assert progress.summary(reference)["counts"]["ticks"] == len(stored)

    doomed = start_worker("backtest", name="b2", extra_env=env)
    start_worker("backtest", name="b3", extra_env=env)
    run = start_run()
    wait_for(lambda: BacktestState.objects.filter(run=run, underlying="NSE@NIFTY", next_chunk__gte=3).exists(),
             timeout=60, interval=0.01)
    doomed.stop(kill=True)  # SIGKILL: its chunk in hand is neither committed nor acknowledged
    assert BacktestState.objects.get(run=run, underlying="NSE@NIFTY").done is False  # killed mid-run
    wait_done(run, resume=True)
    assert {k: comparable(v) for k, v in run_records(run.id).items()} == {
        k: comparable(v) for k, v in run_records(reference.id).items()}
    assert progress.summary(run)["counts"] == progress.summary(reference)["counts"]


def test_next_fire_uses_the_schedule_code() -> None:
    from configs.frequency import parse_frequency
    from signals.backtest.replay import next_fire

    at = datetime(2025, 6, 20, 9, 30, 59, tzinfo=IST).timestamp()
    assert next_fire(parse_frequency("30s"), at) == datetime(2025, 6, 20, 9, 31, tzinfo=IST).timestamp()
    assert datetime.fromtimestamp(next_fire(parse_frequency("on_close"), at), UTC).astimezone(IST) == datetime(
        2025, 6, 20, 15, 30, tzinfo=IST)
    # a Friday's close is followed by Monday's
    friday_close = datetime(2025, 6, 20, 15, 30, tzinfo=IST).timestamp()
    assert datetime.fromtimestamp(next_fire(parse_frequency("on_close"), friday_close), IST) == datetime(
        2025, 6, 23, 15, 30, tzinfo=IST)


@pytest.mark.django_db(transaction=True)
def test_batches_give_the_same_greeks_and_functions_with_moneyness_once_per_batch() -> None:
    create_session_configs()
    store_session(session_ticks(rounds=6, strikes=3, late=False))  # a late tick's neighbours see it in a batch

    def results(batch_ticks: int) -> dict[str, dict[str, Any]]:
        run = run_inline(create_run(name=f"b{batch_ticks}", start=SESSION_START, instruments=["NSE@*"],
                                    end=SESSION_START + timedelta(minutes=5), config_names=[], config_documents=[],
                                    send=False, batch_ticks=batch_ticks))
        assert run.status == "completed" and run.batch_ticks == batch_ticks
        return run_records(run.id)

    alone, batched = results(1), results(30)

    def by_type(records: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
        return {record_id: [c["results"] for c in r["computations"] if c["computation_type"] == kind]
                for record_id, r in records.items() if any(c["computation_type"] == kind for c in r["computations"])}

    for kind in ("greeks", "internal_function"):
        a, b = by_type(alone, kind), by_type(batched, kind)
        diff = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        assert not diff and a, diff[:2]
    assert 0 < len(by_type(batched, "moneyness")) < len(by_type(alone, "moneyness"))


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_chunk_was_lost_finishes_by_the_periodic_check_alone(start_worker: Any, tmp_path: Any) -> None:
    from django.conf import settings

    from tests.test_scheduling_beat import BeatProcess

    create_session_configs()
    stored = store_session(session_ticks(rounds=4, strikes=2))
    env = {"SIGNAL_BACKTEST_STALL_S": "1", "SIGNAL_BACKTEST_CHECK_S": "1", "SIGNAL_BACKTEST_CHUNK_TICKS": "25"}
    # the first chunk's message is never sent: as if the worker holding it died and the broker never gave it back
    run = create_run(name="lost", start=SESSION_START, end=SESSION_START + timedelta(minutes=5), instruments=["NSE@*"],
                     config_names=[], config_documents=[], send=False)
    start_worker(f"{settings.SIGNAL_DEFAULT_QUEUE},backtest", name="bt-check", extra_env=env)
    time.sleep(2.0)
    run.refresh_from_db()
    assert run.status == "running" and not BacktestState.objects.filter(run=run, next_chunk__gt=0).exists()

    beat = BeatProcess(tmp_path, "bt-check", env)
    try:
        def done() -> bool:
            run.refresh_from_db()  # a plain read: no status read sends anything
            return run.status in ("completed", "failed")

        wait_for(done, timeout=60, interval=0.2)
    finally:
        beat.stop()
    assert run.status == "completed", run.error
    assert beat.sent("backtest-resume-stalled") >= 1
    assert progress.summary(run)["counts"]["ticks"] == len(stored)
    assert BacktestState.objects.get(run=run, underlying="NSE@NIFTY").next_chunk >= 2  # chunks followed on
