"""A web process's one reader of WebSocket topics: events decoded once per process and handed to local sockets.

Workers publish each topic's events to the Redis Pub/Sub channel of its Channels group (`signals.delivery.fanout`).
Going through the Channels layer, every event was queued once per subscribed consumer and decoded by each of them
(msgpack), then dispatched through the consumer's receive loop: that was most of the web process's cost per frame
(docs/BENCHMARKS.md, issue 13). Here one Pub/Sub connection per event loop subscribes to each topic some local
socket watches (and unsubscribes when the last one leaves, so ``PUBSUB NUMSUB`` still tells workers who listens);
an event is decoded once and put, as one `SharedEvent`, into the send queue of every local subscriber.

Two tasks: a reader keeps the connection drained (decoding each event once, into a list in arrival order), and a
fan-out hands what has arrived to the subscribers' send queues. Shedding load: while the process keeps up, every
event goes out: a topic's events that arrived together are handed out in rounds, the sockets writing one round
before the next (a send queue would otherwise merge them). When a fan-out took longer than `BEHIND_S` (its frames
written, the loop free again), the process is behind its events: the next fan-out, holding what piled up
meanwhile, keeps only the latest event per topic (`signals.delivery.events.coalesce`, counted in the frame's
``coalesced``), so it costs one frame per topic and socket and latency stays bounded instead of growing with a
backlog.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Protocol

import redis.asyncio as aredis
from channels.layers import get_channel_layer
from django.conf import settings

from signals.delivery import fanout
from signals.delivery.events import SharedEvent, coalesce

log = logging.getLogger(__name__)
BURST_MAX = 5000  # messages read in one step of the event loop
HELD_MAX = 50_000  # events read and not yet handed out, beyond which they are coalesced at once
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
        self._members: dict[str, set[Subscriber]] = {}  # group -> local subscribers
        self._subscribed: set[str] = set()  # groups
        self._lock = asyncio.Lock()
        self._changing: dict[str, int] = {}  # group -> reconciles under way (its subscription may be changing)
        self._has_channels = asyncio.Event()
        self._arrived: list[SharedEvent] = []  # read, not yet handed out (in arrival order)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._decode = get_channel_layer().deserialize
        self._prefix_len = len(fanout.group_channel(""))

    async def join(self, group: str, member: Subscriber) -> None:
        """Deliver ``group``'s events to ``member`` from now on (returns once the topic is subscribed)."""
        self._members.setdefault(group, set()).add(member)
        await self._reconcile(group)

    async def leave(self, group: str, member: Subscriber) -> None:
        members = self._members.get(group)
        if members is None or member not in members:
            return
        members.discard(member)
        if not members:
            del self._members[group]
        await self._reconcile(group)

    def members(self, group: str) -> int:
        return len(self._members.get(group, ()))

    async def _reconcile(self, group: str) -> None:
        # Nothing to change (the common case: a socket joins a topic others watch): no lock, whose waiters would
        # each wait a turn of the event loop (with thousands of sockets connecting during a fan-out, seconds).
        if (group in self._members) == (group in self._subscribed) and group not in self._changing:
            return
        # Joins and leaves interleave while a SUBSCRIBE is on its way: whoever holds the lock makes Redis match
        # the members as they are then.
        self._changing[group] = self._changing.get(group, 0) + 1
        try:
            await self._change(group)
        finally:
            self._changing[group] -= 1
            if not self._changing[group]:
                del self._changing[group]

    async def _change(self, group: str) -> None:
        async with self._lock:
            wanted, held = group in self._members, group in self._subscribed
            if wanted and not held:
                await self._pubsub.subscribe(fanout.group_channel(group))
                self._subscribed.add(group)
                self._has_channels.set()
                if not self._tasks:
                    self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._fan_out())]
            elif held and not wanted:
                await self._pubsub.unsubscribe(fanout.group_channel(group))
                self._subscribed.discard(group)

    async def _read(self) -> None:
        """Keep the Pub/Sub connection drained (Redis drops a subscriber whose output buffer outgrows its limit),
        whatever the sockets are doing."""
        while True:
            try:
                if not self._subscribed:
                    self._has_channels.clear()
                    await self._has_channels.wait()
                    continue
                taken = await self._take_buffered()
                if self._arrived:
                    if len(self._arrived) > HELD_MAX:  # the fan-out has not come round for long: keep the latest
                        self._arrived = list(in_rounds(self._arrived, coalesced=True)[0].values())
                    self._wake.set()
                if taken >= BURST_MAX:
                    await asyncio.sleep(0)  # let the sockets write before reading on
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis went away: the connection resubscribes on its next read; what was published meanwhile is
                # lost, which the subscriptions' seq cannot show (a client asks for a snapshot after a reconnect)
                log.exception("websocket topic reader failed; retrying")
                await asyncio.sleep(RECONNECT_WAIT_S)

    async def _take_buffered(self) -> int:
        """Wait for a message, then take what else is buffered (at most BURST_MAX); returns how many were read."""
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        taken = 0
        while message is not None:
            taken += 1
            channel = message["channel"]
            group = (channel.decode() if isinstance(channel, bytes) else channel)[self._prefix_len:]
            try:
                self._arrived.append(SharedEvent(group, self._decode(message["data"])))
            except Exception:
                log.warning("undecodable websocket event dropped", extra={"group": group})
            if taken >= BURST_MAX:
                break
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
        return taken

    async def _fan_out(self) -> None:
        loop = asyncio.get_running_loop()
        behind = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            arrived, self._arrived = self._arrived, []
            started = loop.time()
            try:
                for number, handed in enumerate(in_rounds(arrived, coalesced=behind)):
                    if number:
                        await asyncio.sleep(0)  # the sockets send the round before the topics' next events
                    self._hand_out(handed)
            except Exception:
                log.exception("websocket events could not be handed out")
            await asyncio.sleep(0)
            # what arrived while these went out waited that long: past BEHIND_S it is taken as a backlog
            behind = loop.time() - started > BEHIND_S

    def _hand_out(self, handed: dict[str, SharedEvent]) -> None:
        for group, shared in handed.items():
            for member in tuple(self._members.get(group, ())):
                member.deliver(shared)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._pubsub.aclose()
        await self._redis.aclose()


def in_rounds(arrived: list[SharedEvent], coalesced: bool) -> list[dict[str, SharedEvent]]:
    """Events in rounds of at most one per group, in arrival order; ``coalesced``: one round, the latest event per
    group standing for all of that group's (counted)."""
    rounds: list[dict[str, SharedEvent]] = []
    next_round: dict[str, int] = {}  # group -> the first round after its latest event
    for shared in arrived:
        group = shared.group
        number = 0 if coalesced else next_round.get(group, 0)
        if number == len(rounds):
            rounds.append({})
        held = rounds[number].get(group)
        rounds[number][group] = shared if held is None else \
            SharedEvent(group, coalesce(held.event, shared.event), held.count + shared.count)
        next_round[group] = number + 1
    return rounds


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
