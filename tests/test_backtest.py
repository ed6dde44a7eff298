"""Backtests (issue 12): a session sent through the live stream, bridge and worker, then replayed from the stored
ticks, gives the same records number for number; replays never touch live state; runs are repeatable."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from feed.latest import LatestStore
from signals.backtest import progress
from signals.backtest.runs import create_run
from signals.backtest.state import RunState
from signals.bars.store import BarsService
from signals.instrument_registry import register_instruments
from signals.models import BacktestState
from tests.backtest_helpers import (
    LIVE_QUEUE,
    SESSION_START,
    comparable,
    create_session_configs,
    instrument_keys,
    live_records,
    run_records,
    send_live,
    session_ticks,
)
from tests.support import wait_for

CHUNK = {"SIGNAL_BACKTEST_CHUNK_TICKS": "40"}


def finished(run: Any, *workers: Any, timeout: float = 120.0) -> Any:
    def done() -> bool:
        run.refresh_from_db()
        return run.status in ("completed", "failed")

    try:
        wait_for(done, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError("run not finished:\n" + "".join(line for w in workers for line in w.lines
                                                      if "process_ticks" not in line)[-6000:]) from None
    assert run.status == "completed", run.error
    return run


def replay(end: timedelta = timedelta(minutes=10), **kwargs: Any) -> Any:
    return create_run(name="test", start=SESSION_START - timedelta(minutes=1), end=SESSION_START + end, instruments=kwargs.pop("instruments", ["NSE@*"]),
                      config_names=kwargs.pop("config_names", []), config_documents=[], **kwargs)


def comparable_all(records: dict[str, Any]) -> dict[str, Any]:
    return {record_id: comparable(record) for record_id, record in records.items()}


def redis_snapshot(r: Any) -> dict[bytes, bytes]:
    """Every key and its value, but the turn holders, which a finished batch leaves to expire within seconds."""
    return {key: r.dump(key) for key in r.keys("*") if not key.endswith(b":holder")}


def live_tables() -> list[Any]:
    with connection.cursor() as cursor:
        found = []
        for table, order in (("signal_ticks", "instrument_key, time, source_id"),
                             ("signal_computed", "instrument_key, time, source_id, config_id, name"),
                             ("signal_greeks", "instrument_key, time, source_id, config_id, price_field")):
            cursor.execute(f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY {order})) FROM {table} t")
            found.append((table, *cursor.fetchone()))
        return found


@pytest.mark.django_db(transaction=True)
def test_replay_of_a_live_session_gives_the_live_records_and_leaves_live_state_alone(
        r: Any, start_worker: Any) -> None:
    create_session_configs()
    ticks = session_ticks()
    cut = timedelta(seconds=125)  # the sixth round's time: the late tick (sent after the fifth) is before it
    split = next(i for i, (_, body) in enumerate(ticks) if datetime.fromisoformat(body["ltt"]) >= SESSION_START + cut)
    first, second = ticks[:split], ticks[split:]
    register_instruments(instrument_keys(ticks))  # the registry lists the chain before the session, as live
    worker = start_worker(f"{LIVE_QUEUE},backtest", extra_env=CHUNK)
    send_live(r, first)

    # A replay writes nothing live: every Redis key and every live table is as it was.
    redis_before, tables_before = redis_snapshot(r), live_tables()
    alone = finished(replay(cut), worker)
    assert redis_snapshot(r) == redis_before and live_tables() == tables_before
    assert len(run_records(alone.id)) > 50

    # A replay while live ticks flow: the worker takes both queues' tasks in turn (chunks of 40 ticks).
    during = replay(cut)
    send_live(r, second)
    finished(during, worker)
    assert comparable_all(run_records(during.id)) == comparable_all(run_records(alone.id))  # two runs: identical
    latest = LatestStore(r)
    last_of = {body["instrument_key"]: body for _, body in sorted(ticks, key=lambda t: t[1]["ltt"])}
    for key, body in last_of.items():
        assert latest.get(key)["ltp"] == body["ltp"], key

    live = live_records(r)
    kinds = {(rec["config_name"], c["computation_type"]) for rec in live.values() for c in rec["computations"]}
    assert {("nifty-chain-greeks", "greeks"), ("nifty-chain-greeks", "moneyness"),
            ("bt-spot-indicators", "technical_indicators"), ("bt-futures-bars", "technical_indicators"),
            ("nifty-price", "internal_function")} <= kinds
    closes = [rec for rec in live.values() if rec["config_name"] == "bt-futures-bars"]
    assert len(closes) >= 6  # two futures, at least three bar closes each

    # The whole session replayed: the live records, record for record, number for number (a live state the
    # concurrent replay had touched would show here), and the live bars equal the run's own.
    run = finished(replay(), worker)
    replayed = run_records(run.id)
    assert sorted(replayed) == sorted(live)
    for record_id, record in live.items():
        assert comparable(replayed[record_id]) == comparable(record), record_id
    spot = [rec["tick_data"]["ts"] for rec in live.values() if rec["config_name"] == "nifty-price"
            and rec["instrument_key"] == "NSE@NIFTY@index"]
    assert any(b < a for a, b in zip(spot, spot[1:], strict=False))  # the late tick is among them
    assert BacktestState.objects.get(run=run, underlying="NSE@NIFTY").next_chunk >= 3  # continued from checkpoints
    end = SESSION_START.timestamp() + 600
    run_bars = RunState.load(BacktestState.objects.get(run=run, underlying="NSE@NIFTY").state).bars()
    for key in ("NSE@NIFTY@index", next(k for k in last_of if "@futures@" in k)):
        assert BarsService(r).recent(key, "1m", end, 20) == run_bars.recent(key, "1m", end, 20)
    summary = progress.summary(run)
    assert summary["counts"]["ticks"] == len(ticks) and summary["counts"]["records"] == len(live)
    assert summary["progress"]["fraction"] == 1.0
