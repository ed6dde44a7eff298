"""Redis locks held by a token: taken with ``SET NX`` by the caller, renewed and released here only by the token
that holds them. The check and the change run in one Lua script, so a lock that expired and was taken by someone
else is never extended or deleted by its former holder.

Each function encodes its script's KEYS and ARGV (the layout is written at the top of the ``.lua`` file beside
this module).
"""

from __future__ import annotations

import redis

from feed import redis_client

_RENEW = redis_client.lua_source(__file__, "renew_lock.lua")
_RELEASE = redis_client.lua_source(__file__, "release_lock.lua")


def renew(client: redis.Redis, key: str, token: str, ttl_ms: int) -> bool:
    """Set the lock's TTL to ``ttl_ms`` milliseconds if ``token`` holds it; False if it does not (any more)."""
    return bool(redis_client.script(client, _RENEW)(keys=[key], args=[token, int(ttl_ms)]))


def release(client: redis.Redis, key: str, token: str) -> bool:
    """Delete the lock if ``token`` holds it; False if it does not (it expired, or another holder took it)."""
    return bool(redis_client.script(client, _RELEASE)(keys=[key], args=[token]))
