"""A Redis Pub/Sub connection read in bulk, for the web process's topic hub (`signals.delivery.hub`).

redis-py's asyncio ``PubSub`` returns one message per ``get_message`` call, each through its timeout, retry and
parser layers: a quarter of a web process's time at 20,000 events/s (docs/BENCHMARKS.md, issue 13). Here a bare
asyncio protocol feeds what the socket delivers to hiredis and hands every complete message of that read to the
hub in one call.

The channels wanted are the one record (`BulkPubSub._channels`): (un)subscribing records the wish and, while
connected, tells Redis and waits for its confirmation; it never raises. While Redis cannot be reached a task
reconnects every `RECONNECT_WAIT_S` and subscribes what is wanted then. What was published meanwhile is lost
(Pub/Sub keeps nothing) and no ``seq`` shows it: each topic's next event brings its latest value.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

log = logging.getLogger(__name__)
RECONNECT_WAIT_S = 1.0
CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0
CONFIRMATIONS = (b"subscribe", b"unsubscribe")

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
        self._replies: list[asyncio.Future[Any]] = []  # waiting for the replies of commands sent, in order
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        messages: Messages = []
        reply = self._reader.gets()
        while reply is not False:
            if isinstance(reply, list) and reply:
                if reply[0] == b"message":
                    messages.append((reply[1], reply[2]))
                elif reply[0] in CONFIRMATIONS:
                    self._answer(reply)
                # other pushes (a pattern's message, a pong) answer no command of ours
            else:  # AUTH's answer: OK or an error
                self._answer(reply)
            reply = self._reader.gets()
        if messages:
            try:
                self._on_messages(messages)
            except Exception:  # an error escaping here would make asyncio drop the connection
                log.exception("websocket events could not be taken")

    def _answer(self, reply: Any) -> None:
        if not self._replies:
            return
        waiter = self._replies.pop(0)
        if not waiter.done():
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(RefusedError(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for waiter in self._replies:
            if not waiter.done():
                waiter.set_exception(ConnectionError("the Pub/Sub connection to Redis was lost"))
        self._replies.clear()
        self._on_lost()

    async def call(self, *parts: bytes, replies: int = 1) -> list[Any]:
        """Send a command and wait for its ``replies`` (one per channel of a (UN)SUBSCRIBE)."""
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionError("the Pub/Sub connection to Redis was lost")
        self.transport.write(command(*parts))
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        self._replies.extend(waiters)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                return [await waiter for waiter in waiters]
        except BaseException:
            for waiter in waiters:  # a late reply (or the connection's loss) then finds nobody waiting
                waiter.cancel()
            raise

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RefusedError(Exception):
    """Redis answered a command with an error (a wrong password, say)."""


class BulkPubSub:
    """Subscribes channels on one connection; ``on_messages`` gets each read's messages together."""

    def __init__(self, url: str, on_messages: Callable[[Messages], None]):
        self._url = urlparse(url)
        self._on_messages = on_messages
        self._channels: set[str] = set()  # what is wanted: subscribed on every new connection
        self._connection: _Connection | None = None
        self._opening = asyncio.Lock()
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._tell(b"SUBSCRIBE", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._tell(b"UNSUBSCRIBE", channel)

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._connection is not None:
            self._connection.close()

    async def _tell(self, verb: bytes, channel: str) -> None:
        """Tell Redis of a change to the wanted channels when connected; else the (re)connection takes it."""
        connection = self._connection
        if connection is None or connection.lost:
            if self._reconnecting is None or self._reconnecting.done():
                await self._open_or_retry()
            return  # a new connection subscribes what is wanted when it opens
        try:
            await connection.call(verb, channel.encode())
        except (OSError, TimeoutError, RefusedError) as exc:
            log.warning("websocket topic reader: %s %s not confirmed (%s); reconnecting", verb.decode(), channel,
                        exc)
            connection.close()  # its loss starts the reconnection, which subscribes what is wanted

    async def _open_or_retry(self) -> None:
        try:
            await self._open()
        except Exception as exc:
            log.warning("websocket topic reader cannot reach Redis (%s); retrying", exc)
            self._start_reconnecting()

    async def _open(self) -> None:
        """A new connection, authenticated, with every wanted channel subscribed (those wanted while it opened
        too), installed as the connection."""
        async with self._opening:
            if self._closed or (self._connection is not None and not self._connection.lost):
                return
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                connection = await self._connect()
            try:
                subscribed: set[str] = set()
                while (missing := self._channels - subscribed) or (subscribed - self._channels):
                    if missing:
                        await connection.call(b"SUBSCRIBE", *(c.encode() for c in missing), replies=len(missing))
                        subscribed |= missing
                    if extra := subscribed - self._channels:
                        await connection.call(b"UNSUBSCRIBE", *(c.encode() for c in extra), replies=len(extra))
                        subscribed -= extra
                if self._closed:
                    raise ConnectionError("closed while connecting")
            except BaseException:
                connection.close()
                raise
            self._connection = connection

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        url = self._url

        def made() -> _Connection:
            return _Connection(self._on_messages, self._lost)

        if url.scheme == "unix":
            _, connection = await loop.create_unix_connection(made, unquote(url.path))
        else:
            _, connection = await loop.create_connection(made, url.hostname or "localhost", url.port or 6379,
                                                         ssl=self._tls())
        password = url.password or parse_qs(url.query).get("password", [None])[0]
        if password:
            user = [unquote(url.username).encode()] if url.username else []
            try:
                await connection.call(b"AUTH", *user, unquote(password).encode())
            except BaseException:
                connection.close()
                raise
        return connection

    def _tls(self) -> ssl.SSLContext | None:
        if self._url.scheme != "rediss":
            return None
        context = ssl.create_default_context()
        if parse_qs(self._url.query).get("ssl_cert_reqs", [""])[0].lower() in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _lost(self) -> None:
        if not self._closed:
            self._start_reconnecting()

    def _start_reconnecting(self) -> None:
        if not self._closed and (self._reconnecting is None or self._reconnecting.done()):
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_WAIT_S)
            try:
                await self._open()
            except Exception as exc:
                log.warning("websocket topic reader cannot reach Redis (%s); retrying", exc)
                continue
            log.info("websocket topic reader reconnected", extra={"channels": len(self._channels)})
            return
