"""WebSocket fan-out from workers: publish computed events to Channels groups straight from sync code.

Workers are synchronous; calling the async layer's ``group_send`` through ``async_to_sync`` per event costs an
event loop hop each time. Channels-redis' PubSub layer maps a group to the Redis Pub/Sub channel
``{prefix}__group__{group}`` and serialises with ``layer.serialize``; we publish to that channel with one pipelined
round trip (or inside the batch's output script), and skip groups that no web process has subscribed to
(``PUBSUB NUMSUB``). `tests/test_websocket.py` proves a real consumer receives what this sends.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from feed import keys
from feed.redis_client import get_redis
from signals.delivery.events import SignalEvent

Event = tuple[str, SignalEvent]  # (Channels group, event), events built by `signals.delivery.events.signal_event`


def group_channel(group: str) -> str:
    return keys.layer_group_channel(settings.CHANNEL_LAYER_PREFIX, group)


def listeners(replies: list[tuple[Any, int]]) -> dict[str, int]:
    """``PUBSUB NUMSUB`` replies as {channel name: subscriber count}."""
    return {name.decode() if isinstance(name, bytes) else name: int(count) for name, count in replies}


def nobody_listens(group: str, known: dict[str, int]) -> bool:
    """True when ``known`` (counts read up front) says the group has no subscriber; unknown groups may have one."""
    return known.get(group_channel(group), 1) == 0


def targets(events: list[Event], known: dict[str, int] | None = None) -> list[tuple[int, str, bytes]]:
    """``(position in events, Pub/Sub channel, serialised message)`` for each ``(group, event)`` whose group has a
    listener.

    ``known`` holds subscriber counts already read (e.g. in the batch's first round trip); only the other groups
    are asked, with one ``PUBSUB NUMSUB``."""
    if not events:
        return []
    counts = dict(known or {})
    unknown = [n for n in dict.fromkeys(group_channel(group) for group, _ in events) if n not in counts]
    if unknown:
        counts.update(listeners(get_redis(settings.CHANNEL_LAYER_URL).pubsub_numsub(*unknown)))
    named = [(i, group_channel(group), message) for i, (group, message) in enumerate(events)]
    chosen = [(i, name, message) for i, name, message in named if counts.get(name)]
    if not chosen:
        return []
    layer = get_channel_layer()
    return [(i, name, layer.serialize(message)) for i, name, message in chosen]


def publish(events: list[Event], known: dict[str, int] | None = None,
            pipe: Any | None = None) -> int:
    """Send ``(group, event)`` pairs; return how many went to a group someone listens to.

    With ``pipe`` (a pipeline on CHANNEL_LAYER_URL's server) the publishes are queued there."""
    found = targets(events, known)
    if not found:
        return 0
    own = pipe is None
    if pipe is None:
        pipe = get_redis(settings.CHANNEL_LAYER_URL).pipeline(transaction=False)
    for _, name, payload in found:
        pipe.publish(name, payload)
    if own:
        pipe.execute()
    return len(found)


def shares_data_server() -> bool:
    """Whether the channel layer lives on the data Redis (so publishes can join the data writes' round trip)."""
    return settings.CHANNEL_LAYER_URL == settings.REDIS_URL
