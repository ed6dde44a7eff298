"""The sinks of docs/REFERENCE.md §3.5: Redis list, Redis output stream, PostgreSQL, WebSocket, and the latest-result cache.

Each config's ``output`` section says which sinks its records go to. A batch's Redis writes (stream entries, lists,
latest results, WebSocket publishes) go to the server as one Lua call: the per-command cost of a client pipeline
(packing and parsing a reply per stream entry) was a fifth of a batch's time. The list gets its records oldest
first so the newest ends up at the head. Database rows are returned to the caller, which stores them in the
batch's transaction after the Redis writes: live consumers do not wait for PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
from django.conf import settings

from feed import keys, redis_client
from signals import storage
from signals.delivery import fanout
from signals.pipeline.context import BatchContext

Record = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # (record, tick, output settings)

# KEYS: every key written. ARGV[1]: a MessagePack array of every number and name of the call (below); ARGV[2...]: the
# payloads (records, each sent once whatever the number of sinks; cached texts; WebSocket messages), which the array
# refers to by their index j (ARGV[1 + j]). The array: stream MAXLEN (approximate), last index an output list keeps,
# the index of the batch's once-key (0: none), its ttl seconds; then four sections, each a count followed by its
# items: XADD (key index, payload, instrument key), LPUSH (key index, n, then n payloads), SET (key index, payload,
# ttl seconds, guard key index or 0, tick time), PUBLISH (channel, payload). A guarded SET is skipped when the guard
# (an instrument's latest-tick hash) holds a newer tick. Returns 0 without writing if the once-key existed.
# The numbers travel as one argument because every separate argument costs the server about a microsecond to parse
# and hand to Lua: thousands per batch were most of the call's time. MessagePack, because the server decodes it in a
# third of the time it takes for the same array in JSON.
_EMIT_LUA = """
local c = cmsgpack.unpack(ARGV[1])
local once = c[3]
if once > 0 and not redis.call('SET', KEYS[once], '1', 'NX', 'EX', c[4]) then
  return 0
end
local function payload(j) return ARGV[1 + j] end
local i = 5
local n = c[i]; i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[c[i]], 'MAXLEN', '~', c[1], '*', 'data', payload(c[i + 1]), 'instrument_key', c[i + 2])
  i = i + 3
end
n = c[i]; i = i + 1
for _ = 1, n do
  local key, left = KEYS[c[i]], c[i + 1]
  i = i + 2
  while left > 0 do  -- LPUSH in slices: a call's arguments live on the bounded Lua stack
    local take = math.min(left, 500)
    local items = {}
    for j = 1, take do items[j] = payload(c[i + j - 1]) end
    redis.call('LPUSH', key, unpack(items))
    i = i + take
    left = left - take
  end
  redis.call('LTRIM', key, 0, c[2])
end
n = c[i]; i = i + 1
local guards = {}  -- guard key index -> its tick time (false: none); several writes share one instrument's guard
for _ = 1, n do
  local guard = c[i + 3]
  local held = false
  if guard > 0 then
    held = guards[guard]
    if held == nil then
      held = redis.call('HGET', KEYS[guard], 'ts')
      guards[guard] = held
    end
  end
  if not held or tonumber(held) <= c[i + 4] then
    redis.call('SET', KEYS[c[i]], payload(c[i + 1]), 'EX', c[i + 2])
  end
  i = i + 5
end
n = c[i]; i = i + 1
for _ = 1, n do
  redis.call('PUBLISH', c[i], payload(c[i + 1]))
  i = i + 2
