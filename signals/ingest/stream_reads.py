"""Finding and reading tick streams on one Redis server or across the nodes of a Redis Cluster.

On a cluster, SCAN walks one node at a time (each has its own cursor), and XREADGROUP takes streams of one slot
only, so the bridge reads each slot's streams apart, without blocking (a blocked read on one node would stall the
others): when nothing came, it waits ``poll_ms`` before it asks again.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.cluster import RedisCluster

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


def read_new(client: redis.Redis, group: str, consumer: str, streams: list[str], count: int,
             block_ms: int) -> list[Entry]:
    """Up to ``count`` new entries per stream for ``consumer``: one blocking XREADGROUP on a server; on a cluster one
    non-blocking XREADGROUP per slot, pipelined, then a pause of at most ``block_ms`` if none had any."""
    if not isinstance(client, RedisCluster):
        response = client.xreadgroup(group, consumer, {s: ">" for s in streams}, count=count, block=block_ms)
        return _entries(response)
    by_slot: dict[int, list[str]] = {}
    for stream in streams:
        by_slot.setdefault(client.keyslot(stream), []).append(stream)
    pipe = client.pipeline(transaction=False)
    for names in by_slot.values():
        pipe.xreadgroup(group, consumer, {s: ">" for s in names}, count=count)
    found = [entry for response in pipe.execute() for entry in _entries(response)]
    if not found:
        time.sleep(min(block_ms, CLUSTER_POLL_MS) / 1000)
    return found


def _entries(response: Any) -> list[Entry]:
    return [(text(stream), text(entry_id), decode_fields(fields))
            for stream, entries in response or [] for entry_id, fields in entries if fields is not None]
