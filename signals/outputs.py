"""The sinks of SPEC §3.5: Redis list, Redis output stream, PostgreSQL, WebSocket, and the latest-result cache.

Each config's ``output`` section says which sinks its records go to. A batch's Redis writes (stream entries, lists,
latest results, WebSocket publishes) go to the server as one Lua call: the per-command cost of a client pipeline
(packing and parsing a reply per stream entry) was a fifth of a batch's time. The list gets its records oldest
first so the newest ends up at the head. Database rows are returned to the caller, which stores them in the
batch's transaction after the Redis writes: live consumers do not wait for PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from signals import fanout, keys, redis_client, storage
from signals.computations.context import BatchContext

Record = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # (record, tick, output settings)

# KEYS: every key written. ARGV[1]: stream MAXLEN (approximate); ARGV[2]: last index an output list keeps; ARGV[3]:
# the index of the batch's once-key (0: none) and ARGV[4] its ttl seconds; ARGV[5]: the number of records, then the
# records (each sent once, whatever the number of sinks); then four sections, each a count followed by its items:
# XADD (key index, record index, instrument key), LPUSH (key index, n, then n record indices), SET (key index,
# record index, ttl seconds, guard key index or 0, tick time), PUBLISH (channel, message). A guarded SET is skipped
# when the guard (an instrument's latest-tick hash) holds a newer tick. Returns 0 without writing if the once-key
# existed.
_EMIT_LUA = """
local once = tonumber(ARGV[3])
if once > 0 and not redis.call('SET', KEYS[once], '1', 'NX', 'EX', ARGV[4]) then
  return 0
end
local records = tonumber(ARGV[5])
local i = 6 + records
local function record(at) return ARGV[5 + tonumber(ARGV[at])] end
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', KEYS[tonumber(ARGV[i])], 'MAXLEN', '~', ARGV[1], '*',
             'data', record(i + 1), 'instrument_key', ARGV[i + 2])
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local key, left = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1])
  i = i + 2
  while left > 0 do  -- LPUSH in slices: a call's arguments live on the bounded Lua stack
    local take = math.min(left, 500)
    local items = {}
    for j = 1, take do items[j] = record(i + j - 1) end
    redis.call('LPUSH', key, unpack(items))
    i = i + take
    left = left - take
  end
  redis.call('LTRIM', key, 0, ARGV[2])
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local guard = tonumber(ARGV[i + 3])
  local held = guard > 0 and redis.call('HGET', KEYS[guard], 'ts')
  if not held or tonumber(held) <= tonumber(ARGV[i + 4]) then
    redis.call('SET', KEYS[tonumber(ARGV[i])], record(i + 1), 'EX', ARGV[i + 2])
  end
  i = i + 5
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
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
    if rows or ctx.greeks_rows:
        with transaction.atomic():
            storage.relax_durability()
            store_results(rows, ctx)


def emit(records: list[Record], ctx: BatchContext, once: str | None = None) -> list[tuple[Any, ...]]:
    """Send the records to the Redis sinks (and WebSocket listeners) in one round trip; return the database rows
    (``signal_computed``) they ask for, for :func:`store_results`.

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
    sets = [(key_of(k), number, ttl, key_of(keys.latest_tick(instrument)), repr(ts))
            for k, (number, ttl, instrument, ts) in newest.items()]
    for k, text, ttl in ctx.cache_writes:
        texts.append(text.encode() if isinstance(text, str) else text)
        sets.append((key_of(k), len(texts), ttl, 0, 0))
    for k, text, ttl, instrument, ts in ctx.guarded_cache_writes:
        texts.append(text)
        sets.append((key_of(k), len(texts), ttl, key_of(keys.latest_tick(instrument)), repr(ts)))
    published: list[tuple[str, bytes]] = []
    if fanout.shares_data_server():
        published = fanout.targets(ws_events, known=ctx.listened)
    else:
        fanout.publish(ws_events, known=ctx.listened)
    if streamed or lists or sets or published:
        once_index = key_of(keys.emitted_batch(once)) if once else 0
        args: list[Any] = [settings.SIGNAL_OUTPUT_STREAM_MAXLEN, settings.SIGNAL_OUTPUT_LIST_MAXLEN - 1, once_index,
                           settings.SIGNAL_EMIT_ONCE_TTL_S, len(texts), *texts, len(streamed) // 3, *streamed,
                           len(lists)]
        for index, numbers in lists.items():
            args += (index, len(numbers), *numbers)
        args.append(len(sets))
        for item in sets:
            args += item
        args.append(len(published))
        for item in published:
            args += item
        redis_client.script(ctx.client, _EMIT_LUA)(keys=list(key_of.index), args=args)
    return computed_rows


def store_results(computed_rows: list[tuple[Any, ...]], ctx: BatchContext) -> None:
    """Inside the caller's transaction: the results rows (from :func:`emit`) and the batch's typed Greeks rows."""
    if not computed_rows and not ctx.greeks_rows:
        return
    storage.store_computed(computed_rows)
    storage.store_greeks(ctx.greeks_rows)
