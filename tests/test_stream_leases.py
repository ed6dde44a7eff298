"""Each tick stream is read by one bridge at a time, and the streams are shared out among the live bridges (issue
14): a starting bridge takes over its share, a stopping or dead bridge's streams are read again by the others."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from feed import keys
from signals.ingest import turns
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.ingest.stream_leases import StreamLeases
from tests.factories import fields, tick
from tests.test_bridge import Recorder

STREAMS = [f"tick_stream:NSE@{name}" for name in ("NIFTY", "BANKNIFTY", "FINNIFTY")]
SPOTS = {"NIFTY": 24000, "BANKNIFTY": 52000, "FINNIFTY": 23000}
LEASE_S = 0.6


def owners(r: Any) -> dict[str, str | None]:
    return {stream: (r.get(keys.stream_owner(stream)) or b"").decode() or None for stream in STREAMS}


def step_all(bridges: list[Any], seconds: float) -> None:
    """Run the bridges' loops side by side for a while (each read blocks 50 ms at most)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for bridge in bridges:
            bridge.step()


def add_ticks(r: Any, at: int) -> None:
    for name, spot in SPOTS.items():
        r.xadd(f"tick_stream:NSE@{name}", fields(tick(f"NSE@{name}@index", spot + at, at=at)))


class Worker(Recorder):
    """Acknowledges each batch and finishes its turn, as a worker does once it is processed."""

    def __call__(self, ticks: list[dict[str, Any]], queue: str, ticket: int) -> None:
        super().__call__(ticks, queue, ticket)
        turns.finish_turn(self.client, ticks[0]["symbol_key"], ticket)


def make_bridge(r: Any, consumer: str) -> tuple[StreamBridge, Worker]:
    worker = Worker(r)
    config = replace(BridgeSettings.from_django(), stream_lease_s=LEASE_S, max_wait_ms=0)
    return StreamBridge(r, config, consumer=consumer, send_task=worker), worker


def test_each_stream_has_one_owner_and_a_new_bridge_takes_its_share(r: Any) -> None:
    first = StreamLeases(r, "a", LEASE_S)
    assert first.readable(STREAMS) == STREAMS  # alone: every stream
    second = StreamLeases(r, "b", LEASE_S)
    assert second.readable(STREAMS) == []  # all owned: it waits for the first to give some back
    time.sleep(LEASE_S / 3)
    kept = first.readable(STREAMS)
    assert len(kept) == 2 and first.beyond_share() == sorted(set(STREAMS) - set(kept))
    first.release(first.beyond_share())
    time.sleep(LEASE_S / 3)
    taken = second.readable(STREAMS)
    assert len(taken) == 1 and set(taken) | set(kept) == set(STREAMS)
    assert sorted(owner for owner in owners(r).values()) == ["a", "a", "b"]


def test_a_dead_bridges_streams_are_taken_once_its_leases_end(r: Any) -> None:
    dead = StreamLeases(r, "dead", LEASE_S)
    assert dead.readable(STREAMS) == STREAMS
    survivor = StreamLeases(r, "survivor", LEASE_S)
    assert survivor.readable(STREAMS) == []
    time.sleep(LEASE_S + 0.1)  # the dead one renews nothing
    assert survivor.readable(STREAMS) == STREAMS
    assert set(owners(r).values()) == {"survivor"}


def test_two_bridges_send_each_streams_ticks_from_one_bridge_and_a_stopping_one_hands_over(r: Any) -> None:
    add_ticks(r, at=0)
    (a, sent_a), (b, sent_b) = (make_bridge(r, name) for name in ("a", "b"))
    for bridge in (a, b):
        bridge.discover()
    step_all([a, b], 2 * LEASE_S)  # settled: a took all at first, then gave b its share
    for at in range(1, 6):
        add_ticks(r, at)
        step_all([a, b], 0.2)
    assert len(sent_a.ticks) + len(sent_b.ticks) == 18  # every tick once
    readers: dict[str, set[str]] = {}
    for name, sent in (("a", sent_a), ("b", sent_b)):
        for settled in (t for t in sent.ticks if int(t["ltp"]) % 100 >= 1):
            readers.setdefault(settled["symbol_key"], set()).add(name)
    assert all(len(names) == 1 for names in readers.values()), readers  # one bridge per stream
    assert set().union(*readers.values()) == {"a", "b"}  # and both at work

    b.run(lambda: True)  # stops: sends what it holds and gives its leases back
    assert "b" not in owners(r).values()
    add_ticks(r, at=6)
    step_all([a], LEASE_S)
    assert {t["symbol_key"] for t in sent_a.ticks if int(t["ltp"]) % 100 == 6} == {f"NSE@{n}" for n in SPOTS}
