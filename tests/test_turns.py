"""One underlying's batches run one at a time, in the order sent, however many workers take them (issue 14)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from feed import keys
from signals.ingest import codec, stream_reads, turns
from signals.ingest.bridge import BridgeSettings, StreamBridge
from tests.factories import create_config, fields, price_config, tick
from tests.support import wait_for, waiting_on_locks, worker_database_url

STREAM = "tick_stream:NSE@NIFTY"
SPOT = "NSE@NIFTY@index"
FUTURE = "NSE@NIFTY@futures@2025-06-26"



def test_a_batch_waits_for_the_earlier_tickets_of_its_underlying(r: Any) -> None:
    first, second = turns.take_tickets(r, ["NSE@NIFTY", "NSE@NIFTY"])
    (other,) = turns.take_tickets(r, ["NSE@BANKNIFTY"])
    assert (first, second, other) == (1, 2, 1)
    assert turns.wait_turn(r, "NSE@BANKNIFTY", other, 1, 1) == turns.TURN  # other underlyings do not wait
    assert r.get(keys.batch_holder("NSE@BANKNIFTY")) is None  # only looked
    # found in its turn, the ticket holds it from the same round trip on
    assert turns.wait_turn(r, "NSE@NIFTY", first, 1, 1, hold_s=5) == turns.TURN
    assert int(r.get(keys.batch_holder("NSE@NIFTY"))) == first and 4000 < r.pttl(keys.batch_holder("NSE@NIFTY")) <= 5000
    started = time.monotonic()
    # the first runs: waited the whole wait, and never sent to the back of its queue
    assert turns.wait_turn(r, "NSE@NIFTY", second, 0.3, 0.05, queued=lambda: True) == turns.LATE
    assert time.monotonic() - started >= 0.3
    turns.finish_turn(r, "NSE@NIFTY", first)
    assert turns.wait_turn(r, "NSE@NIFTY", second, 1, 1) == turns.TURN
    pipe = r.pipeline(transaction=False)  # as a worker's last round trip carries it
    turns.finish_turn(r, "NSE@NIFTY", second, pipe)
    pipe.execute()
    assert int(r.get(keys.batch_done("NSE@NIFTY"))) == 2
    turns.finish_turn(r, "NSE@NIFTY", first)  # a late finish never moves the mark back
    assert int(r.get(keys.batch_done("NSE@NIFTY"))) == 2


def test_bridges_hold_an_underlying_while_any_bridge_has_a_batch_of_it_unfinished(r: Any) -> None:
    (first,) = turns.take_tickets(r, ["NSE@NIFTY"])
    assert turns.unfinished(r, ["NSE@NIFTY", "NSE@BANKNIFTY"]) == {"NSE@NIFTY"}
    turns.finish_turn(r, "NSE@NIFTY", first)
    assert turns.unfinished(r, ["NSE@NIFTY", "NSE@BANKNIFTY"]) == set()


def test_a_ticket_nobody_holds_holds_the_next_only_for_the_grace(r: Any) -> None:
    lost, waiting = turns.take_tickets(r, ["NSE@NIFTY", "NSE@NIFTY"])  # the first one's worker died before it ran
    started = time.monotonic()
    assert turns.wait_turn(r, "NSE@NIFTY", waiting, 30, 0.2) == turns.LATE
    assert time.monotonic() - started < 5
    # while a task waits in its queue, the batch goes to the back of it instead (the lost one may be that task)
    asked = []
    assert turns.wait_turn(r, "NSE@NIFTY", waiting, 30, 5, queued=lambda: asked.append(1) or len(asked) > 2) \
        == turns.DEFER
    assert len(asked) == 3


@pytest.mark.django_db(transaction=True)
def test_batches_of_two_bridges_queued_out_of_ticket_order_run_in_ticket_order(r: Any, start_worker: Any) -> None:
    """Bridge A takes its ticket first but publishes after bridge B: the one worker of the queue gets B's batch
    first, sends it to the back of the queue, and runs A's before it."""
    create_config(price_config("every-tick"))
    routes = {"NSE@NIFTY": "turns-test"}
    held: list[tuple] = []
    # both read the one stream: no leases (with them, a stream changes hands only between batches)
    first = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes=routes, stream_lease_s=0), consumer="a",
                         queue_lengths=lambda queues: [0] * len(queues), send_task=lambda *a: held.append(a))
    second = StreamBridge(r, first.config, consumer="b", queue_lengths=lambda queues: [0] * len(queues))
    # a long grace: on a loaded machine the held batch's publication may come late, and the worker must then still
    # send the later batch back rather than give up waiting and run it out of turn
    # and one task reserved, as a prefork process reserves: a solo pool reserving more (its default, the CPU count)
    # can hold the earlier batch unacknowledged behind the later one, out of sight of any queue check
    start_worker("turns-test", extra_env={"SIGNAL_TURN_GRACE_S": "20"}, concurrency=1)
    r.xadd(STREAM, fields(tick(SPOT, 24030, at=30)))
    for bridge in (first, second):
        bridge.discover()
    second.handle(second.read())
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0
             and not turns.unfinished(r, ["NSE@NIFTY"]))  # acknowledged, then its turn marked done

    r.xadd(STREAM, fields(tick(SPOT, 24061, at=61)))
    assert first.handle(first.read()) == 1  # ticket taken, not yet published
    r.xadd(STREAM, fields(tick(SPOT, 24062, at=62)))
    # the next ticket, published at once (forced: as if both bridges had seen the underlying idle at once)
    assert second.handle(second.read(), force=True) == 1
    time.sleep(0.3)  # the worker holds the later batch, waiting for the earlier one
    codec.celery_send(*held[0])
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0, timeout=30)

    records = {rec["timestamp"][11:19]: rec["computations"][0]["results"]
               for rec in map(json.loads, r.lrange(keys.output_list(SPOT), 0, -1))}
    assert records["04:01:01"]["previous_ltp"] == 24030
    assert records["04:01:02"]["previous_ltp"] == 24061  # against the tick before it, not the one before that


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_underlying_fire_each_bar_close_once_against_the_tick_before(
        r: Any, start_worker: Any) -> None:
    from signals.models import ComputedSignal

    create_config(price_config("per-minute", frequency="every_interval", interval="1m"))
    # no stream leases: the other bridge below reads the same stream, as after a lease ran out during a long pause
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "turns-test"},
                                     stream_lease_s=0),
                          consumer="bridge", queue_lengths=lambda queues: [0] * len(queues))
    start_worker("turns-test", name="a")
    start_worker("turns-test", name="b")
    r.xadd(STREAM, fields(tick(SPOT, 24030, at=30)))
    bridge.discover()
    bridge.handle(bridge.read())
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0
             and not turns.unfinished(r, ["NSE@NIFTY"]))  # acknowledged, then its turn marked done

    with psycopg.connect(worker_database_url(), autocommit=False) as locker, \
            psycopg.connect(worker_database_url(), autocommit=True) as observer:
        # The first batch registers a new instrument: held there, before it reads or writes any latest value.
        locker.execute("LOCK TABLE signal_instruments IN EXCLUSIVE MODE")
        r.xadd(STREAM, fields(tick(FUTURE, 24100, at=59)))
        r.xadd(STREAM, fields(tick(SPOT, 24061, at=61)))
        bridge.handle(bridge.read())
        wait_for(lambda: waiting_on_locks(observer, 'INSERT INTO "signal_instruments"') == 1)
        # The next batch, read by another bridge, which holds it while the first runs, but only for
        # SIGNAL_TURN_GRACE_S (forced here: as if that had passed), and taken by the other worker, which waits for
        # its turn.
        r.xadd(STREAM, fields(tick(SPOT, 24062, at=62)))
        other = StreamBridge(r, bridge.config, consumer="other-bridge", queue_lengths=lambda queues: [0] * len(queues))
        other.discover()
        assert other.handle(other.read()) == 0  # held: the first bridge's batch has not finished
        assert other.handle([], force=True) == 1
        time.sleep(3.0)  # longer than SIGNAL_TURN_GRACE_S: the other worker waits because this one runs
        locker.rollback()
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0, timeout=30)

    records = [json.loads(x) for x in r.lrange(keys.output_list(SPOT), 0, -1)]
    fired = [rec for rec in records if rec["config_name"] == "per-minute"]
    # one bar close, fired once: by the first tick of the new bar, against the last tick of the closed one
    assert [rec["timestamp"][11:19] for rec in fired] == ["04:01:01"]
    assert fired[0]["computations"][0]["results"]["previous_ltp"] == 24030
    assert ComputedSignal.objects.filter(instrument_key=SPOT).count() == 1


