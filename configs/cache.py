"""Config-owned Redis cache entries: every key under ``signal:latest:`` ending in ``:{config_id}`` (for example
``signal:latest:computed:{instrument}:{config_id}``, written by signals/delivery/outputs.py; the pattern is
`feed.keys.config_cache_pattern`) belongs to that config and is dropped when the config changes or is deleted, so
nothing computed under the old definition is served again."""

from __future__ import annotations

import redis

from feed import keys
from feed.redis_client import get_redis


def drop_config_cache(config_id: int, client: redis.Redis | None = None) -> int:
    """Delete (UNLINK) the config's cached entries found with SCAN; returns how many were deleted."""
    client = client or get_redis()
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.config_cache_pattern(config_id), count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted
