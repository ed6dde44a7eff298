"""Finding and reading tick streams on one Redis server or across the nodes of a Redis Cluster.

On a cluster, SCAN walks one node at a time (each has its own cursor), and XREADGROUP takes streams of one slot
only, so the bridge reads each slot's streams apart, without blocking (a blocked read on one node would stall the
others) unless they all share one slot, at most once per `CLUSTER_POLL_MS` (what arrived meanwhile comes in one
read: a read of every node per tick would cost as many round trips).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import AskError, MovedError

from feed import redis_client
from feed.streams import text
from feed.ticks import decode_fields

Entry = tuple[str, str, dict[str, str]]  # (stream, entry id, fields)
Scan = tuple[str, Any, int]  # (pattern, node (None: the one server), cursor) of a discovery pass under way
CLUSTER_POLL_MS = 5  # on a cluster, the pause after a read that found nothing


def scan_starts(client: redis.Redis, patterns: list[str]) -> list[Scan]:
    """A new discovery pass: every pattern on every node (globs only; a plain name is its own stream)."""
    nodes = client.get_primaries() if isinstance(client, RedisCluster) else [None]
    return [(p, node, 0) for p in patterns for node in (nodes if any(ch in p for ch in "*?[") else [None])]


def scan_step(client: redis.Redis, scan: Scan, count: int) -> tuple[int, list[str]]:
    """One SCAN of a pass for streams; (next cursor, 0 at the end; stream names found)."""
    pattern, node, cursor = scan
    if not any(ch in pattern for ch in "*?["):
        return 0, [pattern]
    if node is None:
        cursor, names = client.scan(cursor, match=pattern, count=count, _type="STREAM")
    else:
        cursors, names = client.scan(cursor, match=pattern, count=count, _type="STREAM", target_nodes=node)
        cursor = next(iter(cursors.values()))
    return int(cursor), [text(name) for name in names]


def read_new(client: redis.Redis, group: str, consumer: str, streams: list[str], count: int, block_ms: int,
             also: Sequence[str] = ()) -> tuple[list[Entry], dict[str, Any]]:
    """Up to ``count`` new entries per stream for ``consumer``, and the values of the keys ``also`` (GET, asked in
    the same round trip, right after the read, so they are as fresh as it): on a server (or a cluster whose
    streams all share one slot) one XREADGROUP blocking up to ``block_ms``; otherwise one non-blocking
    XREADGROUP per slot, the commands of every node written before any reply is read, at most once per
    `CLUSTER_POLL_MS`."""
    if not isinstance(client, RedisCluster):
        if not also:
            return _entries(client.xreadgroup(group, consumer, {s: ">" for s in streams}, count=count,
                                              block=block_ms)), {}
        pipe = client.pipeline(transaction=False)
        pipe.xreadgroup(group, consumer, {s: ">" for s in streams}, count=count, block=block_ms)
        for key in also:
            pipe.get(key)
        replies = pipe.execute()
        return _entries(replies[0]), dict(zip(also, replies[1:], strict=True))
    by_node = _layout(client, tuple(streams))
    wait = _last_read.get(id(client), 0.0) + CLUSTER_POLL_MS / 1000 - time.monotonic()
    if wait > 0:  # at most one read of every node per poll: a read per node per tick would cost a round trip each
        time.sleep(wait)
    _last_read[id(client)] = time.monotonic()
    homes = [client.nodes_manager.get_node_from_slot(client.keyslot(key)) for key in also]
    blocking = (len(by_node) == 1 and len(next(iter(by_node.values()))[1]) == 1
                and all(home.name in by_node for home in homes))
    work = {name: (node, [_xreadgroup(group, consumer, names, count, block_ms if blocking else None)
                          for names in slots]) for name, (node, slots) in by_node.items()}
    placed = {}
    for key, home in zip(also, homes, strict=True):
        commands = work.setdefault(home.name, (home.redis_connection, []))[1]
        commands.append(("GET", key))
        placed[key] = (home.name, len(commands) - 1)
    try:
        replies = dict(zip(work, redis_client.pipelines_at_once(list(work.values())), strict=True))
    except redis.ConnectionError:  # a node is gone: the cluster client finds where its slots went
        _layouts.clear()
        raise
    reads = [reply for name in by_node for reply in replies[name][:len(by_node[name][1])]]
    errors = [reply for node_replies in replies.values() for reply in node_replies if isinstance(reply, Exception)]
    if any(isinstance(error, MovedError) for error in errors):
        _layouts.clear()  # slots moved (a resharding or a failover): learn the new map, read them next time
        client.nodes_manager.initialize()
    elif any(not isinstance(error, AskError) for error in errors):  # ASK: a slot migrating, read once it is done
        raise next(error for error in errors if not isinstance(error, AskError))
    # what the other reads took is pending for this consumer now: it goes on, whatever failed beside it
    found = [entry for reply in reads if not isinstance(reply, Exception) for entry in _entries(reply)]
    return found, {key: replies[name][index] for key, (name, index) in placed.items()
                   if not isinstance(replies[name][index], Exception)}


def _xreadgroup(group: str, consumer: str, names: list[str], count: int, block_ms: int | None) -> tuple[Any, ...]:
    block = ("BLOCK", block_ms) if block_ms is not None else ()
    return ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *block, "STREAMS", *names, *(">" for _ in names))


_last_read: dict[int, float] = {}  # cluster client -> when its last read started (time.monotonic)
_layouts: dict[tuple[int, tuple[str, ...]], dict[str, tuple[Any, list[list[str]]]]] = {}


def _layout(client: RedisCluster, streams: tuple[str, ...]) -> dict[str, tuple[Any, list[list[str]]]]:
    """Node name -> (that node's own client, the streams it serves grouped by slot). Each node's plain client
    costs a third of the cluster client's routing per read; a MOVED reply sends the bridge back here."""
    found = _layouts.get((id(client), streams))
    if found is None:
        by_slot: dict[int, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(client.keyslot(stream), []).append(stream)
        found = {}
        for slot, names in by_slot.items():
            node = client.nodes_manager.get_node_from_slot(slot)
            found.setdefault(node.name, (node.redis_connection, []))[1].append(names)
        _layouts.clear()
        _layouts[(id(client), streams)] = found
    return found


def _entries(response: Any) -> list[Entry]:
    return [(text(stream), text(entry_id), decode_fields(fields))
            for stream, entries in response or [] for entry_id, fields in entries if fields is not None]
