"""Redis Streams -> Celery: the stream bridge (docs/REFERENCE.md §7, issue 2).

Reads every tick stream through consumer group ``signal_service``, dead-letters malformed entries, skips
``state=P``, groups the rest by underlying and sends one Celery task per group to that underlying's queue. An entry
is acknowledged only after its task is on the broker, so a bridge killed at any point loses nothing: what it read
but did not ack stays pending and is reclaimed (XAUTOCLAIM) by a live bridge once idle long enough.

Batching is self-clocking: a group is sent at once while its queue has no task waiting, and otherwise keeps
growing (still unacknowledged) until the queue drains, the batch is full or ``max_wait_ms`` passes. Idle, a tick
goes out alone with no added delay; under load, batches grow with the time a worker takes per task, so the fixed
cost of a task is paid once per batch instead of once per few ticks.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import current_app
from django.conf import settings

from feed import keys
from feed.redis_client import get_redis
from feed.streams import id_order, text
from feed.ticks import TickError, decode_fields, parse_tick
from signals.ingest.codec import PROCESS_TICKS_TASK, TICKS_SERIALIZER
from signals.monitoring import metrics

log = logging.getLogger(__name__)
Entry = tuple[str, str, dict[str, str]]  # (stream, entry id, fields)
SendTask = Callable[[list[dict[str, Any]], str], None]


@dataclass
class BridgeSettings:
    group: str
    patterns: list[str]
    dead_letter_stream: str
    batch_size: int
    block_ms: int
    reclaim_idle_ms: int
    max_deliveries: int
    discovery_interval_s: float
    reclaim_interval_s: float
    default_queue: str
    queue_routes: dict[str, str]
    max_wait_ms: int = 50

    @classmethod
    def from_django(cls) -> BridgeSettings:
        return cls(
            group=settings.SIGNAL_CONSUMER_GROUP, patterns=settings.SIGNAL_STREAM_PATTERNS,
            dead_letter_stream=settings.SIGNAL_DEAD_LETTER_STREAM, batch_size=settings.SIGNAL_BATCH_SIZE, block_ms=settings.SIGNAL_BLOCK_MS,
            reclaim_idle_ms=settings.SIGNAL_RECLAIM_IDLE_MS, max_deliveries=settings.SIGNAL_MAX_DELIVERIES,
            discovery_interval_s=settings.SIGNAL_DISCOVERY_INTERVAL_S, reclaim_interval_s=settings.SIGNAL_RECLAIM_INTERVAL_S,
            default_queue=settings.SIGNAL_DEFAULT_QUEUE, queue_routes=settings.SIGNAL_QUEUE_ROUTES,
            max_wait_ms=settings.SIGNAL_BATCH_MAX_WAIT_MS,
        )

    def queue_for(self, symbol_key: str) -> str:
        return self.queue_routes.get(symbol_key, self.default_queue)


def default_consumer_name() -> str:
    return f"bridge-{socket.gethostname()}-{os.getpid()}"


def broker_queue_lengths(queues: list[str]) -> list[int]:
    """Tasks waiting in each Celery queue (the Redis broker keeps a queue as a list of its name)."""
    pipe = get_redis(settings.CELERY_BROKER_URL).pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return [int(n) for n in pipe.execute()]


def celery_send(ticks: list[dict[str, Any]], queue: str) -> None:
    """Publish one batch task; returns once the broker has it (raises if it could not be sent)."""
    # Our own argsrepr (the headers' text of the arguments, for logs and monitoring): Celery's default is a
    # truncated repr of the whole batch, an eighth of the bridge's CPU time at 2,000 ticks/s.
    # Sent by name: the bridge needs none of the pipeline's code (nor its memory, nor its collector's work).
    current_app.send_task(PROCESS_TICKS_TASK, args=[ticks], queue=queue, serializer=TICKS_SERIALIZER, retry=True,
                          argsrepr=batch_repr(ticks), kwargsrepr="{}",
                          retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5})


def batch_repr(ticks: list[dict[str, Any]]) -> str:
    """How a batch task's arguments read in worker logs: its size and its first and last entry."""
    if not ticks:
        return "[0 ticks]"
    return f"[{len(ticks)} ticks: {ticks[0].get('source_id')} .. {ticks[-1].get('source_id')}]"


