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


def publish(events: list[tuple[str, dict[str, Any]]]) -> int:
    """Send ``(group, message)`` events; return how many went to a group someone listens to."""
    if not events:
        return 0
    client = get_redis(settings.CHANNEL_LAYER_URL)
    names = list(dict.fromkeys(group_channel(group) for group, _ in events))
    listened = {name.decode() if isinstance(name, bytes) else name for name, count in client.pubsub_numsub(*names)
                if count}
    if not listened:
        return 0
    layer = get_channel_layer()
    pipe = client.pipeline(transaction=False)
    sent = 0
    for group, message in events:
        name = group_channel(group)
        if name in listened:
            pipe.publish(name, layer.serialize(message))
            sent += 1
    pipe.execute()
    return sent
