"""A socket's send queue (signals/delivery/sender.py): a frame the socket takes at once is written from the caller's
step (no task per frame); a send that has to wait goes on in a task, with what arrives meanwhile queued behind it in
order, and behind an answer of the connection's own that waits for the socket; a socket whose send fails never
stops the caller handing events to the others; a stopped queue holds no reference to its connection."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from signals.delivery.events import SharedEvent, signal_event
from signals.delivery.sender import SendQueue, started

KEY = "NSE@NIFTY@index"


def shared(group: str, n: int) -> SharedEvent:
    return SharedEvent(group, signal_event("computed", KEY, {"instrument_key": KEY, "n": n},
                                           "2025-06-20T04:00:00+00:00"))


class Socket:
    """A send that completes at once while ``writable`` is set and waits for it otherwise (as uvicorn's does)."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent: list[tuple[str, int, int]] = []  # (group, n, count)
        self.fail: BaseException | None = None

    async def send(self, event: SharedEvent, count: int) -> None:
        await self.writable.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append((event.group, event.event["data"]["n"], count))


async def no_close(code: int) -> None:
    raise AssertionError(f"closed with {code}")


async def test_a_writable_socket_gets_the_frame_within_put() -> None:
    socket = Socket()
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    for n in range(3):
        queue.put(shared("a", n))
        assert socket.sent[-1] == ("a", n, 1)  # written before put returned: no task, no turn of the loop
    assert queue._task is None and len(queue) == 0


async def test_a_blocked_send_finishes_in_a_task_and_what_came_meanwhile_follows_in_order() -> None:
    socket = Socket()
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    socket.writable.clear()
    queue.put(shared("a", 0))
    queue.put(shared("b", 0))
    queue.put(shared("a", 1))
    queue.put(shared("a", 2))  # coalesced with a/1 behind the blocked a/0
    await asyncio.sleep(0.01)
    assert socket.sent == [] and len(queue) == 2
    socket.writable.set()
    await asyncio.sleep(0.01)
    assert socket.sent == [("a", 0, 1), ("b", 0, 1), ("a", 2, 2)]
    assert queue._task is None  # idle again: the next frame is written at once
    queue.put(shared("b", 1))
    assert socket.sent[-1] == ("b", 1, 1)


async def test_stopping_cancels_a_blocked_send_inside_the_send() -> None:
    socket = Socket()
    cancelled: list[bool] = []

    async def send(event: SharedEvent, count: int) -> None:
        try:
            await socket.send(event, count)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    queue = SendQueue(send, no_close, slow_close_s=5)
    socket.writable.clear()
    queue.put(shared("a", 0))
    task = queue._task
    assert task is not None
    await asyncio.sleep(0)  # the drain task waits on the rest of the send
    queue.stop()
    await asyncio.sleep(0)
    assert task.cancelled() and cancelled == [True]  # the cancellation reached the send where it waited
    assert queue._task is None and not socket.writable._waiters  # type: ignore[attr-defined]
    socket.writable.set()
    queue.put(shared("a", 1))
    await asyncio.sleep(0.01)
    assert socket.sent == []


async def test_data_frames_wait_behind_an_answer_waiting_for_the_socket() -> None:
    socket = Socket()
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    socket.writable.clear()

    async def answer() -> None:  # what the consumer's send_json does around its own frames
        queue.answering += 1
        try:
            await socket.send(shared("answer", 0), 1)
        finally:
            queue.answering -= 1

    answering = asyncio.create_task(answer())
    await asyncio.sleep(0)
    queue.put(shared("a", 0))  # not written at once: it would overtake the answer
    await asyncio.sleep(0.01)
    assert socket.sent == []
    socket.writable.set()
    await answering
    await asyncio.sleep(0.01)
    assert socket.sent == [("answer", 0, 1), ("a", 0, 1)]


async def test_a_stopped_queue_lets_go_of_its_connection() -> None:
    class Connection:
        async def send(self, event: SharedEvent, count: int) -> None: ...

        async def close(self, code: int) -> None: ...

    connection = Connection()
    queue = SendQueue(connection.send, connection.close, slow_close_s=5)
    queue.stop()
    assert not any(getattr(ref, "__self__", None) is connection for ref in gc.get_referents(queue.__dict__))


async def test_a_gone_client_closes_the_queue_without_raising_into_the_caller() -> None:
    socket = Socket()
    socket.fail = ConnectionResetError("gone")
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    queue.put(shared("a", 0))  # raises nothing: the hub goes on with the other sockets
    assert queue.closed
    socket.fail = None
    queue.put(shared("a", 1))
    assert socket.sent == []


async def test_a_frame_that_cannot_be_sent_is_dropped_and_the_socket_goes_on() -> None:
    socket = Socket()
    socket.fail = ValueError("not serialisable")
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    queue.put(shared("a", 0))  # raises nothing into the caller
    assert not queue.closed
    socket.fail = None
    queue.put(shared("a", 1))
    assert socket.sent == [("a", 1, 1)]


async def test_a_send_failing_after_it_waited_closes_the_queue() -> None:
    socket = Socket()
    queue = SendQueue(socket.send, no_close, slow_close_s=5)
    socket.writable.clear()
    queue.put(shared("a", 0))
    socket.fail = ConnectionResetError("gone")
    socket.writable.set()
    await asyncio.sleep(0.01)
    assert queue.closed and queue._task is None


async def test_started_runs_to_the_first_suspension_and_the_rest_when_awaited() -> None:
    steps: list[str] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        steps.append("before")
        steps.append(f"got {await gate}")
        await asyncio.sleep(0)
        steps.append("after")

    rest = started(work())
    assert steps == ["before"] and rest is not None
    task: asyncio.Task[Any] = asyncio.ensure_future(rest)  # type: ignore[arg-type]
    gate.set_result(7)
    await task
    assert steps == ["before", "got 7", "after"]

    async def quick() -> None:
        steps.append("quick")

    assert started(quick()) is None and steps[-1] == "quick"


async def test_a_waited_send_that_fails_still_lets_the_queued_frames_go() -> None:
    socket = Socket()

    async def send(event: SharedEvent, count: int) -> None:
        await socket.writable.wait()
        if event.event["data"]["n"] == 0:
            raise ValueError("not serialisable")
        socket.sent.append((event.group, event.event["data"]["n"], count))

    queue = SendQueue(send, no_close, slow_close_s=5)
    socket.writable.clear()
    queue.put(shared("a", 0))  # waits for the socket, then fails
    queue.put(shared("b", 1))  # queued behind it
    socket.writable.set()
    await asyncio.sleep(0.01)
    assert socket.sent == [("b", 1, 1)] and not queue.closed and queue._task is None