class StreamBridge:
    SCAN_COUNT = 1000  # keys a discovery SCAN call looks at
    DISCOVERY_STEP_S = 0.002  # how long a busy step may scan for streams

    def __init__(self, client: redis.Redis, config: BridgeSettings, consumer: str | None = None,
                 send_task: SendTask = celery_send,
                 queue_lengths: Callable[[list[str]], list[int]] = broker_queue_lengths):
        self.client = client
        self.config = config
        self.consumer = consumer or default_consumer_name()
        self.send_task = send_task
        self.queue_lengths = queue_lengths
        self.streams: list[str] = []
        # Parsed ticks read but not yet sent (so not acknowledged), per underlying, with when the group started.
        self.buffer: dict[str, list[tuple[dict[str, Any], str, str]]] = {}
        self.buffer_since: dict[str, float] = {}
        self._next_discovery = 0.0
        self._next_reclaim = 0.0
        self._scan_pending: list[tuple[str, int]] = []  # (pattern, SCAN cursor) of the discovery pass under way
        self._busy = False  # the last read returned entries

    @property
    def discovery_under_way(self) -> bool:
        """Whether a discovery pass has started and not yet scanned the whole keyspace."""
        return bool(self._scan_pending)

    # --- steps ------------------------------------------------------------------------------------------------
    def discover(self, budget_s: float | None = None) -> bool:
        """Find streams matching the patterns and create the consumer group where missing; True if any is new.

        A pass SCANs the whole keyspace, which holds the service's own keys too (a batch's once-key lives an hour:
        some 100,000 keys at 30 batches/s, a pass of about 110 calls and 80 ms). With ``budget_s``, a call stops
        scanning once that much time has passed (after at least one SCAN) and the next call goes on from there,
        so a busy bridge never stops reading for a whole pass. Without, the pass (a new one, or the rest of the
        one under way) runs to its end."""
        if not self._scan_pending:
            self._scan_pending = [(pattern, 0) for pattern in self.config.patterns]
        started = time.monotonic()
        found: set[str] = set()
        while self._scan_pending:
            pattern, cursor = self._scan_pending[0]
            if not any(ch in pattern for ch in "*?["):
                found.add(pattern)
                self._scan_pending.pop(0)
                continue
            cursor, names = self.client.scan(cursor, match=pattern, count=self.SCAN_COUNT, _type="STREAM")
            found.update(text(name) for name in names)
            if cursor == 0:
                self._scan_pending.pop(0)
            else:
                self._scan_pending[0] = (pattern, cursor)
            if budget_s is not None and time.monotonic() - started >= budget_s:
                break
        joined = self._join(found)
        if not self._scan_pending and self.streams:  # a whole pass: the monitoring list holds every stream read
            self.client.sadd(keys.tick_streams(), *self.streams)
        return joined

    def _join(self, found: set[str]) -> bool:
        """Create the consumer group on the streams not read yet and start reading them; True if any."""
        found.discard(self.config.dead_letter_stream)
        new = sorted(found - set(self.streams))
        for stream in new:
            try:
                # From id 0: ticks published before the group existed are processed too.
                self.client.xgroup_create(stream, self.config.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        if new:
            self.streams = sorted(set(self.streams) | set(new))
            log.info("tick streams discovered", extra={"streams": new, "consumer": self.consumer})
        return bool(new)

    def read(self) -> list[Entry]:
        """Read up to batch_size new entries across all streams, blocking up to block_ms."""
        if not self.streams:
            return []
        block = self.config.block_ms
        if self.buffer:  # wake up in time to send what is buffered
            oldest = min(self.buffer_since.values())
            block = max(1, min(block, int(self.config.max_wait_ms - (time.monotonic() - oldest) * 1000)))
        response = self.client.xreadgroup(
            self.config.group, self.consumer, {s: ">" for s in self.streams},
            count=self.config.batch_size, block=block,
        )
        return [(text(stream), text(entry_id), decode_fields(fields))
                for stream, entries in response or [] for entry_id, fields in entries if fields is not None]

    def handle(self, entries: list[Entry], force: bool = False) -> int:
        """Parse, dead-letter and buffer entries, then send what is due; returns the number of ticks sent."""
        metrics.TICKS_RECEIVED.inc(len(entries))
        done: list[tuple[str, str]] = []
        dead: list[tuple[str, str, dict[str, str], str]] = []
        now = time.monotonic()
        for stream, entry_id, fields in entries:
            try:
                tick = parse_tick(fields)
            except TickError as exc:
                dead.append((stream, entry_id, fields, str(exc)))
                continue
            if tick["state"] == "P":
                metrics.TICKS_SKIPPED.inc()
                done.append((stream, entry_id))
                continue
            tick["source_id"] = f"{stream}/{entry_id}"
            self.buffer.setdefault(tick["symbol_key"], []).append((tick, stream, entry_id))
            self.buffer_since.setdefault(tick["symbol_key"], now)
        self._dead_letter(dead, "malformed")
        self._ack(done)
        return self.flush(force)

    def flush(self, force: bool = False) -> int:
        """Send each buffered group that is due (see the module docstring); acknowledge what the broker took."""
        if not self.buffer:
            return 0
        groups = list(self.buffer)
        queues = [self.config.queue_for(g) for g in groups]
        waiting = dict(zip(queues, self.queue_lengths(sorted(set(queues))), strict=False)) if not force else {}
        now = time.monotonic()
        done: list[tuple[str, str]] = []
        sent = 0
        for symbol_key, queue in zip(groups, queues, strict=True):
            items = self.buffer[symbol_key]
            due = (force or not waiting.get(queue, 0) or len(items) >= self.config.batch_size
                   or (now - self.buffer_since[symbol_key]) * 1000 >= self.config.max_wait_ms)
            if not due:
                continue
            try:
                self.send_task([tick for tick, _, _ in items], queue)
            except Exception:
                # Not acknowledged: the entries stay pending and are reclaimed after reclaim_idle_ms.
                log.exception("could not send tick batch; will retry by reclaim", extra={"queue": queue})
            else:
                metrics.TASKS_SENT.labels(queue).inc()
                done.extend((stream, entry_id) for _, stream, entry_id in items)
                sent += len(items)
            del self.buffer[symbol_key], self.buffer_since[symbol_key]
        self._ack(done)
        return sent

    def reclaim(self) -> bool:
        """Take over entries other consumers read but never acknowledged; dead-letter the ones delivered too often."""
        claimed: list[Entry] = []
        for stream in self.streams:
            start = "0-0"
            while True:
                next_start, entries, *_ = self.client.xautoclaim(
                    stream, self.config.group, self.consumer, self.config.reclaim_idle_ms,
                    start_id=start, count=self.config.batch_size,
                )
                claimed.extend((stream, text(eid), decode_fields(f)) for eid, f in entries if f is not None)
                start = text(next_start)
                if start == "0-0" or len(claimed) >= self.config.batch_size:
                    break
        if not claimed:
            return False
        metrics.ENTRIES_RECLAIMED.inc(len(claimed))
        counts = self._delivery_counts(claimed)
        too_many = [(s, i, f, f"delivered {counts[(s, i)]} times without being processed")
                    for s, i, f in claimed if counts.get((s, i), 0) > self.config.max_deliveries]
        self._dead_letter(too_many, "max_deliveries")
        retry = [(s, i, f) for s, i, f in claimed if counts.get((s, i), 0) <= self.config.max_deliveries]
        log.info("reclaimed pending entries", extra={"count": len(claimed), "dead_lettered": len(too_many)})
        self.handle(retry, force=True)
        return True

    def step(self) -> bool:
        """One round: periodic discovery and reclaim, then one read. True if it did any work."""
        now = time.monotonic()
        worked = False
        if self._scan_pending or now >= self._next_discovery:
            if not self._scan_pending:
                self._next_discovery = now + self.config.discovery_interval_s
            # while ticks flow, a pass advances a little each step; idle, it runs to its end
            worked |= self.discover(budget_s=self.DISCOVERY_STEP_S if self._busy or self.buffer else None)
        if now >= self._next_reclaim and self.streams:
            worked |= self.reclaim()
            self._next_reclaim = now + self.config.reclaim_interval_s
        entries = self.read()
        self._busy = bool(entries)
        if entries or self.buffer:
            worked |= self.handle(entries) > 0 or bool(entries)
        return worked

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Loop until ``should_stop()``; what is in hand is always sent (and acked) before stopping."""
        try:
            self._loop(should_stop)
        finally:
            self.flush(force=True)

    def _loop(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            try:
                worked = self.step()
            except redis.ConnectionError:
                log.exception("redis unavailable; retrying")
                time.sleep(1.0)
                continue
            if not worked and not self.streams:
                time.sleep(min(self.config.discovery_interval_s, 1.0))

    # --- helpers ----------------------------------------------------------------------------------------------
    def _delivery_counts(self, claimed: list[Entry]) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _ in claimed:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            ordered = sorted(ids, key=id_order)
            pending = self.client.xpending_range(stream, self.config.group, min=ordered[0], max=ordered[-1],
                                                 count=len(ids) + 1000, consumername=self.consumer)
            for item in pending:
                counts[(stream, text(item["message_id"]))] = int(item["times_delivered"])
        return counts

    def _dead_letter(self, dead: list[tuple[str, str, dict[str, str], str]], reason: str) -> None:
        if not dead:
            return
        pipe = self.client.pipeline(transaction=True)
        for stream, entry_id, fields, error in dead:
            pipe.xadd(self.config.dead_letter_stream,
                      {**fields, "error": error, "source_stream": stream, "source_id": entry_id})
            pipe.xack(stream, self.config.group, entry_id)
        pipe.execute()
        metrics.TICKS_DEAD_LETTERED.labels(reason).inc(len(dead))
        log.warning("entries dead-lettered", extra={"count": len(dead), "reason": reason,
                                                    "first_error": dead[0][3]})

    def _ack(self, done: list[tuple[str, str]]) -> None:
        if not done:
            return
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in done:
            by_stream.setdefault(stream, []).append(entry_id)
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.config.group, *ids)
        pipe.execute()
