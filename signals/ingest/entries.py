"""A tick batch's stream entries, as the worker that processes the batch sees them.

The bridge leaves every entry it sends pending in the consumer group; the worker acknowledges a batch's entries
only once the batch is processed and stored (`acknowledge`), so nothing is lost between the stream and the
database, whatever dies or restarts in between: an entry still pending after ``SIGNAL_RECLAIM_IDLE_MS`` is sent
again by a bridge. While a worker holds a batch (waiting for PostgreSQL or Redis to come back, or behind a slow
lock), `EntryLease` keeps its entries from looking idle, so a live batch is not sent twice, and only the batches of
dead workers are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis

from feed import keys
from feed.streams import stream_entry

log = logging.getLogger(__name__)
LEASE_CONSUMER = "signal-workers"  # owner of the entries of batches in a worker's hands


def stream_entries(ticks: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Stream -> entry ids of the ticks that came from a stream (``source_id`` ``stream/entry-id``)."""
    found: dict[str, list[str]] = {}
    for tick in ticks:
        entry = stream_entry(tick.get("source_id", ""))
        if entry is not None:
            found.setdefault(entry[0], []).append(entry[1])
    return found


REPUBLISHED_FIELDS = ("instrument_key", "timestamp", "ltp", "open", "high", "low", "close", "volume", "oi", "bid",
                      "ask", "ltq")


def processed_entry(tick: dict[str, Any]) -> dict[str, bytes]:
    """The stream entry that re-publishes a processed tick (``SIGNAL_REPUBLISH_PROCESSED``): the normalised tick
    with ``state`` ``P`` (which every reader, this service's bridge included, acknowledges and skips) and the
    ``source_id`` of the entry it came from."""
    body = {name: tick.get(name) for name in REPUBLISHED_FIELDS}
    return {"data": orjson.dumps({**body, "state": "P", "source_id": tick["source_id"]})}


def acknowledge(client: redis.Redis, group: str, ticks: Iterable[dict[str, Any]], republish: bool = False,
                pipe: Any = None, then: Callable[[Any], None] | None = None) -> int:
    """Acknowledge the ticks' entries in ``group`` and drop their output markers; returns how many were pending.
    With ``republish``, each tick is first added again to its own stream as processed (`processed_entry`): at
    least once, like every output (a worker dying between the two re-publishes on the batch's redelivery).

    ``pipe`` may carry commands already (they run first, and their errors are raised); ``then(pipe)`` queues
    commands to run after the acknowledgement in the same round trip (their errors are only logged)."""
    ticks = list(ticks)
    by_stream = stream_entries(ticks)
    pipe = client.pipeline(transaction=False) if pipe is None else pipe
    before = len(pipe)
    added = 0
    if republish:
        for tick in ticks:
            entry = stream_entry(tick.get("source_id", ""))
            if entry is not None:
                pipe.xadd(entry[0], processed_entry(tick))
                added += 1
    for stream, ids in by_stream.items():
        pipe.xack(stream, group, *ids)
    for (stream, tag), ids in _markers(ticks).items():
        pipe.hdel(keys.emitted_entries(stream, tag), *ids)
    after = len(pipe)
    if then is not None:
        then(pipe)
    if not len(pipe):
        return 0
    replies = pipe.execute(raise_on_error=False)
    for reply in replies[:before + added]:
        if isinstance(reply, Exception):
            raise reply
    for reply in replies[after:]:
        if isinstance(reply, Exception):
            log.warning("a command after a batch's acknowledgement failed", exc_info=reply)
    acked = 0
    for reply in replies[before + added:before + added + len(by_stream)]:
        if isinstance(reply, Exception):
            if not isinstance(reply, redis.ResponseError):  # a missing group or key: nothing was pending there
                raise reply
            continue
        acked += int(reply)
    return acked


def _markers(ticks: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(stream, shard of the tick's underlying) -> entry ids: where the emit script marked the entries written."""
    found: dict[tuple[str, str], list[str]] = {}
    for tick in ticks:
        entry = stream_entry(tick.get("source_id", ""))
        if entry is not None:
            found.setdefault((entry[0], keys.shard(tick.get("instrument_key", ""))), []).append(entry[1])
    return found


class EntryLease:
    """While open, re-claims the batch's pending entries every ``every_s`` seconds (``XCLAIM ... JUSTID``, which
    resets their idle time without counting a delivery), from the process's one renewing thread (`_Renewer`);
    failures are only logged (if Redis is down, no bridge can reclaim either)."""

    def __init__(self, client: redis.Redis, group: str, ticks: Iterable[dict[str, Any]], every_s: float,
                 also: Callable[[], None] | None = None):
        self.client = client
        self.group = group
        self.entries = stream_entries(ticks)
        self.every_s = every_s
        self.also = also  # renewed with the entries (the underlying's turn)

    def __enter__(self) -> EntryLease:
        if (self.entries or self.also) and self.every_s > 0:
            _renewer().add(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _renewer().remove(self)

    def renew(self) -> None:
        if self.also is not None:
            self.also()
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in self.entries.items():
            pipe.xclaim(stream, self.group, LEASE_CONSUMER, 0, ids, justid=True)
        pipe.execute(raise_on_error=False)


class _Renewer:
    """One daemon thread per process renewing every open lease when due. A thread per batch cost its start and
    join on every batch (a twentieth of a worker's time at 2,000 ticks/s); leases are few and long-lived next to a
    renewal. A lease removed is never renewed again: removal waits for a renewal in progress (the lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.due: dict[EntryLease, float] = {}
        threading.Thread(target=self._run, name="entry-leases", daemon=True).start()

    def add(self, lease: EntryLease) -> None:
        with self.lock:
            self.due[lease] = time.monotonic() + lease.every_s
        self.wake.set()

    def remove(self, lease: EntryLease) -> None:
        with self.lock:
            self.due.pop(lease, None)

    def _run(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                for lease in [lease for lease, due in self.due.items() if due <= now]:
                    self.due[lease] = now + lease.every_s
                    try:
                        lease.renew()
                    except Exception:
                        log.warning("could not renew the lease of a batch's entries", exc_info=True)
                pause = min(self.due.values(), default=now + 1.0) - time.monotonic()
            self.wake.wait(max(pause, 0.001))
            self.wake.clear()


_renewers: dict[int, _Renewer] = {}  # pid -> its renewer (a forked child starts its own thread)
_renewers_lock = threading.Lock()


def _renewer() -> _Renewer:
    with _renewers_lock:
        found = _renewers.get(os.getpid())
        if found is None:
            found = _renewers[os.getpid()] = _Renewer()
        return found