def test_the_turn_state_read_with_the_streams_is_not_asked_again(r: Any) -> None:
    group = "ride-along"
    names = [keys.tick_stream(symbol) for symbol in ("NSE@NIFTY", "NSE@BANKNIFTY", "NSE@RELIANCE")]
    for name in names:
        r.xgroup_create(name, group, id="0", mkstream=True)
        r.xadd(name, fields(tick(price=24000.0)))
    r.set(keys.batch_ticket("NSE@NIFTY"), 3)
    r.set(keys.batch_done("NSE@NIFTY"), 2)
    symbols = ["NSE@NIFTY", "NSE@BANKNIFTY", "NSE@FINNIFTY"]
    entries, state = stream_reads.read_new(r, group, "bridge-1", names, 10, 100, turns.state_keys(symbols))
    assert sorted(stream for stream, _, _ in entries) == sorted(names)  # one entry from each stream (each node)
    nowhere = redis_lib.Redis(port=1, socket_connect_timeout=0.2)  # any round trip would fail
    assert turns.unfinished(nowhere, symbols, state) == {"NSE@NIFTY"}
    r.set(keys.batch_ticket("NSE@MIDCPNIFTY"), 1)
    assert turns.unfinished(r, [*symbols, "NSE@MIDCPNIFTY"], state) == {"NSE@NIFTY", "NSE@MIDCPNIFTY"}
