"""One Redis connection pool per process for data (streams, latest values, outputs)."""

from __future__ import annotations

import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    """A client on ``url`` (default REDIS_URL) with hiredis parsing when installed; bytes in, bytes out."""
    url = url or settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        _clients[url] = client
    return client
