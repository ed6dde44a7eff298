"""A WebSocket connection's outgoing data frames: written at once while the socket takes them, else a bounded queue
that keeps the latest event per subscription, drained by a task of the connection, so a slow reader only ever holds
its own frames.

The process's topic reader (`signals.delivery.hub`) hands each event over and goes on at once: it never waits for
a socket. While the socket (or the whole process) is slower than its events, a subscription's queued
event is replaced by the next one
(`signals.delivery.events.coalesce`: the latest value; a ``chain`` frame merges its strikes), so the queue holds at
most one event per subscription. A frame that has waited ``slow_close_s`` means the reader cannot keep up even with
coalesced updates: the connection is closed with `CLOSE_SLOW`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from signals.delivery.events import SharedEvent, coalesce

log = logging.getLogger(__name__)
CLOSE_SLOW = 4008  # the client reads too slowly even for coalesced updates


class SendQueue:
    def __init__(self, send: Callable[[SharedEvent, int], Awaitable[None]],
                 close: Callable[[int], Awaitable[None]], slow_close_s: float):
        self._send = send  # (event, how many events it stands for)
        self._close = close
        self._slow_close_s = slow_close_s
        self._pending: dict[str, tuple[SharedEvent, int, float]] = {}  # group -> (event, count, first queued at)
        self._task: asyncio.Task[None] | None = None  # sending what could not be written at once; None when idle
        self._closing: asyncio.Task[None] | None = None
        self.closed = False
        # frames of the connection's own (answers, snapshots) on their way: data frames queue behind them, so a
        # data frame written at once can never overtake an answer waiting for the socket
        self.answering = 0

    def put(self, shared: SharedEvent) -> None:
        if self.closed:
            return
        group = shared.group
        held = self._pending.get(group)
        if held is None:
            if self._task is None and not self.answering:
                self._send_now(shared, shared.count)
                return
            self._pending[group] = (shared, shared.count, time.monotonic())
            if self._task is None:
                self._task = asyncio.create_task(self._drain(None))
            return
        try:
            merged = coalesce(held[0].event, shared.event)
        except Exception:  # a malformed event must not stop the caller handing it to the other sockets
            log.exception("websocket events could not be merged; the newer one is sent")
            merged = shared.event
        # the newer event as it is (not a merged chain) keeps the frame the other sockets share
        kept = shared if merged is shared.event else SharedEvent(group, merged)
        self._pending[group] = (kept, held[1] + shared.count, held[2])
        if time.monotonic() - held[2] > self._slow_close_s:
            self._give_up()

    def drop(self, group: str) -> None:
        self._pending.pop(group, None)

    def __len__(self) -> int:
        return len(self._pending)

    def stop(self) -> None:
        self.closed = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
        # the connection's bound methods: without them this queue and its connection hold no cycle, and a closed
        # connection is freed at once rather than by a full collection
        self._send = self._close = _stopped

    def _give_up(self) -> None:
        close = self._close
        self.stop()
        self._closing = asyncio.create_task(close(CLOSE_SLOW))

    def _send_now(self, shared: SharedEvent, count: int) -> None:
        """Write the frame from the caller's step when the socket takes it at once (the usual case): a task woken
        per frame cost the web process more than the frame itself. A send that has to wait for the socket goes on
        in a task, and what arrives meanwhile is queued (and coalesced) behind it."""
        try:
            waiting = started(self._send(shared, count))
        except Exception as exc:
            self._failed(exc)
            return
        if waiting is not None:
            self._task = asyncio.create_task(self._drain(waiting))

    async def _drain(self, waiting: Awaitable[None] | None) -> None:
        """Finish the send under way (if any), then send what is queued, oldest subscription first."""
        try:
            while not self.closed:
                if waiting is None:
                    if not self._pending:
                        break
                    shared, count, _ = self._pending.pop(next(iter(self._pending)))
                    waiting = self._send(shared, count)
                try:
                    await waiting
                except Exception as exc:
                    self._failed(exc)
                waiting = None
        finally:
            self._task = None

    def _failed(self, exc: Exception) -> None:
        """A send raised ``exc`` (called in its except block): the client went away (OSError, the server's
        ClientDisconnected), whose disconnect stops this queue; else this frame is lost, not the socket, and never
        the caller's round."""
        if isinstance(exc, OSError):
            self.closed = True
        else:
            log.exception("a websocket frame could not be sent")


async def _stopped(*_: object) -> None:
    """What a stopped queue's send and close are."""


def started(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run ``coro`` up to its first suspension in the caller's step; None when it finished there, else an
    awaitable that runs the rest (as Python 3.12's eager tasks do). Until it suspends, ``coro`` runs as part of the
    caller's task: it must not use the current task (``asyncio.timeout`` would cancel the caller, not it)."""
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return _Rest(coro, suspended_on)


class _Rest:
    """The rest of a coroutine suspended on ``suspended_on``: awaiting this hands each future it waits for to the
    awaiting task, and passes back what the task sends or throws (a cancellation, say)."""

    def __init__(self, coro: Coroutine[Any, Any, None], suspended_on: Any):
        self._coro, self._suspended_on = coro, suspended_on

    def __await__(self) -> Generator[Any, None, None]:
        waiting_on = self._suspended_on
        while True:
            try:
                yield waiting_on
            except BaseException as exc:  # noqa: B036 (thrown in by the task, handed on to the coroutine)
                try:
                    waiting_on = self._coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = self._coro.send(None)
                except StopIteration:
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
