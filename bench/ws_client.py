"""The client side of bench/websocket.py: one process holding many WebSocket connections, cheap per frame.

A library client (``websockets``) costs tens of microseconds of Python per frame before the frame is even parsed;
1,000 connections receiving ~14,000 frames/s then needed a core of their own, and on a 2-core machine the clients,
not the web process, set the pace (frames waited in socket buffers, which showed as seconds of latency). This
client speaks the protocol on a bare `asyncio.Protocol` (RFC 6455: upgrade request, masked frames out, unmasked
frames in, close and ping handled), parses each frame with orjson, and reports the CPU time it used in the measured
window so the driver can show the clients were not the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from array import array
from datetime import datetime
from typing import Any

import jwt
import orjson

DATA_HEAD = b'{"type":"data",'
CONNECTS_AT_ONCE = 100  # handshakes in flight per client process: bounded, so the server's backlog is never flooded


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask, RFC 6455 §5.3)."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    repeated = (key * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big") if size else b""
    return head + key + body


class Stats:
    def __init__(self, start: float, end: float):
        self.start, self.end = start, end
        self.counts = {"connected": 0, "late": 0, "connect_errors": 0, "error_frames": 0, "closed_by_server": 0,
                       "frames": 0, "events": 0, "coalesced_frames": 0}
        self.close_codes: dict[str, int] = {}  # close code (or "dropped": no close frame) -> connections
        self.refused: dict[str, int] = {}  # HTTP status of a refused upgrade -> connections
        self.connect_errors: dict[str, int] = {}  # why a connection was not made -> connections
        self.latencies = array("d")

    def closed(self, code: str) -> None:
        self.counts["closed_by_server"] += 1
        self.close_codes[code] = self.close_codes.get(code, 0) + 1

    def frame(self, payload: bytes) -> None:
        now = time.time()
        if payload.startswith(DATA_HEAD):
            if self.start <= now < self.end:
                # A data frame's top-level timestamp, seq and coalesced come last, after its data (REFERENCE.md §6,
                # `signals.delivery.events.frame_prefix`): parsing only that tail keeps the clients' CPU (which
                # shares the machine with the web process) a fraction of a whole frame's parse
                tail = orjson.loads(b"{" + payload[payload.rindex(b',"timestamp":"') + 1:])
                coalesced = tail.get("coalesced", 0)
                self.counts["frames"] += 1
                self.counts["events"] += 1 + coalesced
                self.counts["coalesced_frames"] += bool(coalesced)
                self.latencies.append(now - datetime.fromisoformat(tail["timestamp"]).timestamp())
        elif orjson.loads(payload).get("type") == "error":
            self.counts["error_frames"] += 1


class Connection(asyncio.Protocol):
    def __init__(self, path: str, stats: Stats):
        self.path, self.stats = path, stats
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.first_frame: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"  # type: ignore[attr-defined]
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                        .encode())

    def data_received(self, data: bytes) -> None:
        if self.upgraded.cancelled():  # the client gave up on this connection (see `client`)
            return
        self.buffer += data
        if not self.upgraded.done():
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            ok = self.buffer.startswith(b"HTTP/1.1 101")
            if not ok:  # refused: the status line says why (counted by the caller as a connect error)
                status = bytes(self.buffer[9:12]).decode(errors="replace")
                self.stats.refused[status] = self.stats.refused.get(status, 0) + 1
                self.upgraded.set_result(False)
                self.transport.close()  # type: ignore[union-attr]
                return
            del self.buffer[:head_end + 4]
            self.upgraded.set_result(ok)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= 2:
            opcode, size, start = buffer[at] & 0x0F, buffer[at + 1] & 0x7F, at + 2
            if size == 126:
                if len(buffer) - at < 4:
                    break
                size, start = struct.unpack_from("!H", buffer, at + 2)[0], at + 4
            elif size == 127:
                if len(buffer) - at < 10:
                    break
                size, start = struct.unpack_from("!Q", buffer, at + 2)[0], at + 10
            if len(buffer) < start + size:
                break
            payload = bytes(buffer[start:start + size])
            at = start + size
            self._frame(opcode, payload)
        del buffer[:at]

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            if not self.first_frame.done():
                self.first_frame.set_result(payload)
            else:
                self.stats.frame(payload)
        elif opcode == 0x8:
            if not self.closing:
                self.stats.closed(str(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else "none")
                self.closing = True
            if self.transport is not None:
                self.transport.close()
        elif opcode == 0x9 and self.transport is not None:
            self.transport.write(masked_frame(0xA, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        if not self.first_frame.done():
            self.first_frame.set_exception(ConnectionError("closed before the first frame"))
        elif not self.closing and time.time() < self.stats.end:
            self.stats.closed("dropped")
        self.closing = True

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(masked_frame(0x1, orjson.dumps(message)))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.closing = True
            self.transport.write(masked_frame(0x8, struct.pack("!H", 1000)))
            self.transport.close()


async def client(spec: dict[str, Any], index: int, topic: dict[str, Any], stats: Stats,
                 gate: asyncio.Semaphore) -> Connection | None:
    token = jwt.encode({"sub": f"bench-{index}", "exp": int(time.time()) + 3600}, spec["secret"], algorithm="HS256")
    loop = asyncio.get_running_loop()
    conn: Connection | None = None
    try:
        async with gate:
            # a client not connected by the end of the window gives up (counted as a connect error)
            async with asyncio.timeout(max(stats.end - time.time(), 1.0)):
                _, conn = await loop.create_connection(
                    lambda: Connection(f"{spec['path']}?token={token}", stats), "127.0.0.1", spec["port"])
                if not await conn.upgraded:
                    raise ConnectionError("upgrade refused")
                first = orjson.loads(await conn.first_frame)
                if first.get("type") != "authenticated":
                    raise ConnectionError(f"first frame {first.get('type')} {first.get('code', '')}")
                conn.send({"type": "subscribe", **topic})
    except Exception as exc:
        stats.counts["connect_errors"] += 1
        kind = f"{type(exc).__name__} {exc}"[:60]
        stats.connect_errors[kind] = stats.connect_errors.get(kind, 0) + 1
        if conn is not None and conn.transport is not None:
            conn.closing = True
            conn.transport.close()
        return None
    stats.counts["late"] += time.time() > stats.start
    stats.counts["connected"] += 1
    return conn


async def client_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Open ``spec["topics"]`` connections, read until the window ends; counts, 0.1 % latency quantiles, and the
    CPU seconds this process used within the window."""
    stats = Stats(spec["start"], spec["end"])
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    loop = asyncio.get_running_loop()
    cpu: dict[str, float] = {}
    loop.call_at(loop.time() + max(0.0, stats.start - time.time()), lambda: cpu.setdefault("start", time.process_time()))
    conns = await asyncio.gather(*(client(spec, spec["first"] + i, topic, stats, gate)
                                   for i, topic in enumerate(spec["topics"])))
    connected_at = time.time()  # every connection made or given up
    await asyncio.sleep(max(0.0, stats.end - time.time()))
    cpu_s = time.process_time() - cpu.get("start", time.process_time())
    for conn in conns:
        if conn is not None:
            conn.close()
    await asyncio.sleep(0.5)
    lat = sorted(stats.latencies)
    return {**stats.counts, "close_codes": stats.close_codes, "refused": stats.refused, "connect_error_kinds": stats.connect_errors, "cpu_s": cpu_s, "count": len(lat), "connected_at": connected_at,
            "latencies": [lat[int(q * (len(lat) - 1))] for q in (i / 1000 for i in range(1001))] if lat else []}