end
return 1
"""


def build_record(tick: dict[str, Any], config_id: int, config_name: str, computations: list[dict[str, Any]]) -> dict:
    tick_data = dict(tick)
    tick_data.pop("source_id", None)
    tick_data.pop("symbol_key", None)
    return {
        "instrument_key": tick["instrument_key"],
        "timestamp": tick["timestamp"],
        "config_id": config_id,
        "config_name": config_name,
        "tick_data": tick_data,
        "computations": computations,
    }


class _Keys:
    """Numbers the keys of one script call (Lua's KEYS is 1-based)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.index) + 1
        return found


def write(records: list[Record], ctx: BatchContext) -> None:
    """Write ``(record, tick, output settings)`` triples to every sink each one asks for: Redis, then PostgreSQL."""
    rows = emit(records, ctx)
    storage.store(*result_rows(rows, ctx), durable=False)


def emit(records: list[Record], ctx: BatchContext, once: str | None = None) -> list[tuple[Any, ...]]:
    """Send the records to the Redis sinks (and WebSocket listeners) in one round trip; return the database rows
    (``signal_computed``) they ask for, for :func:`result_rows`.

    With ``once`` (a batch identity), the writes happen only the first time that identity is emitted (within
    SIGNAL_EMIT_ONCE_TTL_S): a batch redelivered after its worker died past this point adds no duplicate outputs.
    All of it runs as one script, so a batch's Redis outputs are written entirely or not at all.

    Records are encoded with orjson, which writes NaN and infinities as null: JSON has no NaN.
    """
    key_of = _Keys()
    texts: list[bytes] = []
    streamed: list[Any] = []
    lists: dict[int, list[int]] = {}
    newest: dict[str, tuple[int, int, str, float]] = {}  # cache key -> (record number, ttl, instrument, tick time)
    computed_rows: list[tuple[Any, ...]] = []
    ws_events: list[tuple[str, dict[str, Any]]] = list(ctx.ws_events)
    stream_keys: dict[str, int] = {}
    for record, tick, output in sorted(records, key=lambda item: item[1]["ts"]):
        texts.append(orjson.dumps(record))
        number = len(texts)
        key = record["instrument_key"]
        if output.get("redis_list", True):
            lists.setdefault(key_of(keys.output_list(key)), []).append(number)
        if output.get("redis_stream", True):
            symbol = tick["symbol_key"]
            index = stream_keys.get(symbol)
            if index is None:
                index = stream_keys[symbol] = key_of(keys.output_stream(symbol))
            streamed += (index, number, key)
        newest[keys.latest_result("computed", key, str(record["config_id"]))] = (  # records are in tick order
            number, int(output.get("cache_ttl_seconds", 300)), key, tick["ts"])
        if output.get("store_to_database", True):
            for c in record["computations"]:
                if c["computation_type"] == "greeks":
                    continue  # typed Greeks history has its own table
                computed_rows.append((key, tick["ts"], tick["source_id"], record["config_id"], c["computation_type"],
                                      c["name"], c["results"], c["success"], c["error"], c["execution_time_ms"]))
        if output.get("websocket", True):
            group = keys.topic_group("computed", key)
            if not fanout.nobody_listens(group, ctx.listened):
                ws_events.append((group, {
                    "type": "signal.event", "channel": "computed", "instrument_key": key, "data": record,
                    "timestamp": record["timestamp"],
                }))
    sets = [(key_of(k), number, ttl, key_of(keys.latest_tick(instrument)), ts)
            for k, (number, ttl, instrument, ts) in newest.items()]
    for k, text, ttl in ctx.cache_writes:
        texts.append(text.encode() if isinstance(text, str) else text)
        sets.append((key_of(k), len(texts), ttl, 0, 0))
    for k, text, ttl, instrument, ts in ctx.guarded_cache_writes:
        texts.append(text)
        sets.append((key_of(k), len(texts), ttl, key_of(keys.latest_tick(instrument)), ts))
    published: list[tuple[str, bytes]] = []
    if fanout.shares_data_server():
        published = fanout.targets(ws_events, known=ctx.listened)
    else:
        fanout.publish(ws_events, known=ctx.listened)
    if streamed or lists or sets or published:
        once_index = key_of(keys.emitted_batch(once)) if once else 0
        control: list[Any] = [settings.SIGNAL_OUTPUT_STREAM_MAXLEN, settings.SIGNAL_OUTPUT_LIST_MAXLEN - 1,
                              once_index, settings.SIGNAL_EMIT_ONCE_TTL_S, len(streamed) // 3, *streamed, len(lists)]
        for index, numbers in lists.items():
            control += (index, len(numbers), *numbers)
        control.append(len(sets))
        for item in sets:
            control += item
        control.append(len(published))
        for channel, message in published:
            texts.append(message)
            control += (channel, len(texts))
        redis_client.script(ctx.client, _EMIT_LUA)(keys=list(key_of.index), args=[msgpack.packb(control), *texts])
    return computed_rows


def result_rows(computed_rows: list[tuple[Any, ...]], ctx: BatchContext) -> list[storage.RowSet]:
    """The database rows of a batch's results, for `storage.store`: the ``signal_computed`` rows (from
    :func:`emit`) and the batch's typed Greeks rows."""
    return [storage.computed_rows(computed_rows), storage.greeks_rows(ctx.greeks_rows)]
