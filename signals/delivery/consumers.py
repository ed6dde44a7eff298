"""The WebSocket endpoint ``/ws/v2/signals/``: authenticate, join and leave groups, forward events.

Protocol (docs/REFERENCE.md §6): ``{"type": "auth", "token"}`` (or ``?token=``), ``subscribe`` / ``unsubscribe`` with
``channel``, ``instrument_key`` and ``params``, ``snapshot`` for a fresh copy of the latest value, ``ping``.
Data frames carry a per-subscription ``seq``; a gap means frames were lost (PubSub drops messages across a Redis
reconnect) and the client should ask for a snapshot. A client reconnecting subscribes again with the last ``seq`` it
saw: it gets a fresh snapshot carrying that ``seq`` and data frames continue from it. Bad messages get an error
frame; the socket stays open. A JWT's ``exp`` is enforced on the open socket (4401 unless a fresh ``auth`` came
in time); events come from the process's `signals.delivery.hub` (a subscription joins its topic there) and data
frames go through a per-connection `SendQueue` (slow readers get coalesced frames, then 4008).
``/ws/v2/dashboard/`` is the same protocol authenticated by the Django session (`DashboardConsumer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson
import redis.asyncio as aredis
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.asyncio.cluster import RedisCluster

from feed import keys
from signals.delivery.channels import SubscriptionError
from signals.delivery.events import SharedEvent, snapshot_frame
from signals.delivery.hub import topic_hub
from signals.delivery.sender import MessageBucket, SendQueue
from signals.delivery.session import session_user
from signals.delivery.subscriptions import resolve
from signals.monitoring import metrics
from webapi.auth import PlatformUser, TokenError, decode_token
from webapi.limits import MAX_MESSAGE_CHARS, LimitError, parse_json

log = logging.getLogger(__name__)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY = 4429
AUTH_TIMEOUT_S = 10.0
CONNECTION_TTL_S = 3600
REDIS_POOL_SIZE, REDIS_POOL_WAIT_S = 50, 20.0
_clients: dict[asyncio.AbstractEventLoop, aredis.Redis] = {}


def async_redis() -> aredis.Redis:
    """One asyncio Redis client per event loop (clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        if settings.REDIS_CLUSTER:
            client = RedisCluster.from_url(settings.REDIS_URL)
        else:
            # A blocking pool: a burst of connecting sockets waits for one of its connections (the plain pool
            # would refuse the 101st at once: MaxConnectionsError, seen with 1,000 clients connecting together).
            pool = aredis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=REDIS_POOL_SIZE,
                                                          timeout=REDIS_POOL_WAIT_S)
            client = aredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


