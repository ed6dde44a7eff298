"""A WebSocket connection's outgoing data frames: a bounded queue that keeps the latest event per subscription,
drained by one task per connection, so a slow reader only ever holds its own frames.

Events from workers are queued and the consumer returns at once: the channel layer's reader never waits for a
socket. While the socket is slower than its events, a subscription's queued event is replaced by the next one
(`signals.delivery.events.coalesce`: the latest value; a ``chain`` frame merges its strikes), so the queue holds at
most one event per subscription. A frame that has waited ``slow_close_s`` means the reader cannot keep up even with
coalesced updates: the connection is closed with `CLOSE_SLOW`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from signals.delivery.events import SignalEvent, coalesce

CLOSE_SLOW = 4008  # the client reads too slowly even for coalesced updates


class SendQueue:
    def __init__(self, send: Callable[[str, SignalEvent, int], Awaitable[None]],
                 close: Callable[[int], Awaitable[None]], slow_close_s: float):
        self._send = send  # (subscription group, event, how many events it stands for)
        self._close = close
        self._slow_close_s = slow_close_s
        self._pending: dict[str, tuple[SignalEvent, int, float]] = {}  # group -> (event, count, first queued at)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.closed = False

    def put(self, group: str, event: SignalEvent) -> None:
        if self.closed:
            return
        held = self._pending.get(group)
        if held is None:
            self._pending[group] = (event, 1, time.monotonic())
        else:
            self._pending[group] = (coalesce(held[0], event), held[1] + 1, held[2])
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
            group = next(iter(self._pending))
            event, count, _ = self._pending.pop(group)
            try:
                await self._send(group, event, count)
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
