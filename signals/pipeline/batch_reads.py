"""A tick batch's first round trip: everything it needs from Redis before it writes, in one pipeline.

That is the config registry version, the tick each instrument held as its latest before the batch (the previous
ticks, and the tick times that guard latest results), each instrument's timeframes in use (for the bars service),
and, when the channel layer shares the data server, the listener counts of the instruments' WebSocket topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis

from feed import keys, redis_client
from signals.delivery import fanout
from signals.delivery.ws_chain import chain_groups

WS_TOPICS = ("computed", "greeks")  # per-instrument WebSocket channels whose listeners are read up front
_READ_LUA = redis_client.lua_source(__file__, "read_batch.lua")


def read_batch_keys(instrument_keys: list[str]) -> list[str]:
    """KEYS of ``read_batch.lua`` (no ARGV): the n instruments' latest-tick hashes, then their timeframes-in-use sets
    in the same order. The script returns ``{{tick JSON or nil per instrument}, {set members per instrument}}``."""
    return [keys.latest_tick(k) for k in instrument_keys] + [keys.bars_timeframes(k) for k in instrument_keys]


@dataclass(frozen=True)
class BatchReads:
    version: bytes  # of the config registry
    held: dict[str, dict[str, Any]]  # instrument key -> its latest tick before the batch (instruments that had one)
    timeframes: dict[str, list[bytes]]  # instrument key -> its members of `keys.bars_timeframes`
    listened: dict[str, int]  # Pub/Sub channel of a WebSocket topic -> listeners (empty: not read)


def read_batch(client: redis.Redis, instrument_keys: list[str]) -> BatchReads:
    topics = [fanout.group_channel(keys.topic_group(channel, k)) for k in instrument_keys for channel in WS_TOPICS]
    topics += [fanout.group_channel(group) for group in chain_groups(instrument_keys)]
    shards: dict[str, list[str]] = {}  # a batch is one underlying; on a cluster a script reads one shard
    for key in instrument_keys:
        shards.setdefault(keys.shard(key), []).append(key)
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.configs_version())
    for part in shards.values():
        redis_client.script(client, _READ_LUA)(keys=read_batch_keys(part), client=pipe)
    if topics and fanout.shares_data_server():
        pipe.pubsub_numsub(*topics)
    version, *replies = pipe.execute()
    held: dict[str, dict[str, Any]] = {}
    timeframes: dict[str, list[bytes]] = {}
    for part, (held_raw, timeframes_raw) in zip(shards.values(), replies, strict=False):
        held.update((k, orjson.loads(raw)) for k, raw in zip(part, held_raw, strict=True) if raw)
        timeframes.update(zip(part, timeframes_raw, strict=True))
    numsub = replies[len(shards):]
    return BatchReads(version=version or b"0", held=held, timeframes=timeframes,
                      listened=fanout.listeners(numsub[0]) if numsub else {})
