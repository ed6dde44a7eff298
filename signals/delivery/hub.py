"""A web process's one reader of WebSocket topics: events decoded once per process and handed to local sockets.

Workers publish each topic's events to the Redis Pub/Sub channel of its Channels group (`signals.delivery.fanout`).
Going through the Channels layer, every event was queued once per subscribed consumer and decoded by each of them
(msgpack), then dispatched through the consumer's receive loop: that was most of the web process's cost per frame
(docs/BENCHMARKS.md, issue 13). Here one Pub/Sub connection per event loop subscribes to each topic some local
socket watches (and unsubscribes when the last one leaves, so ``PUBSUB NUMSUB`` still tells workers who listens);
an event is decoded once and put, as one `SharedEvent`, into the send queue of every local subscriber.

Shedding load: the reader takes everything the connection has buffered at once (up to `BURST_MAX` messages). While
the process keeps up, every event goes out: a topic's events of one burst are handed out in rounds, the sockets
writing one round before the next (a send queue would otherwise merge them). When a burst took longer than
`BEHIND_S` to go out, the process is behind its events: the next burst, holding what piled up meanwhile, keeps only
the latest event per topic (`signals.delivery.events.coalesce`, counted in the frame's ``coalesced``), so it costs
one frame per topic and socket and latency stays bounded instead of growing with the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Protocol

import redis.asyncio as aredis
from channels.layers import get_channel_layer
from django.conf import settings

from signals.delivery import fanout
from signals.delivery.events import SharedEvent, SignalEvent, coalesce

log = logging.getLogger(__name__)
BURST_MAX = 5000  # messages taken per read before handing them out (bounds one step of the event loop)
RECONNECT_WAIT_S = 1.0
# A burst that took longer than this to go out (its frames written, the loop free again) means the process is behind
# its events: the next burst is coalesced to the latest event per topic. Half the 50 ms tick-to-frame target.
BEHIND_S = 0.025


class Subscriber(Protocol):
    def deliver(self, shared: SharedEvent) -> None: ...


class TopicHub:
    def __init__(self, url: str):
        self._redis = aredis.Redis.from_url(url)
        self._pubsub = self._redis.pubsub()
        self._members: dict[str, set[Subscriber]] = {}  # Pub/Sub channel -> local subscribers
        self._subscribed: set[str] = set()
        self._lock = asyncio.Lock()
        self._has_channels = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._decode = get_channel_layer().deserialize

    async def join(self, group: str, member: Subscriber) -> None:
        """Deliver ``group``'s events to ``member`` from now on (returns once the topic is subscribed)."""
        channel = fanout.group_channel(group)
        self._members.setdefault(channel, set()).add(member)
        await self._reconcile(channel)

    async def leave(self, group: str, member: Subscriber) -> None:
        channel = fanout.group_channel(group)
        members = self._members.get(channel)
        if members is None or member not in members:
            return
        members.discard(member)
        if not members:
            del self._members[channel]
        await self._reconcile(channel)

    def members(self, group: str) -> int:
        return len(self._members.get(fanout.group_channel(group), ()))

    async def _reconcile(self, channel: str) -> None:
        # Joins and leaves interleave while a SUBSCRIBE is on its way: whoever holds the lock makes Redis match
        # the members as they are then.
        async with self._lock:
            wanted, held = channel in self._members, channel in self._subscribed
            if wanted and not held:
                await self._pubsub.subscribe(channel)
                self._subscribed.add(channel)
                self._has_channels.set()
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read())
            elif held and not wanted:
                await self._pubsub.unsubscribe(channel)
                self._subscribed.discard(channel)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        behind = False
        while True:
            try:
                if not self._subscribed:
                    self._has_channels.clear()
                    await self._has_channels.wait()
                    continue
                rounds = await self._burst(coalesced=behind)
                read_at = loop.time()
                for number, handed in enumerate(rounds):
                    if number:
                        await asyncio.sleep(0)  # the sockets send the round before the topics' next events
                    self._hand_out(handed)
                await asyncio.sleep(0)
                # what arrived while this burst went out waited that long: past BEHIND_S it is taken as a backlog
                behind = bool(rounds) and loop.time() - read_at > BEHIND_S
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis went away: the connection resubscribes on its next read; what was published meanwhile is
                # lost, which the subscriptions' seq cannot show (a client asks for a snapshot after a reconnect)
                log.exception("websocket topic reader failed; retrying")
                await asyncio.sleep(RECONNECT_WAIT_S)

    async def _burst(self, coalesced: bool) -> list[dict[str, SharedEvent]]:
        """Wait for a message, then take what else is buffered, as rounds of at most one event per channel in
        arrival order; ``coalesced``: one round, the latest event per channel (counted)."""
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        rounds: list[dict[str, SharedEvent]] = []
        next_round: dict[str, int] = {}  # channel -> the first round after its latest event
        taken = 0
        while message is not None:
            taken += 1
            channel, event = self._take(message)
            if event is not None:
                number = 0 if coalesced else next_round.get(channel, 0)
                if number == len(rounds):
                    rounds.append({})
                held = rounds[number].get(channel)
                rounds[number][channel] = SharedEvent(_group_of(channel), event) if held is None else \
                    SharedEvent(held.group, coalesce(held.event, event), held.count + 1)
                next_round[channel] = number + 1
            if taken >= BURST_MAX:
                break
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
        return rounds

    def _take(self, message: dict[str, Any]) -> tuple[str, SignalEvent | None]:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            return channel, self._decode(message["data"])
        except Exception:
            log.warning("undecodable websocket event dropped", extra={"channel": channel})
            return channel, None

    def _hand_out(self, burst: dict[str, SharedEvent]) -> None:
        for channel, shared in burst.items():
            for member in tuple(self._members.get(channel, ())):
                member.deliver(shared)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._pubsub.aclose()
        await self._redis.aclose()


def _group_of(channel: str) -> str:
    return channel[len(fanout.group_channel("")):]


_hubs: dict[asyncio.AbstractEventLoop, TopicHub] = {}


def topic_hub() -> TopicHub:
    """The hub of the running event loop (Redis connections cannot cross loops)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = TopicHub(settings.CHANNEL_LAYER_URL)
        _close_with(loop)
    return hub


def _close_with(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's hub when the loop closes (tests run many loops): a Pub/Sub connection left open would
    keep its topics counted as listened to."""
    original = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        hub = _hubs.pop(loop, None)
        if hub is not None and not loop.is_running():
            loop.run_until_complete(hub.close())
        self.close = original  # type: ignore[method-assign]
        original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
