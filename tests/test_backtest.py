"""Backtests (issue 12): a session sent through the live stream, bridge and worker, then replayed from the stored
ticks, gives the same records number for number; replays never touch live state; runs are repeatable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from signals.backtest import progress
from signals.backtest.runs import create_run
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


def replay(ticks: list[Any], **kwargs: Any) -> Any:
    return create_run(name="test", start=SESSION_START - timedelta(minutes=1),
                      end=SESSION_START + timedelta(minutes=10), instruments=kwargs.pop("instruments", ["NSE@*"]),
                      config_names=kwargs.pop("config_names", []), config_documents=[], **kwargs)


@pytest.mark.django_db(transaction=True)
def test_replay_of_a_live_session_gives_the_live_records(r: Any, start_worker: Any) -> None:
    create_session_configs()
    ticks = session_ticks()
    register_instruments(instrument_keys(ticks))  # the registry lists the chain before the session, as live
    worker = start_worker(f"{LIVE_QUEUE},backtest", extra_env=CHUNK)
    send_live(r, ticks)
    live = live_records(r)
    kinds = {(rec["config_name"], c["computation_type"]) for rec in live.values() for c in rec["computations"]}
    assert {("nifty-chain-greeks", "greeks"), ("nifty-chain-greeks", "moneyness"),
            ("bt-spot-indicators", "technical_indicators"), ("bt-futures-bars", "technical_indicators"),
            ("nifty-price", "internal_function")} <= kinds
    closes = [rec for rec in live.values() if rec["config_name"] == "bt-futures-bars"]
    assert len(closes) >= 6  # two futures, at least three bar closes each

    run = finished(replay(ticks), worker)
    replayed = run_records(run.id)
    assert sorted(replayed) == sorted(live)
    for record_id, record in live.items():
        assert comparable(replayed[record_id]) == comparable(record), record_id
    spot = [rec["tick_data"]["ts"] for rec in live.values() if rec["config_name"] == "nifty-price"
            and rec["instrument_key"] == "NSE@NIFTY@index"]
    assert any(b < a for a, b in zip(spot, spot[1:], strict=False))  # the late tick is among them
    assert BacktestState.objects.get(run=run, underlying="NSE@NIFTY").next_chunk >= 3  # continued from checkpoints
    summary = progress.summary(run)
    assert summary["counts"]["ticks"] == len(ticks) and summary["counts"]["records"] == len(live)
    assert summary["progress"]["fraction"] == 1.0
