"""One Redis connection pool per process for data (streams, latest values, outputs).

No Django here: the Django app sets where the default URL comes from (`set_default_url`), read at each call so a
test's settings override applies, and whether that URL names a node of a Redis Cluster (`set_cluster`, default
$REDIS_CLUSTER); then every client `get_redis` gives is cluster-aware and `feed.keys` tags every key of one
underlying with the same hash tag.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis._parsers import CommandsParser
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError

_clients: dict[tuple[str, bool], Any] = {}


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


class ScriptClusterPipeline(ClusterPipeline):
    """A cluster pipeline that carries Lua scripts, which redis-py's refuses (it cannot load a script on the node a
    command lands on). Here `ClusterScript` loads each script on every primary before its first call, so EVALSHA
    can be queued like any command: it goes to the node of its keys' one slot (several slots raise at once)."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except NoScriptError:  # a node restarted or failed over: the next attempt loads the scripts again
            _loaded_scripts(self.nodes_manager).clear()
            raise


class LocalKeysParser(CommandsParser):
    """Finds the keys of XREAD/XREADGROUP and of scripts itself: redis-py asks the server (``COMMAND GETKEYS``, a
    round trip) for every command whose keys move, which doubled the cost of each of a bridge's reads, and its
    cluster pipelines ask it for every command they carry, scripts included (a fifth of a worker's time)."""

    def get_keys(self, redis_conn: Any, *args: Any) -> Any:
        name = str(args[0]).upper()
        if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"):
            return list(args[3:3 + int(args[2])]) or None
        if name in ("XREAD", "XREADGROUP"):
            first = 4 if name == "XREADGROUP" else 1  # after GROUP name consumer
            start = next(i for i in range(first, len(args)) if args[i] in ("STREAMS", b"STREAMS")) + 1
            streams = args[start:]
            return list(streams[:len(streams) // 2])
        return super().get_keys(redis_conn, *args)


class SignalRedisCluster(RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.commands_parser = LocalKeysParser(self)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        return ScriptClusterPipeline(
            nodes_manager=self.nodes_manager, commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes, result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks, read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy, reinitialize_steps=self.reinitialize_steps,
            retry=self.retry, lock=self._lock, transaction=transaction, event_dispatcher=self._event_dispatcher)


class ClusterScript:
    """A registered script on a cluster client: loaded on every primary once per process (again after a node
    forgot it), then called by its SHA directly or queued on a `ScriptClusterPipeline`."""

    def __init__(self, client: RedisCluster, source: str):
        self.client = client
        self.script = client.register_script(source)
        self.sha = self.script.sha

    def __call__(self, keys: list[Any] | None = None, args: list[Any] | None = None, client: Any = None) -> Any:
        known = _loaded_scripts(self.client.nodes_manager)
        if self.sha not in known:
            self.client.script_load(self.script.script)  # every primary
            known.add(self.sha)
        if isinstance(client, ClusterPipeline):
            return client.evalsha(self.sha, len(keys or []), *(keys or []), *(args or []))
        return self.script(keys=keys, args=args, client=client)


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
        found = ClusterScript(client, source) if isinstance(client, RedisCluster) else client.register_script(source)
        _registered[(id(client), source)] = found
    return found


def _environment_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


_default_url: Callable[[], str] = _environment_url


def set_default_url(source: Callable[[], str]) -> None:
    """Where `get_redis()` without a URL connects: ``source()`` is asked at every call."""
    global _default_url
    _default_url = source


def _environment_cluster() -> bool:
    return os.environ.get("REDIS_CLUSTER", "").strip().lower() in ("1", "true", "yes", "on")


_cluster = _environment_cluster()


def set_cluster(cluster: bool) -> None:
    """Whether the default URL names a node of a Redis Cluster (fixed for the process: key names depend on it)."""
    global _cluster
    _cluster = bool(cluster)


def is_cluster() -> bool:
    return _cluster


def spans_slots(client: Any) -> bool:
    """Whether ``client`` is a cluster client, on which a MULTI cannot join keys of different slots (a stream and
    its dead-letter stream): writes that would be one transaction on a server are then pipelined apart."""
    return isinstance(client, RedisCluster)


def get_redis(url: str | None = None) -> redis.Redis:
    """A client on ``url`` (default: `set_default_url`'s, else $REDIS_URL) with hiredis parsing when installed;
    bytes in, bytes out. On the default URL under `set_cluster`, a Redis Cluster client that found every node from
    the one named (other URLs, such as the Channels layer's or a broker's, are plain servers)."""
    cluster = url is None and _cluster
    url = url or _default_url()
    client = _clients.get((url, cluster))
    if client is None:
        if cluster:
            client = SignalRedisCluster.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        else:
            client = SignalRedis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        _clients[(url, cluster)] = client
    return client


def pipelines_at_once(work: list[tuple[redis.Redis, list[tuple[Any, ...]]]]) -> list[list[Any]]:
    """Each ``(client, commands)`` sent as one pipeline on that client (a node of a cluster), every pipeline written
    before any reply is read: one round trip's wait for all nodes, where a pipeline per node costs one each.
    Replies are parsed as the client parses them; an error reply comes back as its exception, in its place. A
    connection error raises, and every connection used is dropped (a reply may be left unread on it)."""
    held: list[tuple[redis.Redis, Any]] = []
    try:
        for client, commands in work:
            connection = client.connection_pool.get_connection()
            held.append((client, connection))
            connection.send_packed_command(connection.pack_commands(commands))
        replies: list[list[Any]] = []
        for (client, connection), (_, commands) in zip(held, work, strict=True):
            replies.append([])
            for args in commands:
                try:
                    replies[-1].append(client.parse_response(connection, args[0]))
                except redis.ResponseError as exc:
                    replies[-1].append(exc)
        return replies
    except BaseException:
        for _, connection in held:
            connection.disconnect()
        raise
    finally:
        for client, connection in held:
            client.connection_pool.release(connection)