class SignalConsumer(AsyncWebsocketConsumer):
    # Not on the Channels layer: the process's topic hub hands events to the send queue (`deliver`), decoded once
    # per process instead of once per socket; the layer would also subscribe a Pub/Sub channel per socket.
    channel_layer_alias = "none"

    async def connect(self) -> None:
        self.channel_name = f"ws.{uuid.uuid4().hex}"  # this socket's entry among its user's connections
        self.user: PlatformUser | None = None
        self.subscriptions: dict[str, dict[str, Any]] = {}  # group -> {subscription_key, channel, key, params, seq}
        self._auth_timer: asyncio.Task[None] | None = None
        self._expiry_timer: asyncio.Task[None] | None = None
        self.outbox = SendQueue(self._send_data, self._close_slow, settings.SIGNAL_WS_SLOW_CLOSE_S)
        self.bucket = MessageBucket(settings.SIGNAL_WS_MESSAGES_PER_S, settings.SIGNAL_WS_MESSAGE_BURST)
        await self.accept()
        metrics.WS_CONNECTIONS.inc()
        await self._first_authentication()

    async def _first_authentication(self) -> None:
        token = parse_qs(self.scope.get("query_string", b"").decode()).get("token", [""])[0]
        if token:
            await self._authenticate(token)
        else:
            self._auth_timer = asyncio.create_task(self._expire_unauthenticated())

    async def disconnect(self, code: int) -> None:
        metrics.WS_CONNECTIONS.dec()
        self.outbox.stop()
        for timer in (self._auth_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        await self._leave_groups()
        if self.user is not None:
            await async_redis().zrem(keys.ws_connections(self.user.sub), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"")
        if len(raw) > settings.SIGNAL_WS_MAX_MESSAGE_BYTES:
            await self._error("too_large", f"a message may have at most {settings.SIGNAL_WS_MAX_MESSAGE_BYTES} bytes")
            return
        if not self.bucket.take():
            await self._error("rate_limited", f"at most {settings.SIGNAL_WS_MESSAGES_PER_S:g} messages per second "
                              f"(bursts of {settings.SIGNAL_WS_MESSAGE_BURST}); this one was dropped")
            return
        try:
            message = parse_json(raw)
        except LimitError as exc:
            # too large, too deep, NaN or NUL: the same limits as a REST body (webapi/limits.py)
            await self._error(exc.code if exc.code != "invalid" else "bad_message", str(exc))
            return
        if not isinstance(message, dict):
            await self._error("bad_message", "message must be a JSON object")
            return
        kind = message.get("type")
        if kind == "auth":
            await self._authenticate(str(message.get("token") or ""))
            return
        if self.user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        handlers = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe, "snapshot": self._snapshot,
                    "ping": self._ping}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error("unknown_type", "type must be one of auth, subscribe, unsubscribe, snapshot, ping")
            return
        try:
            await handler(message)
        except OSError:
            return  # the client went away while we answered (the server's ClientDisconnected): nothing to tell
        except Exception:
            # a bug must cost the client one answer, not the socket
            log.exception("websocket message failed", extra={"type": kind})
            await self._error("internal", "the message could not be handled; it has been logged")

    # --- protocol ---------------------------------------------------------------------------------------------
    async def _authenticate(self, token: str) -> None:
        try:
            user = decode_token(token)
        except TokenError as exc:
            await self._error("unauthorized", str(exc))
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if self.user is not None:
            self.user = user if user.sub == self.user.sub else self.user
            self._watch_expiry()
            await self.send_json({"type": "authenticated", "user": self.user.sub})
            return
        if not await self._take_connection_slot(user.sub):
            await self._error("too_many_connections",
                              f"at most {settings.SIGNAL_WS_MAX_CONNECTIONS_PER_USER} connections per user")
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.user = user
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self._watch_expiry()
        await self.send_json({"type": "authenticated", "user": user.sub})

    def _watch_expiry(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        exp = (self.user.claims.get("exp") if self.user is not None else None)
        if isinstance(exp, int | float):
            self._expiry_timer = asyncio.create_task(self._expire_token(float(exp)))

    async def _expire_token(self, exp: float) -> None:
        await asyncio.sleep(max(exp - time.time(), 0))
        await self._error("token_expired", "the token expired; send {\"type\": \"auth\", \"token\"} with a fresh "
                          "one before exp to keep the socket")
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _take_connection_slot(self, sub: str) -> bool:
        # Entries expire by score so a crashed web process cannot hold a user's slots for ever.
        client = async_redis()
        key = keys.ws_connections(sub)
        now = time.time()
        # redis-py's asyncio cluster pipeline breaks its connection after a MULTI (redis-py 8.1); untransacted, two
        # connections racing can both count each other, so both may be refused, never both admitted over the limit
        pipe = client.pipeline(transaction=not settings.REDIS_CLUSTER)
        pipe.zremrangebyscore(key, "-inf", now - CONNECTION_TTL_S)
        pipe.zadd(key, {self.channel_name: now})
        pipe.zcard(key)
        pipe.expire(key, CONNECTION_TTL_S)
        _, _, count, _ = await pipe.execute()
        if count > settings.SIGNAL_WS_MAX_CONNECTIONS_PER_USER:
            await client.zrem(key, self.channel_name)
            return False
        return True

    async def _subscribe(self, message: dict[str, Any]) -> None:
        try:
            spec, key, params, group = resolve(message.get("channel"), message.get("instrument_key"),
                                               message.get("params"))
        except SubscriptionError as exc:
            await self._error(exc.code, str(exc))
            return
        resume = message.get("seq", 0)
        if not isinstance(resume, int) or isinstance(resume, bool) or resume < 0:
            await self._error("bad_seq", "seq (the last seq seen, to resume) must be a non-negative integer")
            return
        if group not in self.subscriptions:
            if len(self.subscriptions) >= settings.SIGNAL_WS_MAX_SUBSCRIPTIONS:
                await self._error("too_many_subscriptions",
                                  f"at most {settings.SIGNAL_WS_MAX_SUBSCRIPTIONS} subscriptions per connection")
                return
            self.subscriptions[group] = {"subscription_key": group, "channel": spec.name, "instrument_key": key,
                                         "params": params, "seq": resume}
            await topic_hub().join(group, self)
        elif "seq" in message:
            self.outbox.drop(group)  # the snapshot below supersedes what was queued
            self.subscriptions[group]["seq"] = resume
        await self.send_json({"type": "subscribed", "subscription_key": group, "channel": spec.name,
                              "instrument_key": key, "params": params})
        await self._send_snapshot(group)

    async def _subscription(self, message: dict[str, Any], missing: str) -> str | None:
        """The group of the subscription a message names (by subscription_key, or channel/instrument/params);
        answers an error frame and returns None when this connection has no such subscription."""
        group = message.get("subscription_key")
        if not isinstance(group, str) or group not in self.subscriptions:
            try:
                *_, group = resolve(message.get("channel"), message.get("instrument_key"), message.get("params"))
            except SubscriptionError as exc:
                await self._error(exc.code, str(exc))
                return None
        if group not in self.subscriptions:
            await self._error("not_subscribed", missing)
            return None
        return group

    async def _unsubscribe(self, message: dict[str, Any]) -> None:
        group = await self._subscription(message, "no such subscription on this connection")
        if group is None:
            return
        await topic_hub().leave(group, self)
        del self.subscriptions[group]
        self.outbox.drop(group)
        await self.send_json({"type": "unsubscribed", "subscription_key": group})

    async def _snapshot(self, message: dict[str, Any]) -> None:
        group = await self._subscription(message, "subscribe before asking for a snapshot")
        if group is not None:
            await self._send_snapshot(group)

    async def _send_snapshot(self, group: str) -> None:
        sub = self.subscriptions[group]
        spec, *_ = resolve(sub["channel"], sub["instrument_key"], sub["params"])
        data = await spec.snapshot(async_redis(), sub["instrument_key"], sub["params"])
        await self.send_json(snapshot_frame(group, sub["channel"], sub["instrument_key"], data, sub["seq"]))

    async def _ping(self, message: dict[str, Any]) -> None:
        if self.user is not None:
            await async_redis().zadd(keys.ws_connections(self.user.sub), {self.channel_name: time.time()})
        await self.send_json({"type": "pong", "timestamp": time.time()})

    # --- events from workers ----------------------------------------------------------------------------------
    def deliver(self, shared: SharedEvent) -> None:
        """An event of a topic this socket subscribes to (from `signals.delivery.hub`): queue it."""
        self.outbox.put(shared)

    async def _send_data(self, shared: SharedEvent, count: int) -> None:
        sub = self.subscriptions.get(shared.group)
        if sub is None:
            return
        sub["seq"] += 1
        # straight to the server's send (what ``self.send`` ends in): two coroutine layers fewer per frame
        await self.base_send({"type": "websocket.send", "text": shared.frame(sub["seq"], count - 1)})

    async def _leave_groups(self) -> None:
        hub = topic_hub()
        for group in list(self.subscriptions):
            await hub.leave(group, self)
        self.subscriptions.clear()

    async def _close_slow(self, code: int) -> None:
        metrics.WS_SLOW_CLOSES.inc()
        log.warning("websocket closed: the client reads too slowly", extra={"channel_name": self.channel_name})
        # Out of every group first: the close frame waits behind what the client has not read yet (the server's
        # send buffer is bounded), and nothing more is queued for it meanwhile.
        await self._leave_groups()
        await self.close(code=code)

    # --- helpers ----------------------------------------------------------------------------------------------
    async def _expire_unauthenticated(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_S)
        if self.user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message[:MAX_MESSAGE_CHARS]})

    async def send_json(self, content: Mapping[str, Any]) -> None:
        self.outbox.answering += 1
        try:
            await self.send(text_data=orjson.dumps(content).decode())
        finally:
            self.outbox.answering -= 1

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.outbox.stop()  # no data frame after the close frame (the server would refuse it)
        await super().close(code=code, reason=reason)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, through a thread: a hop per connect and
        # per client message, all queued on one thread while thousands of sockets connect. The database is only
        # ever reached through database_sync_to_async here, which closes stale connections itself.
        await getattr(self, get_handler_name(message))(message)


class DashboardConsumer(SignalConsumer):
    """The dashboard's socket: authenticated by the Django session of a same-origin page (staff or the
    ``dashboard`` group), not by a JWT; it has no token to expire."""

    async def _first_authentication(self) -> None:
        user = await session_user(self.scope)
        if user is None:
            await self._error("unauthorized", "log in to the dashboard first")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        await self.send_json({"type": "authenticated", "user": user.sub})

    async def _authenticate(self, token: str) -> None:
        await self._error("unauthorized", "the dashboard socket is authenticated by the session, not by tokens")
