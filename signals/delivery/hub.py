"""A web process's one reader of WebSocket topics: events decoded once per process and handed to local sockets.

Workers publish each topic's events to the Redis Pub/Sub channel of its Channels group (`signals.delivery.fanout`).
Going through the Channels layer, every event was queued once per subscribed consumer and decoded by each of them
(msgpack), then dispatched through the consumer's receive loop: that was most of the web process's cost per frame
(docs/BENCHMARKS.md, issue 13). Here one Pub/Sub connection per event loop subscribes to each topic some local
socket watches (and unsubscribes when the last one leaves, so ``PUBSUB NUMSUB`` still tells workers who listens);
an event is decoded once and put, as one `SharedEvent`, into the send queue of every local subscriber.

The connection (`signals.delivery.pubsub`) hands each read's messages over as it reads, so it stays drained
whatever the sockets are doing; each event is decoded once, into a list in arrival order, and a fan-out task hands
what has arrived to the subscribers' send queues. Shedding load: while the process keeps up, every
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

from channels.layers import get_channel_layer
from django.conf import settings

from signals.delivery import fanout
from signals.delivery.events import SharedEvent, coalesce
from signals.delivery.pubsub import BulkPubSub

log = logging.getLogger(__name__)
HELD_MAX = 50_000  # events read and not yet handed out, beyond which they are coalesced at once
# A burst that took longer than this to go out (its frames written, the loop free again) means the process is behind
# its events: the next burst is coalesced to the latest event per topic. Half the 50 ms tick-to-frame target.
BEHIND_S = 0.025
# A round for thousands of sockets writes a frame to each (tens of ms): the loop turns between slices of it, so
# handshakes and clients' messages waiting on Redis replies go on during a fan-out, not only between fan-outs (5,000
# sockets connecting under load took minutes).
HAND_OUT_SLICE = 200


class Subscriber(Protocol):
    def deliver(self, shared: SharedEvent) -> None: ...


class TopicHub:
    def __init__(self, url: str):
        self._pubsub = BulkPubSub(url, self._arrive)
        self._members: dict[str, set[Subscriber]] = {}  # group -> local subscribers
        self._subscribed: set[str] = set()  # groups
        self._lock = asyncio.Lock()
        self._changing: dict[str, int] = {}  # group -> reconciles under way (its subscription may be changing)
        self._arrived: list[SharedEvent] = []  # read, not yet handed out (in arrival order)
        self._wake = asyncio.Event()
        self._fan_out_task: asyncio.Task[None] | None = None
        self._decode = get_channel_layer().deserialize
        self._prefix_len = len(fanout.group_channel(""))

    async def join(self, group: str, member: Subscriber) -> None:
        """Deliver ``group``'s events to ``member`` from now on (returns once Redis confirmed the subscription; at
        once while Redis is down, whose reconnection then subscribes it)."""
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
                if self._fan_out_task is None:
                    self._fan_out_task = asyncio.create_task(self._fan_out())
                await self._pubsub.subscribe(fanout.group_channel(group))
                self._subscribed.add(group)
            elif held and not wanted:
                await self._pubsub.unsubscribe(fanout.group_channel(group))
                self._subscribed.discard(group)

    def _arrive(self, messages: list[tuple[bytes, bytes]]) -> None:
        """What one read of the Pub/Sub connection brought, decoded once each (called by the connection as it
        reads, so Redis never holds a backlog for this process, whatever the sockets are doing)."""
        for channel, data in messages:
            group = channel[self._prefix_len:].decode()
            try:
                self._arrived.append(SharedEvent(group, self._decode(data)))
            except Exception:
                log.warning("undecodable websocket event dropped", extra={"group": group})
        if len(self._arrived) > HELD_MAX:  # the fan-out has not come round for long: keep the latest
            self._arrived = list(in_rounds(self._arrived, coalesced=True)[0].values())
        if self._arrived:
            self._wake.set()

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
                    await self._hand_out(handed)
            except Exception:
                log.exception("websocket events could not be handed out")
            await asyncio.sleep(0)
            # what arrived while these went out waited that long: past BEHIND_S it is taken as a backlog
            behind = loop.time() - started > BEHIND_S

    async def _hand_out(self, handed: dict[str, SharedEvent]) -> None:
        given = 0
        for group, shared in handed.items():
            for member in tuple(self._members.get(group, ())):
                member.deliver(shared)
                given += 1
                if given % HAND_OUT_SLICE == 0:
                    await asyncio.sleep(0)

    async def close(self) -> None:
        if self._fan_out_task is not None:
            self._fan_out_task.cancel()
        await self._pubsub.close()


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
