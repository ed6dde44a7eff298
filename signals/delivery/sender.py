"""A WebSocket connection's outgoing data frames: a bounded queue that keeps the latest event per subscription,
drained by one task per connection, so a slow reader only ever holds its own frames.

Events from workers are queued and the process's topic reader (`signals.delivery.hub`) returns at once: it never
waits for a socket. While the socket (or the whole process) is slower than its events, a subscription's queued
event is replaced by the next one
(`signals.delivery.events.coalesce`: the latest value; a ``chain`` frame merges its strikes), so the queue holds at
most one event per subscription. A frame that has waited ``slow_close_s`` means the reader cannot keep up even with
coalesced updates: the connection is closed with `CLOSE_SLOW`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from signals.delivery.events import SharedEvent, coalesce

CLOSE_SLOW = 4008  # the client reads too slowly even for coalesced updates


class SendQueue:
    def __init__(self, send: Callable[[SharedEvent, int], Awaitable[None]],
                 close: Callable[[int], Awaitable[None]], slow_close_s: float):
        self._send = send  # (event, how many events it stands for)
        self._close = close
        self._slow_close_s = slow_close_s
        self._pending: dict[str, tuple[SharedEvent, int, float]] = {}  # group -> (event, count, first queued at)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.closed = False

    def put(self, shared: SharedEvent) -> None:
        if self.closed:
            return
        group = shared.group
        held = self._pending.get(group)
        if held is None:
            self._pending[group] = (shared, shared.count, time.monotonic())
        else:
            merged = coalesce(held[0].event, shared.event)
            # the newer event as it is (not a merged chain) keeps the frame the other sockets share
            kept = shared if merged is shared.event else SharedEvent(group, merged)
            self._pending[group] = (kept, held[1] + shared.count, held[2])
            if time.monotonic() - held[2] > self._slow_close_s:
                self._give_up()
                return
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._drain())

    def drop(self, group: str) -> None:
        self._pending.pop(group, None)

    def __len__(self) -> int:
        return len(self._pending)

    def stop(self) -> None:
        self.closed = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()

    def _give_up(self) -> None:
        self.stop()
        self._closing = asyncio.create_task(self._close(CLOSE_SLOW))

    async def _drain(self) -> None:
        while not self.closed:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            shared, count, _ = self._pending.pop(next(iter(self._pending)))
            try:
                await self._send(shared, count)
            except OSError:  # the client went away; its disconnect stops this queue
                self.closed = True
                return


class MessageBucket:
    """Inbound messages per connection: a token bucket of ``burst`` refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
