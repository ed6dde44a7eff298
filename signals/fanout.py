"""WebSocket fan-out from workers: publish computed events to Channels groups straight from sync code.

Workers are synchronous; calling the async layer's ``group_send`` through ``async_to_sync`` per event costs an
event loop hop each time. Channels-redis' PubSub layer maps a group to the Redis Pub/Sub channel
``{prefix}__group__{group}`` and serialises with ``layer.serialize``; we publish to that channel with one pipelined
round trip, and skip groups that no web process has subscribed to (``PUBSUB NUMSUB``).
`tests/test_websocket.py` proves a real consumer receives what this sends.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from signals.redis_client import get_redis


def group_channel(group: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}__group__{group}"


def listeners(replies: list[tuple[Any, int]]) -> dict[str, int]:
    """``PUBSUB NUMSUB`` replies as {channel name: subscriber count}."""
    return {name.decode() if isinstance(name, bytes) else name: int(count) for name, count in replies}


def publish(events: list[tuple[str, dict[str, Any]]], known: dict[str, int] | None = None,
            pipe: Any | None = None) -> int:
    """Send ``(group, message)`` events; return how many went to a group someone listens to.

    ``known`` holds subscriber counts already read (e.g. in the batch's first round trip); only the other groups
    are asked. With ``pipe`` (a pipeline on CHANNEL_LAYER_URL's server) the publishes are queued there.
    """
    if not events:
        return 0
    client = get_redis(settings.CHANNEL_LAYER_URL)
    counts = dict(known or {})
    unknown = [n for n in dict.fromkeys(group_channel(group) for group, _ in events) if n not in counts]
    if unknown:
        counts.update(listeners(client.pubsub_numsub(*unknown)))
    targets = [(group_channel(group), message) for group, message in events]
    targets = [(name, message) for name, message in targets if counts.get(name)]
    if not targets:
        return 0
    layer = get_channel_layer()
    own = pipe is None
    if pipe is None:
        pipe = client.pipeline(transaction=False)
    for name, message in targets:
        pipe.publish(name, layer.serialize(message))
    if own:
        pipe.execute()
    return len(targets)
