"""The slow-client policy over real sockets (issue 13): a client that stops reading gets coalesced frames from a
bounded queue and is closed with 4008, while a normal client on the same web process keeps getting every frame on
time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from signals.delivery import fanout
from signals.delivery.events import signal_event
from tests.live import WebProcess

KEY = "NSE@NIFTY@index"
EVENTS = 400
PAD = "x" * 40_000  # ~40 KB a frame: the slow reader's socket buffers fill within the run


@pytest.fixture
def web() -> Iterator[WebProcess]:
    process = WebProcess(SIGNAL_WS_SLOW_CLOSE_S="1.5")
    yield process
    process.stop()


def open_socket(web: WebProcess, token: str) -> tuple[ClientConnection, str]:
    ws = connect(f"{web.ws_url}/ws/v2/signals/?token={token}", max_size=None, max_queue=10_000)
    assert json.loads(ws.recv(timeout=5))["type"] == "authenticated"
    ws.send(json.dumps({"type": "subscribe", "channel": "computed", "instrument_key": KEY}))
    subscribed = json.loads(ws.recv(timeout=5))
    assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
    return ws, subscribed["subscription_key"]


class RawClient:
    """A WebSocket client on a bare socket with a small receive buffer, which reads nothing until told to (a
    library client keeps reading in the background)."""

    def __init__(self, web: WebProcess, token: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", web.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws/v2/signals/?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self, timeout: float) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of each frame until the server closes the connection."""
        self.sock.settimeout(timeout)
        while True:
            while True:
                parsed = self._parse()
                if parsed is None:
                    break
                yield parsed
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, length, at = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            length, at = struct.unpack(">H", self.buffer[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack(">Q", self.buffer[2:10])[0], 10
        if len(self.buffer) < at + length:
            return None
        payload, self.buffer = self.buffer[at:at + length], self.buffer[at + length:]
        return opcode, payload


def read_all(ws: ClientConnection, got: list[tuple[float, dict[str, Any]]]) -> None:
    try:
        while True:
            frame = json.loads(ws.recv(timeout=30))
            got.append((time.monotonic(), frame))
            if frame["data"]["n"] == EVENTS - 1:
                return
    except (ConnectionClosed, TimeoutError):
        return


def test_a_reader_that_cannot_keep_up_is_closed_and_delays_nobody(web: WebProcess, make_token: Any) -> None:
    normal, group = open_socket(web, make_token(sub="normal"))
    slow = RawClient(web, make_token(sub="slow"))
    slow.send({"type": "subscribe", "channel": "computed", "instrument_key": KEY})
    got: list[tuple[float, dict[str, Any]]] = []
    reader = threading.Thread(target=read_all, args=(normal, got))
    reader.start()
    sent_at = {}
    for n in range(EVENTS):
        event = signal_event("computed", KEY, {"instrument_key": KEY, "n": n, "pad": PAD},
                             "2025-06-20T04:00:00+00:00")
        sent_at[n] = time.monotonic()
        assert fanout.publish([(group, event)]) == 1
        time.sleep(0.01)
    reader.join(30)

    # the normal client got every frame, in order, each soon after it was published
    numbers = [frame["data"]["n"] for _, frame in got]
    assert numbers[-1] == EVENTS - 1 and numbers == sorted(numbers)
    delays = sorted(at - sent_at[frame["data"]["n"]] for at, frame in got)
    assert delays[len(delays) * 99 // 100] < 0.5, f"p99 {delays[len(delays) * 99 // 100]:.3f}s"
    assert len(numbers) >= EVENTS * 0.9  # coalescing only ever happens to a reader that falls behind

    # the slow one is closed with 4008 once it reads what was buffered for it; the server counted it
    assert web.metric("signal_websocket_slow_closes_total") == 1
    data, close_code = 0, None
    for opcode, payload in slow.frames(timeout=10):
        if opcode == 0x8:
            close_code = struct.unpack(">H", payload[:2])[0]
            break
        frame = json.loads(payload)
        data += frame["type"] == "data"
    assert close_code == 4008
    assert 0 < data < EVENTS  # it was not sent everything: its queue was bounded
    normal.send(json.dumps({"type": "ping"}))
    assert json.loads(normal.recv(timeout=5))["type"] == "pong"  # and the normal client is still served
    normal.close()


async def test_a_slow_send_gets_the_latest_value_per_topic_and_merged_chain_rows() -> None:
    from signals.delivery.events import SharedEvent
    from signals.delivery.sender import SendQueue

    sent: list[tuple[str, Any, int]] = []
    closed: list[int] = []

    async def slow_send(shared: SharedEvent, count: int) -> None:
        await asyncio.sleep(0.05)
        sent.append((shared.group, shared.event, count))

    async def close(code: int) -> None:
        closed.append(code)

    queue = SendQueue(slow_send, close, slow_close_s=5)
    chain = {"underlying": KEY, "expiry_date": "2025-06-26", "spot": 1.0, "timestamp": "2025-06-20T04:00:00+00:00"}
    for n in range(20):
        queue.put(SharedEvent("computed", signal_event("computed", KEY, {"instrument_key": KEY, "n": n},
                                                       chain["timestamp"])))
        side = "call" if n % 2 else "put"
        rows = [{"strike": 24000 + 50 * (n % 3), side: {"strike": 24000 + 50 * (n % 3), "n": n}}]
        queue.put(SharedEvent("chain", signal_event("chain", KEY, {**chain, "strikes": rows}, chain["timestamp"],
                                                    {"expiry_date": "2025-06-26"})))
        assert len(queue) <= 2  # at most one pending event per subscription
        if n == 0:
            await asyncio.sleep(0.01)  # the sender takes the first events and is busy with them
    await asyncio.sleep(0.5)
    by_group: dict[str, list[tuple[Any, int]]] = {}
    for group, event, count in sent:
        by_group.setdefault(group, []).append((event, count))
    assert [e["data"]["n"] for e, _ in by_group["computed"]] == [0, 19]  # the first at once, then the latest
    assert sum(count for _, count in by_group["computed"]) == 20
    merged = {row["strike"]: row for row in by_group["chain"][-1][0]["data"]["strikes"]}
    assert merged[24000]["call"]["n"] == 15 and merged[24000]["put"]["n"] == 18  # n = 0, 3, ..., 18
    assert merged[24050]["call"]["n"] == 19 and merged[24050]["put"]["n"] == 16
    assert merged[24100]["call"]["n"] == 17 and merged[24100]["put"]["n"] == 14
    assert not closed
    queue.stop()
