"""A demo-chain session sent through the live stream, the bridge and a worker one tick at a time (each tick its own
batch, as the live service takes a feed it keeps up with), and the records of both sides for comparison."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from feed import keys
from feed.simulator import NiftySession, encode
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.management.commands.seed_demo import DEMO_CONFIGS
from tests.factories import create_config

SESSION_START = datetime(2025, 6, 20, 4, 0, 5, tzinfo=UTC)  # 09:30:05 IST
LIVE_QUEUE = "bt-live"
INDICATORS = {"name": "bt-spot-indicators", "instrument_key": "NSE@NIFTY@index", "interval": "1m",
              "frequency": "every_tick",
              "technical_indicators": [{"name": "sma", "parameters": {"length": 3}, "output_key": "sma3"},
                                       {"name": "ema", "parameters": {"length": 2}, "output_key": "ema2"}]}
EVERY_INTERVAL = {"name": "bt-futures-bars", "instrument_key": "NSE@NIFTY@futures@*", "interval": "1m",
                  "frequency": "every_interval",
                  "internal_functions": [{"name": "price", "parameters": {}}],
                  "technical_indicators": [{"name": "sma", "parameters": {"length": 2}, "output_key": "sma2"}]}


def create_session_configs() -> list[Any]:
    return [create_config(dict(d)) for d in (*DEMO_CONFIGS, INDICATORS, EVERY_INTERVAL)]


def session_ticks(rounds: int = 9, step_s: float = 25.0, strikes: int = 2,
                  late: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(stream, body) of a demo session crossing several one-minute bar closes, with one late spot tick (older
    than the spot's latest) after the fifth round."""
    session = NiftySession(start=SESSION_START, strikes_each_side=strikes, seed=5)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(rounds):
        out += session.round_ticks(option_share=0.6)
        if i == 4 and late:
            late = dict(next(body for _, body in out if body["instrument_key"] == "NSE@NIFTY@index"))
            when = session.now - timedelta(seconds=40)
            late.update(ltp=round(session.spot + 3.5, 2), ltt=when.isoformat(timespec="milliseconds"))
            out.append((keys.tick_stream("NSE@NIFTY"), late))
        session.advance(step_s)
    return out


def instrument_keys(ticks: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return sorted({body["instrument_key"] for _, body in ticks})


def send_live(r: Any, ticks: list[tuple[str, dict[str, Any]]], timeout: float = 30.0) -> None:
    """XADD each tick, let the bridge send it alone, and wait until the worker has acknowledged it."""
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": LIVE_QUEUE,
                                                                                 "NSE@INDVIX": LIVE_QUEUE}),
                          consumer="backtest-test")
    known: set[str] = set()
    try:
        for stream, body in ticks:
            r.xadd(stream, encode(body))
            if stream not in known:
                known.add(stream)
                bridge.discover()
            sent = 0
            deadline = time.monotonic() + timeout
            while sent == 0:
                sent = bridge.handle(bridge.read(), force=True)
                assert time.monotonic() < deadline, "the bridge did not send the tick"
            while r.xpending(stream, "signal_service")["pending"]:
                assert time.monotonic() < deadline, "the worker did not process the tick"
                time.sleep(0.002)
    finally:
        # as a bridge that stops: its stream leases given back now, not left to expire while the caller compares
        # live state before and after something else
        bridge.leases.leave()


def live_records(r: Any, symbols: tuple[str, ...] = ("NSE@NIFTY", "NSE@INDVIX")) -> dict[str, dict[str, Any]]:
    found = {}
    for symbol in symbols:
        for _, entry in r.xrange(keys.output_stream(symbol)):
            record = json.loads(entry[b"data"])
            found[record["record_id"]] = record
    return found


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between two computations of it: the time they took."""
    out = dict(record)
    out["computations"] = [{k: v for k, v in c.items() if k != "execution_time_ms"} for c in record["computations"]]
    return out


def run_records(run_id: Any) -> dict[str, dict[str, Any]]:
    from signals.models import BacktestRecord

    return {row.record["record_id"]: row.record for row in BacktestRecord.objects.filter(run_id=run_id)}


def store_session(ticks: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Store the session's ticks as the live pipeline would have (stream entry ids in sending order), without
    running it; returns the normalised ticks."""
    from feed.ticks import parse_tick
    from signals import storage
    from signals.instrument_registry import register_instruments

    stored = []
    base = 1_750_000_000_000
    for i, (stream, body) in enumerate(ticks):
        tick = parse_tick(encode(body))
        tick["source_id"] = f"{stream}/{base + i}-0"
        stored.append(tick)
    storage.store_ticks(stored)
    register_instruments(sorted({t["instrument_key"] for t in stored}))
    return stored


def run_inline(run: Any) -> Any:
    """Every chunk of a run in this process, underlying by underlying, as ``manage.py backtest --inline`` does."""
    from signals.backtest.chunks import run_chunk
    from signals.models import BacktestState

    for state in BacktestState.objects.filter(run=run):
        chunk = 0
        while not (outcome := run_chunk(str(run.id), state.underlying, chunk, send_next=False)).get("last"):
            assert outcome.get("committed"), outcome
            chunk = outcome["next_chunk"]
    run.refresh_from_db()
    return run
