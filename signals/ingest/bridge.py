"""Redis Streams -> Celery: the stream bridge (docs/REFERENCE.md §7, issue 2).

Reads every tick stream through consumer group ``signal_service``, dead-letters malformed entries, skips
``state=P``, groups the rest by underlying and sends one Celery task per group to that underlying's queue. An entry
stays pending until a worker has processed and stored its batch (the worker acknowledges it), so nothing is lost
whatever dies or restarts on the way: entries left pending by a dead bridge, a dead worker or a lost task are sent
again by a live bridge once idle long enough, when their queue has no task waiting (`reclaim`).

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
from collections.abc import Callable, Iterable
from typing import Any

import redis

from feed import keys, redis_client
from feed.streams import text
from feed.ticks import TickError, decode_fields, parse_tick
from signals.ingest import stream_reads, turns
from signals.ingest.bridge_settings import BridgeSettings
from signals.ingest.codec import celery_send
from signals.ingest.stream_leases import StreamLeases
from signals.ingest.waits import UnderlyingWaits
from signals.monitoring import broker, metrics

log = logging.getLogger(__name__)
Entry = stream_reads.Entry
SendTask = Callable[[list[dict[str, Any]], str, int], None]  # (ticks, queue, ticket)


def default_consumer_name() -> str:
    return f"bridge-{socket.gethostname()}-{os.getpid()}"


class StreamBridge:
    SCAN_COUNT = 1000  # keys a discovery SCAN call looks at
    DISCOVERY_STEP_S = 0.002  # how long a busy step may scan for streams

    def __init__(self, client: redis.Redis, config: BridgeSettings, consumer: str | None = None,
                 send_task: SendTask = celery_send,
                 queue_lengths: Callable[[list[str]], list[int]] = broker.queue_lengths):
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
        self._scan_pending: list[stream_reads.Scan] = []  # the discovery pass under way
        self._busy = False  # the last read returned entries
        self._symbols: dict[str, set[str]] = {}  # stream -> the underlyings seen in it
        self._turn_state: dict[str, Any] = {}  # turn keys' values as of the last read (`turns.state_keys`)
        self.leases = StreamLeases(client, self.consumer, config.stream_lease_s)
        self.waits = UnderlyingWaits(client, config.underlying_wait_ms / 1000, config.staleness_s, config.vix_key,
                                     config.index_symbols)

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
            self._scan_pending = stream_reads.scan_starts(self.client, self.config.patterns)
        started = time.monotonic()
        found: set[str] = set()
        while self._scan_pending:
            cursor, names = stream_reads.scan_step(self.client, self._scan_pending[0], self.SCAN_COUNT)
            found.update(names)
            if cursor == 0:
                self._scan_pending.pop(0)
            else:
                self._scan_pending[0] = (*self._scan_pending[0][:2], cursor)
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
        """Read up to batch_size new entries across the streams this bridge owns, blocking up to block_ms."""
        if not self.streams:
            return []
        streams = self.leases.readable(self.streams)
        extra = self.leases.beyond_share()
        if extra:  # another bridge started: what was read from them goes out before they are given back
            self.flush(force=True)
            self.leases.release(extra)
        if not streams:  # a standby: it reads once a lease is free (a bridge died or stopped)
            time.sleep(self.config.block_ms / 1000)
            return []
        block = self.config.block_ms
        if self.buffer:  # wake up in time to send what is buffered
            oldest = min(self.buffer_since.values())
            block = max(1, min(block, int(self.config.max_wait_ms - (time.monotonic() - oldest) * 1000)))
        # the turn state of what may be flushed after this read rides along with it (one round trip fewer); while
        # idle, of what is buffered only (a first read after idling asks for the rest when it flushes)
        seen = (self._symbols.get(stream, ()) for stream in streams) if self._busy else ()
        flushable = sorted(set(self.buffer).union(*seen))
        entries, self._turn_state = stream_reads.read_new(self.client, self.config.group, self.consumer, streams,
                                                          self.config.batch_size, block, turns.state_keys(flushable))
        return entries

    def handle(self, entries: list[Entry], force: bool = False) -> int:
        """Parse, dead-letter and buffer entries, then send what is due; returns the number of ticks sent."""
        metrics.TICKS_RECEIVED.inc(len(entries))
        done: list[tuple[str, str]] = []
        dead: list[tuple[str, str, dict[str, str], str]] = []
        now = time.monotonic()
        parsed = []
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
            self._symbols.setdefault(stream, set()).add(tick["symbol_key"])
            self.buffer.setdefault(tick["symbol_key"], []).append((tick, stream, entry_id))
            self.buffer_since.setdefault(tick["symbol_key"], now)
            parsed.append(tick)
        self.waits.note(parsed, now)
        self._dead_letter(dead, "malformed")
        self._ack(done)
        return self.flush(force)

    def flush(self, force: bool = False) -> int:
        """Send each buffered group that is due (see the module docstring). Their entries stay pending: the worker
        acknowledges them once their batch is processed and stored."""
        if not self.buffer:
            return 0
        vix_group = "@".join(self.config.vix_key.split("@")[:2])
        groups = sorted(self.buffer, key=lambda g: g != vix_group)  # INDVIX first: options may have waited for it
        queues = [self.config.queue_for(g) for g in groups]
        now = time.monotonic()
        running = turns.unfinished(self.client, groups, self._turn_state) if not force else set()
        self._turn_state = {}  # as of the read before this flush only
        # the broker only about groups that could go: under load most find their underlying's batch still running
        undecided = sorted({q for g, q in zip(groups, queues, strict=True) if not force and self._may_go(g, running, now)})
        waiting = dict(zip(undecided, self.queue_lengths(undecided), strict=True)) if undecided else {}
        chosen = [(symbol_key, queue) for symbol_key, queue in zip(groups, queues, strict=True)
                  if self._due(symbol_key, queue, waiting, running, now, force)]
        if not chosen:
            return 0
        tickets = turns.take_tickets(self.client, [symbol_key for symbol_key, _ in chosen])
        sent = 0
        for (symbol_key, queue), ticket in zip(chosen, tickets, strict=True):
            items = self.buffer[symbol_key]
            self.waits.forget(symbol_key)
            batch = [tick for tick, _, _ in items]
            try:
                self.send_task(batch + self.waits.context_for(symbol_key, batch), queue, ticket)
            except Exception:
                # The entries stay pending and are sent again once idle for reclaim_idle_ms.
                log.exception("could not send tick batch; will retry by reclaim", extra={"queue": queue})
            else:
                metrics.TASKS_SENT.labels(queue).inc()
                sent += len(items)
            del self.buffer[symbol_key], self.buffer_since[symbol_key]
        return sent

    def _due(self, symbol_key: str, queue: str, waiting: dict[str, int], running: set[str], now: float,
             force: bool) -> bool:
        """A group goes when its queue has no task waiting, it is full, or it has waited max_wait_ms; but while a
        batch of the underlying has not finished, whichever bridge sent it (this one could only wait for its turn
        in a worker), it keeps growing up to SIGNAL_TURN_GRACE_S, and options wait for a stale underlying
        (`signals.ingest.waits`)."""
        if force or len(self.buffer[symbol_key]) >= self.config.batch_size:
            return True
        if not self._may_go(symbol_key, running, now):
            return False
        due = not waiting.get(queue, 0) or (now - self.buffer_since[symbol_key]) * 1000 >= self.config.max_wait_ms
        return due and not self.waits.waiting(symbol_key, now)

    def _may_go(self, symbol_key: str, running: set[str], now: float) -> bool:
        """Not while a batch of its underlying runs (up to the turn grace), whatever its queue holds."""
        return symbol_key not in running or now - self.buffer_since[symbol_key] >= self.config.turn_grace_s

    def reclaim(self) -> bool:
        """Send again the entries pending for longer than ``reclaim_idle_ms`` (their worker died, or their task never
        reached a worker) whose queue has no task waiting: while it has, they may still be in it. Entries sent more
        than ``max_deliveries`` times are dead-lettered; entries trimmed from their stream meanwhile are dropped
        from the group, with an error in the log. True if anything was claimed."""
        idle = self._idle_entries()
        if not idle:
            return False
        queue_of = {(s, i): self._queue_of(f) for s, i, f, _ in idle if f is not None}
        busy = self._busy_queues(queue_of.values())
        chosen = [(s, i, f, n) for s, i, f, n in idle if f is not None and queue_of[(s, i)] not in busy]
        gone = [(s, i) for s, i, f, _ in idle if f is None]
        if gone:
            log.error("pending entries were trimmed from their stream before being processed",
                      extra={"count": len(gone), "first": f"{gone[0][0]}/{gone[0][1]}"})
            self._ack(gone)
        claimed = self._claim(chosen)
        if not claimed:
            return bool(gone)
        metrics.ENTRIES_RECLAIMED.inc(len(claimed))
        too_many = [(s, i, f, f"delivered {n} times without being processed") for s, i, f, n in claimed
                    if n > self.config.max_deliveries]
        self._dead_letter(too_many, "max_deliveries")
        retry = [(s, i, f) for s, i, f, n in claimed if n <= self.config.max_deliveries]
        log.info("reclaimed pending entries", extra={"count": len(claimed), "dead_lettered": len(too_many)})
        self.handle(retry, force=True)
        return True

    RECLAIM_PAGES = 10  # XPENDING pages a reclaim looks at per stream

    def _idle_entries(self) -> list[tuple[str, str, dict[str, str] | None, int]]:
        """(stream, entry id, fields or None if trimmed, deliveries so far) of entries idle for reclaim_idle_ms that
        this bridge does not hold itself (they went idle while their group grew)."""
        found: list[tuple[str, str, int]] = []
        for stream in self.streams:
            start = "-"
            for _ in range(self.RECLAIM_PAGES):
                page = self.client.xpending_range(stream, self.config.group, min=start, max="+",
                                                  count=self.config.batch_size, idle=self.config.reclaim_idle_ms)
                found.extend((stream, text(p["message_id"]), int(p["times_delivered"])) for p in page)
                if len(page) < self.config.batch_size:
                    break
                start = "(" + text(page[-1]["message_id"])
        held = {(stream, entry_id) for items in self.buffer.values() for _, stream, entry_id in items}
        found = [(s, i, n) for s, i, n in found if (s, i) not in held]
        # a backlog: every queue has a task waiting, so no idle entry is chosen; its fields are not worth reading
        if not found or self._busy_queues(self._queues()) == set(self._queues()):
            return []
        pipe = self.client.pipeline(transaction=False)
        for stream, entry_id, _ in found:
            pipe.xrange(stream, entry_id, entry_id)
        replies = pipe.execute()
        return [(stream, entry_id, decode_fields(reply[0][1]) if reply and reply[0][1] is not None else None, n)
                for (stream, entry_id, n), reply in zip(found, replies, strict=True)]

    def _queues(self) -> list[str]:
        return sorted({self.config.default_queue, *self.config.queue_routes.values()})

    def _queue_of(self, fields: dict[str, str]) -> str | None:
        try:
            return self.config.queue_for(parse_tick(fields)["symbol_key"])
        except TickError:
            return None  # dead-lettered once claimed

    def _busy_queues(self, candidates: Iterable[str | None]) -> set[str]:
        """The queues among ``candidates`` with a task waiting."""
        queues = sorted({q for q in candidates if q is not None})
        return {q for q, n in zip(queues, self.queue_lengths(queues), strict=True) if n} if queues else set()

    def _claim(self, chosen: list[tuple[str, str, dict[str, str], int]]) -> list[tuple[str, str, dict[str, str], int]]:
        """XCLAIM the chosen entries that are still idle; (stream, id, fields, deliveries including this one)."""
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _, _ in chosen:
            by_stream.setdefault(stream, []).append(entry_id)
        counts = {(s, i): n for s, i, _, n in chosen}
        claimed = []
        for stream, ids in by_stream.items():
            for i in range(0, len(ids), 500):
                for entry_id, fields in self.client.xclaim(stream, self.config.group, self.consumer,
                                                            self.config.reclaim_idle_ms, ids[i:i + 500]):
                    if fields is not None:
                        eid = text(entry_id)
                        claimed.append((stream, eid, decode_fields(fields), counts[(stream, eid)] + 1))
        return claimed

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
            self.leases.leave()

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
    def _dead_letter(self, dead: list[tuple[str, str, dict[str, str], str]], reason: str) -> None:
        if not dead:
            return
        # one transaction on a server; on a cluster the dead-letter stream lies on another slot (at worst an entry is
        # dead-lettered twice)
        pipe = self.client.pipeline(transaction=not redis_client.spans_slots(self.client))
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
