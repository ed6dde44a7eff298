"""A Redis Pub/Sub connection read in bulk, for the web process's topic hub (`signals.delivery.hub`).

redis-py's asyncio ``PubSub`` returns one message per ``get_message`` call, each through its timeout, retry and
parser layers: a quarter of a web process's time at 20,000 events/s (docs/BENCHMARKS.md, issue 13). Here a bare
asyncio protocol feeds what the socket delivers to hiredis and hands every complete message of that read to the
hub in one call. (UN)SUBSCRIBE waits for Redis's confirmation. When the connection drops, the channels are
subscribed again on a new one as soon as Redis answers; what was published meanwhile is lost (Pub/Sub keeps
nothing), which a client learns from its subscriptions' ``seq`` (it asks for a snapshot after a reconnect).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis

log = logging.getLogger(__name__)
RECONNECT_WAIT_S = 1.0
REPLY_TIMEOUT_S = 10.0

Messages = list[tuple[bytes, bytes]]  # (channel, data) in arrival order


def command(*parts: bytes) -> bytes:
    """A command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    def __init__(self, on_messages: Callable[[Messages], None], on_lost: Callable[[], None]):
        self._on_messages, self._on_lost = on_messages, on_lost
        self._reader = hiredis.Reader()
        self._replies: collections.deque[asyncio.Future[Any]] = collections.deque()  # commands' replies, in order
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        messages: Messages = []
        reply = self._reader.gets()
        while reply is not False:
            if isinstance(reply, list) and reply and reply[0] == b"message":
                messages.append((reply[1], reply[2]))
            elif self._replies:  # a (un)subscribe confirmation, or AUTH's answer
                waiter = self._replies.popleft()
                if not waiter.done():
                    if isinstance(reply, hiredis.ReplyError):
                        waiter.set_exception(ConnectionError(f"Redis refused: {reply}"))
                    else:
                        waiter.set_result(reply)
            reply = self._reader.gets()
        if messages:
            self._on_messages(messages)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self._replies:
            waiter = self._replies.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("the Pub/Sub connection to Redis was lost"))
        self._on_lost()

    async def call(self, *parts: bytes) -> Any:
        if self.lost or self.transport is None:
            raise ConnectionError("the Pub/Sub connection to Redis was lost")
        waiter = asyncio.get_running_loop().create_future()
        self._replies.append(waiter)
        self.transport.write(command(*parts))
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class BulkPubSub:
    """Subscribes channels on one connection; ``on_messages`` gets each read's messages together."""

    def __init__(self, url: str, on_messages: Callable[[Messages], None]):
        self._url = urlparse(url)
        self._on_messages = on_messages
        self._channels: set[str] = set()  # what is wanted: subscribed again after a reconnect
        self._connection: _Connection | None = None
        self._opening = asyncio.Lock()
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        connection = await self._connected()
        await connection.call(b"SUBSCRIBE", channel.encode())

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        connection = await self._connected()
        await connection.call(b"UNSUBSCRIBE", channel.encode())

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._connection is not None:
            self._connection.close()

    async def _connected(self) -> _Connection:
        async with self._opening:
            if self._connection is None or self._connection.lost:
                self._connection = await self._open()
            return self._connection

    async def _open(self) -> _Connection:
        """A new connection, authenticated, with every wanted channel subscribed."""
        loop = asyncio.get_running_loop()
        url = self._url

        def made() -> _Connection:
            return _Connection(self._on_messages, self._lost)

        if url.scheme == "unix":
            _, connection = await loop.create_unix_connection(made, url.path)
        else:
            context = ssl.create_default_context() if url.scheme == "rediss" else None
            _, connection = await loop.create_connection(made, url.hostname or "localhost", url.port or 6379,
                                                         ssl=context)
        try:
            if url.password:
                await connection.call(b"AUTH", *([unquote(url.username).encode()] if url.username else []),
                                      unquote(url.password).encode())
            if self._channels:
                await asyncio.gather(*(connection.call(b"SUBSCRIBE", c.encode()) for c in list(self._channels)))
        except BaseException:
            connection.close()
            raise
        return connection

    def _lost(self) -> None:
        if not self._closed and (self._reconnecting is None or self._reconnecting.done()):
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            try:
                await self._connected()
                log.info("websocket topic reader reconnected", extra={"channels": len(self._channels)})
                return
            except (OSError, TimeoutError):
                log.warning("websocket topic reader cannot reach Redis; retrying", exc_info=True)
                await asyncio.sleep(RECONNECT_WAIT_S)
