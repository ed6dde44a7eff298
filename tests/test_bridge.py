"""The stream bridge, one step at a time, against real Redis (and the real pipeline where ticks are processed)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from signals.ingest import turns
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.ingest.entries import EntryLease, acknowledge
from tests.factories import fields, tick

STREAM = "tick_stream:NSE@NIFTY"


class Recorder:
    """Collects (queue, ticks) the bridge sends; can be told to fail like an unreachable broker. With a client, it
    also acknowledges the entries it gets, as a worker does once their batch is processed."""

    def __init__(self, client: Any = None) -> None:
        self.sent: list[tuple[str, list[dict[str, Any]]]] = []
        self.fail = False
        self.client = client

    def __call__(self, ticks: list[dict[str, Any]], queue: str, ticket: int) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((queue, ticks, ticket))
        if self.client is not None:
            acknowledge(self.client, "signal_service", ticks)

    @property
    def ticks(self) -> list[dict[str, Any]]:
        return [t for _, batch, _ in self.sent for t in batch]


def make_bridge(r: Any, consumer: str = "c1", processed: bool = True, **overrides: Any) -> tuple[StreamBridge, Recorder]:
    recorder = Recorder(r if processed else None)
    config = replace(BridgeSettings.from_django(), **overrides)
    return StreamBridge(r, config, consumer=consumer, send_task=recorder), recorder


def pending(r: Any, stream: str = STREAM) -> int:
    return r.xpending(stream, "signal_service")["pending"]


def test_discovery_finds_streams_by_pattern_and_creates_groups(r: Any) -> None:
    r.xadd("tick_stream:NSE@NIFTY", fields(tick()))
    r.xadd("tick_stream:NSE@BANKNIFTY", fields(tick("NSE@BANKNIFTY@index", 52000)))
    r.xadd("tick_stream:dead", {"x": "1"})
    r.xadd("other_stream", {"x": "1"})
    bridge, _ = make_bridge(r)
    assert bridge.discover() is True
    assert bridge.streams == ["tick_stream:NSE@BANKNIFTY", "tick_stream:NSE@NIFTY"]
    assert [g["name"] for g in r.xinfo_groups("tick_stream:NSE@NIFTY")] == [b"signal_service"]
    assert bridge.discover() is False


def test_a_busy_bridge_spreads_a_discovery_pass_over_its_steps(r: Any) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(3000):  # the service's own keys share the keyspace with the tick streams
        pipe.set(f"signal:emitted:{i:06d}", "1", ex=60)
    pipe.execute()
    r.xadd("tick_stream:NSE@BANKNIFTY", fields(tick("NSE@BANKNIFTY@index", 52000)))
    bridge, _ = make_bridge(r)
    bridge.SCAN_COUNT = 100
    calls, joined_at = 0, []
    while True:  # a budget of 0: one SCAN call a time, going on from where the previous one stopped
        calls += 1
        if bridge.discover(budget_s=0):
            joined_at.append(calls)
        if not bridge.discovery_under_way:
            break
        assert calls < 200
    assert len(joined_at) == 1 and bridge.streams == ["tick_stream:NSE@BANKNIFTY"]
    assert calls >= 10  # 3,001 keys at about 100 a call, in one pass
    r.xadd(STREAM, fields(tick()))
    assert bridge.discover() is True and bridge.streams == ["tick_stream:NSE@BANKNIFTY", STREAM]

    for name in ("tick_stream:NSE@BANKNIFTY", STREAM):
        r.xtrim(name, maxlen=0)  # nothing left to read: after its one busy step the next bridge finds itself idle
    stepping, sent = make_bridge(r, consumer="c2", discovery_interval_s=0)
    stepping.SCAN_COUNT, stepping.DISCOVERY_STEP_S = 100, 0.0
    assert stepping.discover() is True  # a whole pass joins both streams
    r.xadd(STREAM, fields(tick()))
    stepping.step()  # idle: the pass runs to its end; then the read brings the tick
    assert len(sent.ticks) == 1
    stepping.step()  # the last read brought ticks: one part of the pass, then on to reading
    assert stepping.discovery_under_way
    stepping.step()  # its read found nothing: idle, the pass runs to its end
    assert not stepping.discovery_under_way and stepping.streams == ["tick_stream:NSE@BANKNIFTY", STREAM]


def test_sharded_stream_names_work_through_patterns(r: Any) -> None:
    for shard in range(3):
        r.xadd(f"stream:shard:{shard}", fields(tick(ltp=24000 + shard, at=shard)))
    bridge, recorder = make_bridge(r, patterns=["stream:shard:*"])
    bridge.discover()
    bridge.handle(bridge.read())
    assert sorted(t["ltp"] for t in recorder.ticks) == [24000, 24001, 24002]


def test_ticks_published_before_the_group_existed_are_processed(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    r.xadd(STREAM, fields(tick(at=1)))
    bridge, recorder = make_bridge(r)
    bridge.discover()
    assert bridge.handle(bridge.read()) == 2 and len(recorder.ticks) == 2


def test_batch_is_grouped_by_underlying_and_routed_to_its_queue(r: Any) -> None:
    r.xadd(STREAM, fields(tick("NSE@NIFTY@index", at=0)))
    r.xadd(STREAM, fields(tick("NSE@NIFTY@options@2025-06-26@CE@24000", 120, at=1)))
    r.xadd("tick_stream:NSE@BANKNIFTY", fields(tick("NSE@BANKNIFTY@index", 52000, at=2)))
    r.xadd("tick_stream:NSE@INDVIX", fields(tick("NSE@INDVIX@index", 14.2, at=3)))
    bridge, recorder = make_bridge(r, queue_routes={"NSE@NIFTY": "nifty"}, default_queue="signals")
    bridge.discover()
    bridge.handle(bridge.read())
    by_queue = {(q, tuple(sorted(t["instrument_key"] for t in ticks if not t.get("context"))))
                for q, ticks, _ in recorder.sent}
    assert by_queue == {
        ("nifty", ("NSE@NIFTY@index", "NSE@NIFTY@options@2025-06-26@call@24000")),
        ("signals", ("NSE@BANKNIFTY@index",)),
        ("signals", ("NSE@INDVIX@index",)),
    }
    assert len(recorder.sent) == 3  # one task per underlying per read, never one per tick
    nifty = next(ticks for q, ticks, _ in recorder.sent if q == "nifty")  # its options get INDVIX along, as context
    assert [t["instrument_key"] for t in nifty if t.get("context")] == ["NSE@INDVIX@index"]
    assert pending(r) == 0


def test_malformed_tick_goes_to_dead_letter_and_the_rest_is_processed(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    bad_id = r.xadd(STREAM, {"data": "{not json", "note": "keep me"})
    r.xadd(STREAM, fields({"instrument_key": "NSE@NIFTY@index", "ltp": -5, "ltt": "1750393800"}))
    r.xadd(STREAM, fields(tick(at=1)))
    bridge, recorder = make_bridge(r)
    bridge.discover()
    bridge.handle(bridge.read())
    assert len(recorder.ticks) == 2
    dead = r.xrange("tick_stream:dead")
    assert len(dead) == 2
    first = dead[0][1]
    assert first[b"data"] == b"{not json" and first[b"note"] == b"keep me"
    assert b"not valid JSON" in first[b"error"]
    assert first[b"source_stream"] == STREAM.encode() and first[b"source_id"] == bad_id
    assert b"negative" in dead[1][1][b"error"]
    assert pending(r) == 0


def test_processed_state_is_skipped_and_acknowledged(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0, state="P")))
    r.xadd(STREAM, {"instrument_key": "NSE@NIFTY@index", "ltp": "1", "ltt": "1750393800", "status": "P"})
    r.xadd(STREAM, fields(tick(at=1)))
    bridge, recorder = make_bridge(r)
    bridge.discover()
    bridge.handle(bridge.read())
    assert len(recorder.ticks) == 1 and pending(r) == 0


def test_entries_are_not_acknowledged_when_the_broker_refuses_the_task(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    bridge, recorder = make_bridge(r)
    recorder.fail = True
    bridge.discover()
    bridge.handle(bridge.read())
    assert pending(r) == 1
    recorder.fail = False
    time.sleep(0.6)  # past SIGNAL_RECLAIM_IDLE_MS in test settings
    assert bridge.reclaim() is True
    assert len(recorder.ticks) == 1 and pending(r) == 0


@pytest.mark.django_db
def test_entries_of_a_dead_consumer_are_reclaimed_and_processed(r: Any) -> None:
    from signals.models import Tick
    from signals.pipeline.batch import process_batch

    for i in range(5):
        r.xadd(STREAM, fields(tick(ltp=24000 + i, at=i)))
    dead_bridge, dead_recorder = make_bridge(r, consumer="crashed")
    dead_bridge.discover()
    assert len(dead_bridge.read()) == 5  # read, then "crashed" before sending or acking
    assert pending(r) == 5 and dead_recorder.sent == []

    survivor = StreamBridge(r, BridgeSettings.from_django(), consumer="survivor",
                            send_task=lambda ticks, queue, ticket: process_batch(ticks))
    survivor.discover()
    assert survivor.read() == []  # nothing new: the entries belong to the dead consumer
    time.sleep(0.6)
    assert survivor.reclaim() is True
    assert pending(r) == 0
    assert sorted(Tick.objects.values_list("ltp", flat=True)) == [24000, 24001, 24002, 24003, 24004]


def test_sent_entries_stay_pending_until_their_batch_is_processed(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    bridge, recorder = make_bridge(r, processed=False)
    bridge.discover()
    assert bridge.handle(bridge.read()) == 1
    assert pending(r) == 1  # on the broker, but not processed: a lost task is sent again
    acknowledge(r, "signal_service", recorder.ticks)
    assert pending(r) == 0


def test_idle_entries_are_sent_again_only_when_their_queue_has_no_task_waiting(r: Any) -> None:
    waiting = {"signals": 1}
    recorder = Recorder()
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=0), consumer="c", send_task=recorder,
                          queue_lengths=lambda queues: [waiting.get(q, 0) for q in queues])
    r.xadd(STREAM, fields(tick(at=0)))
    bridge.discover()
    bridge.handle(bridge.read())
    assert len(recorder.sent) == 1
    time.sleep(0.6)  # idle past SIGNAL_RECLAIM_IDLE_MS, but the queue still holds a task: it may be that one
    assert bridge.reclaim() is False and len(recorder.sent) == 1
    waiting["signals"] = 0  # the queue drained and the entry is still pending: its task was lost with its worker
    assert bridge.reclaim() is True
    assert len(recorder.sent) == 2 and recorder.sent[1][1][0]["source_id"] == recorder.sent[0][1][0]["source_id"]
    assert r.xpending_range(STREAM, "signal_service", "-", "+", 1)[0]["times_delivered"] == 2


def test_a_leased_batch_is_not_sent_again_while_its_worker_holds_it(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    bridge, recorder = make_bridge(r, processed=False)
    bridge.discover()
    bridge.handle(bridge.read())
    with EntryLease(r, "signal_service", recorder.ticks, every_s=0.1):  # the worker waits for PostgreSQL
        time.sleep(0.8)
        assert bridge.reclaim() is False
    time.sleep(0.6)  # the worker died: the lease lapsed
    assert bridge.reclaim() is True and len(recorder.sent) == 2
    assert r.xpending_range(STREAM, "signal_service", "-", "+", 1)[0]["times_delivered"] == 2  # leases count none


def test_leases_of_batches_held_at_once_are_renewed_and_stop_when_closed(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    r.xadd("tick_stream:NSE@BANKNIFTY", fields(tick("NSE@BANKNIFTY@index", at=0)))
    bridge, recorder = make_bridge(r, processed=False)
    bridge.discover()
    bridge.handle(bridge.read())
    nifty, bank = ([t for t in recorder.ticks if t["symbol_key"] == key] for key in ("NSE@NIFTY", "NSE@BANKNIFTY"))
    renewed: list[str] = []
    with EntryLease(r, "signal_service", nifty, every_s=0.1, also=lambda: renewed.append("nifty")):
        with EntryLease(r, "signal_service", bank, every_s=0.1, also=lambda: renewed.append("bank")):
            time.sleep(0.8)
            assert bridge.reclaim() is False  # both held, by the process's one renewing thread
        closed_at = len([n for n in renewed if n == "bank"])
        time.sleep(0.8)
        assert bridge.reclaim() is True  # the closed one's entries went idle and were sent again
        assert [t["symbol_key"] for _, batch, _ in recorder.sent[2:] for t in batch] == ["NSE@BANKNIFTY"]
    assert closed_at >= 5 and renewed.count("bank") == closed_at and renewed.count("nifty") >= 10


def test_entry_delivered_too_often_is_dead_lettered(r: Any) -> None:
    r.xadd(STREAM, fields(tick(at=0)))
    bridge, recorder = make_bridge(r, max_deliveries=2)
    recorder.fail = True
    bridge.discover()
    bridge.handle(bridge.read())  # delivery 1
    for _ in range(2):  # deliveries 2 and 3
        time.sleep(0.6)
        bridge.reclaim()
    assert pending(r) == 0
    dead = r.xrange("tick_stream:dead")
    assert len(dead) == 1 and b"delivered 3 times" in dead[0][1][b"error"]


def test_step_discovers_reads_and_reports_work(r: Any) -> None:
    bridge, recorder = make_bridge(r, discovery_interval_s=0)  # every step discovers
    assert bridge.step() is False
    r.xadd(STREAM, fields(tick()))
    assert bridge.step() is True and len(recorder.ticks) == 1
    assert bridge.step() is False


def test_batches_grow_while_the_queue_has_a_task_waiting(r: Any) -> None:
    waiting = {"signals": 1}
    recorder = Recorder(r)
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=60_000, batch_size=5), consumer="c",
                          send_task=recorder, queue_lengths=lambda queues: [waiting.get(q, 0) for q in queues])
    bridge.discover()
    for i in range(3):
        r.xadd(STREAM, fields(tick(at=i)))
        assert bridge.step() is True
    assert recorder.sent == [] and pending(r) == 3  # held back, still unacknowledged
    waiting["signals"] = 0  # the worker took the waiting task: everything buffered goes as one batch
    bridge.flush()
    assert [len(batch) for _, batch, _ in recorder.sent] == [3] and pending(r) == 0

    waiting["signals"] = 1
    for i in range(7):
        r.xadd(STREAM, fields(tick(at=10 + i)))
    bridge.handle(bridge.read())  # reads at most batch_size (5)
    assert [len(batch) for _, batch, _ in recorder.sent] == [3, 5]  # a full batch goes regardless
    assert pending(r) == 0


def test_held_batch_goes_after_max_wait(r: Any) -> None:
    recorder = Recorder(r)
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=100), consumer="c",
                          send_task=recorder, queue_lengths=lambda queues: [1 for _ in queues])
    bridge.discover()
    r.xadd(STREAM, fields(tick()))
    bridge.step()
    assert recorder.sent == []
    time.sleep(0.12)
    bridge.step()
    assert len(recorder.ticks) == 1 and pending(r) == 0


def test_stopping_sends_what_is_buffered(r: Any) -> None:
    recorder = Recorder(r)
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=60_000), consumer="c",
                          send_task=recorder, queue_lengths=lambda queues: [1 for _ in queues])
    r.xadd(STREAM, fields(tick()))
    calls = iter([False, False, True])
    bridge.run(lambda: next(calls))
    assert len(recorder.ticks) == 1 and pending(r) == 0


def test_a_batch_travels_to_the_broker_as_plain_json_and_comes_back_unchanged() -> None:
    import base64
    import json

    import redis as redis_lib
    from django.conf import settings
    from kombu.serialization import loads

    from signals.ingest.codec import TICKS_CONTENT_TYPE, celery_send
    from tests.factories import normalised

    ticks = [normalised(tick("NSE@NIFTY@index", 24000.5, at=0), f"{STREAM}/1-0"),
             normalised(tick("NSE@NIFTY@options@2025-06-26@CE@24000", 120, at=1), f"{STREAM}/2-0")]
    celery_send(ticks, "serializer-test", 7)
    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    envelope = json.loads(broker.lrange("serializer-test", 0, -1)[0])
    assert envelope["content-type"] == TICKS_CONTENT_TYPE
    assert envelope["headers"]["argsrepr"] == f"[2 ticks: {STREAM}/1-0 .. {STREAM}/2-0]"  # not a repr of every tick
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _ = loads(body, envelope["content-type"], envelope["content-encoding"],
                            accept={TICKS_CONTENT_TYPE})
    assert args == [ticks] and kwargs == {"ticket": 7}


def test_a_group_grows_while_its_underlyings_previous_batch_runs(r: Any) -> None:
    recorder, asked = Recorder(), []
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=0, turn_grace_s=60), consumer="c",
                          send_task=recorder, queue_lengths=lambda queues: asked.append(queues) or [0 for _ in queues])
    r.xadd(STREAM, fields(tick(at=0)))
    bridge.discover()
    bridge.handle(bridge.read())
    assert len(recorder.sent) == 1 and asked == [["signals"]]
    for i in range(1, 4):  # the first batch has not finished: a second could only wait for its turn in a worker
        r.xadd(STREAM, fields(tick(at=i)))
        bridge.handle(bridge.read())
    assert len(recorder.sent) == 1
    assert asked == [["signals"]]  # nor is the broker asked about its queue meanwhile (a round trip per read)
    turns.finish_turn(r, "NSE@NIFTY", recorder.sent[0][2])
    bridge.flush()
    assert [len(batch) for _, batch, _ in recorder.sent] == [1, 3] and len(asked) == 2


def test_entries_the_bridge_still_holds_are_not_reclaimed_into_its_buffer_again(r: Any) -> None:
    recorder = Recorder()
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), max_wait_ms=60_000), consumer="c",
                          send_task=recorder, queue_lengths=lambda queues: [1 for _ in queues])
    r.xadd(STREAM, fields(tick(at=0)))
    bridge.discover()
    bridge.handle(bridge.read())  # held: the queue has a task waiting
    time.sleep(0.6)  # idle past SIGNAL_RECLAIM_IDLE_MS, but in this bridge's hands
    bridge.queue_lengths = lambda queues: [0 for _ in queues]
    bridge.reclaim()
    bridge.flush()
    assert [len(batch) for _, batch, _ in recorder.sent] == [1]
