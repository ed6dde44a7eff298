"""One Redis connection pool per process for data (streams, latest values, outputs).

No Django here: the Django app sets where the default URL comes from (`set_default_url`), read at each call so a
test's settings override applies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

_clients: dict[str, redis.Redis] = {}


class ScriptCachingPipeline(Pipeline):
    """A pipeline that checks its Lua scripts are loaded once per process instead of on every ``execute``.

    redis-py's pipeline sends ``SCRIPT EXISTS`` before every execute that carries a script: a whole extra round
    trip per tick batch. Here each script is loaded (or found) once per server connection pool; if the server
    forgets it (restart, ``SCRIPT FLUSH``) the execute raises ``NoScriptError`` and the cache is dropped, so the
    next attempt (the tick task retries on Redis errors) loads it again. Commands after a failed script may have
    run: every script the pipeline carries fails alike after a flush, and batches are idempotent to retry.
    """

    def load_scripts(self) -> None:
        known = _loaded_scripts(self.connection_pool)
        missing = [s for s in self.scripts if s.sha not in known]
        if not missing:
            return
        self.scripts = set(missing)
        super().load_scripts()
        known.update(s.sha for s in missing)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except NoScriptError:
            _loaded_scripts(self.connection_pool).clear()
            raise


class SignalRedis(redis.Redis):
    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return ScriptCachingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


_script_lock = threading.Lock()
_scripts_by_pool: dict[int, set[str]] = {}


def _loaded_scripts(pool: Any) -> set[str]:
    with _script_lock:
        return _scripts_by_pool.setdefault(id(pool), set())


_registered: dict[tuple[int, str], Any] = {}


def lua_source(module_file: str, name: str) -> str:
    """The text of the Lua script ``name`` kept beside the Python module ``module_file`` (pass ``__file__``)."""
    return Path(module_file).with_name(name).read_text()


def script(client: redis.Redis, source: str) -> Any:
    """``client.register_script(source)``, once per client and source."""
    found = _registered.get((id(client), source))
    if found is None:
        found = _registered[(id(client), source)] = client.register_script(source)
    return found


def _environment_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


_default_url: Callable[[], str] = _environment_url


def set_default_url(source: Callable[[], str]) -> None:
    """Where `get_redis()` without a URL connects: ``source()`` is asked at every call."""
    global _default_url
    _default_url = source


def get_redis(url: str | None = None) -> redis.Redis:
    """A client on ``url`` (default: `set_default_url`'s, else $REDIS_URL) with hiredis parsing when installed;
    bytes in, bytes out."""
    url = url or _default_url()
    client = _clients.get(url)
    if client is None:
        client = SignalRedis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        _clients[url] = client
    return client
