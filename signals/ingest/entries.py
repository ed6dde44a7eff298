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
import threading
from collections.abc import Callable, Iterable
from typing import Any

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


def acknowledge(client: redis.Redis, group: str, ticks: Iterable[dict[str, Any]]) -> int:
    """Acknowledge the ticks' entries in ``group`` and drop their output markers; returns how many were pending."""
    ticks = list(ticks)
    by_stream = stream_entries(ticks)
    if not by_stream:
        return 0
    pipe = client.pipeline(transaction=False)
    for stream, ids in by_stream.items():
        pipe.xack(stream, group, *ids)
    for (stream, tag), ids in _markers(ticks).items():
        pipe.hdel(keys.emitted_entries(stream, tag), *ids)
    replies = pipe.execute(raise_on_error=False)
    acked = 0
    for reply in replies[:len(by_stream)]:
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
    resets their idle time without counting a delivery), from a daemon thread; failures are only logged (if Redis is
    down, no bridge can reclaim either)."""

    def __init__(self, client: redis.Redis, group: str, ticks: Iterable[dict[str, Any]], every_s: float,
                 also: Callable[[], None] | None = None):
        self.client = client
        self.group = group
        self.entries = stream_entries(ticks)
        self.every_s = every_s
        self.also = also  # renewed with the entries (the underlying's turn)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EntryLease:
        if (self.entries or self.also) and self.every_s > 0:
            self._thread = threading.Thread(target=self._renew, name="entry-lease", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def renew(self) -> None:
        if self.also is not None:
            self.also()
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in self.entries.items():
            pipe.xclaim(stream, self.group, LEASE_CONSUMER, 0, ids, justid=True)
        pipe.execute(raise_on_error=False)

    def _renew(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.renew()
            except Exception:
                log.warning("could not renew the lease of a batch's entries", exc_info=True)
