"""The sinks of docs/REFERENCE.md §3.5: Redis list, Redis output stream, PostgreSQL, WebSocket, and the latest-result cache.

Each config's ``output`` section says which sinks its records go to. A batch's Redis writes (stream entries, lists,
latest results, WebSocket publishes) go to the server as one Lua call: the per-command cost of a client pipeline
(packing and parsing a reply per stream entry) was a fifth of a batch's time. The list gets its records oldest
first so the newest ends up at the head. Database rows are returned to the caller, which stores them in the
batch's transaction after the Redis writes: live consumers do not wait for PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from django.conf import settings

from feed import keys, redis_client
from signals import storage
from signals.delivery import fanout
from signals.delivery.emit_script import EmitCall
from signals.delivery.events import signal_event

Record = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # (record, tick, output settings)
ComputedRow = tuple[Any, ...]  # a ``signal_computed`` row, in `storage.computed_rows` column order
CacheWrite = tuple[str, str | bytes, int]  # (key, JSON, ttl seconds)
# (key, JSON, ttl seconds, instrument key, tick time): written only while the instrument's latest-tick hash holds
# no newer tick (checked in Redis, so a concurrent or re-delivered older batch cannot move it back)
GuardedCacheWrite = tuple[str, bytes, int, str, float]


@dataclass
class Outbox:
    """What a batch sends besides its records, queued by its computations: `emit` writes it in the records' script
    call, `result_rows` adds its database rows to theirs."""

    cache_writes: list[CacheWrite] = field(default_factory=list)  # latest values for the realtime API
    guarded_cache_writes: list[GuardedCacheWrite] = field(default_factory=list)  # latest values of one instrument
    events: list[fanout.Event] = field(default_factory=list)  # WebSocket events besides the records' own
    greeks_rows: list[dict[str, Any]] = field(default_factory=list)  # typed Greeks history rows to store
    # subscriber counts of WebSocket topics read up front (Pub/Sub channel -> count): no event is built for a topic
    # nobody listens to
    listened: dict[str, int] = field(default_factory=dict)
    # a backtest's outbox: nobody listens and no database row is stored (its records go to the run's own table),
    # so computations build no event and no typed row for it
    offline: bool = False


def build_record(tick: dict[str, Any], config_id: int, config_name: str, computations: list[dict[str, Any]],
                 run: str = "") -> dict:
    """One config's results for one tick. ``record_id`` is stable across redeliveries: the config id and the tick's
    source (``stream/entry-id``), preceded for a time-driven run by its schedule period (``run``)."""
    tick_data = dict(tick)
    tick_data.pop("source_id", None)
    tick_data.pop("symbol_key", None)
    return {
        "record_id": f"{config_id}:{run + ':' if run else ''}{tick['source_id']}",
        "instrument_key": tick["instrument_key"],
        "timestamp": tick["timestamp"],
        "config_id": config_id,
        "config_name": config_name,
        "tick_data": tick_data,
        "computations": computations,
    }


def write(records: list[Record], client: redis.Redis, outbox: Outbox, once: str | None = None) -> None:
    """Write ``(record, tick, output settings)`` triples to every sink each one asks for: Redis, then PostgreSQL."""
    rows = emit(records, client, outbox, once=once)
    storage.store(*result_rows(rows, outbox), durable=False)


def emit(records: list[Record], client: redis.Redis, outbox: Outbox, once: str | None = None,
         group: str = "") -> list[ComputedRow]:
    """Send the records and the outbox to the Redis sinks (and WebSocket listeners) in one round trip; return the
    database rows (``signal_computed``) the records ask for, for :func:`result_rows`.

    A record's stream entry, list item and ``computed`` event are written once per tick entry (the event only where
    the channel layer shares the data server): not when consumer ``group`` has acknowledged the entry already, nor
    when an earlier delivery of it (its batch redelivered, or the entry reclaimed and regrouped into another batch)
    wrote them and its batch has not finished yet. With ``once`` (a
    time-driven run's period), nothing is written if that run was emitted before (within SIGNAL_EMIT_ONCE_TTL_S).
    All of it runs as one script, so a batch's Redis outputs are written entirely or not at all.

    Records are encoded with orjson, which writes NaN and infinities as null: JSON has no NaN. On a Redis Cluster,
    one script call per underlying (each on its own slot), each all or nothing.
    """
    if not redis_client.is_cluster():
        return _emit(records, client, outbox, once, EmitCall(group=group))
    rows: list[ComputedRow] = []
    for tag, (part, part_outbox) in _by_shard(records, outbox).items():
        rows += _emit(part, client, part_outbox, once, EmitCall(group=group, tag=tag))
    return rows


def _by_shard(records: list[Record], outbox: Outbox) -> dict[str, tuple[list[Record], Outbox]]:
    """The records and the outbox's cache writes split by the shard of their keys; the events (published apart
    from the script on a cluster) go with the first part."""
    parts: dict[str, tuple[list[Record], Outbox]] = {}

    def part(tag: str) -> tuple[list[Record], Outbox]:
        found = parts.get(tag)
        if found is None:
            found = parts[tag] = ([], Outbox(events=[] if parts else outbox.events, listened=outbox.listened))
        return found

    for item in records:
        part(keys.shard(item[0]["instrument_key"]))[0].append(item)
    for write in outbox.cache_writes:
        part(keys.key_shard(write[0]))[1].cache_writes.append(write)
    for guarded in outbox.guarded_cache_writes:
        part(keys.shard(guarded[3]))[1].guarded_cache_writes.append(guarded)
    if not parts and outbox.events:
        part("")
    return parts


def _emit(records: list[Record], client: redis.Redis, outbox: Outbox, once: str | None,
          call: EmitCall) -> list[ComputedRow]:
    events = list(outbox.events)
    event_entries: dict[int, int] = {}  # position in events -> tick entry, for the records' own events
    computed_rows = _queue_records(call, records, outbox.listened, events, event_entries)
    for k, text, ttl in outbox.cache_writes:
        call.sets.append((call.key(k), call.payload(text.encode() if isinstance(text, str) else text), ttl, 0, 0))
    for k, text, ttl, instrument, ts in outbox.guarded_cache_writes:
        call.sets.append((call.key(k), call.payload(text), ttl, call.key(keys.latest_tick(instrument)), ts))
    if fanout.shares_data_server():
        for i, channel, message in fanout.targets(events, known=outbox.listened):
            call.publish(channel, message, event_entries.get(i, 0))
    else:
        fanout.publish(events, known=outbox.listened)
    if call.writes():
        call.run(client, settings.SIGNAL_OUTPUT_STREAM_MAXLEN, settings.SIGNAL_OUTPUT_LIST_MAXLEN,
                 keys.emitted_once(once, call.tag) if once else None, settings.SIGNAL_EMIT_ONCE_TTL_S)
    return computed_rows


def _queue_records(call: EmitCall, records: list[Record], listened: dict[str, int], events: list[fanout.Event],
                   event_entries: dict[int, int]) -> list[ComputedRow]:
    """Queue each record on its sinks (list, stream, latest-result cache, ``computed`` WebSocket topic); returns its
    database rows."""
    streamed, lists = call.streamed, call.lists
    newest: dict[str, tuple[int, int, str, float]] = {}  # cache key -> (record number, ttl, instrument, tick time)
    computed_rows: list[ComputedRow] = []
    stream_keys: dict[str, int] = {}
    for record, tick, output in sorted(records, key=lambda item: item[1]["ts"]):
        number = call.payload(orjson.dumps(record))
        entry = call.entry(tick["source_id"]) if call.group else 0  # time-driven runs: one once-key per period
        key = record["instrument_key"]
        if output.get("redis_list", True):
            lists.setdefault(call.key(keys.output_list(key)), []).extend((number, entry))
        if output.get("redis_stream", True):
            symbol = tick["symbol_key"]
            index = stream_keys.get(symbol)
            if index is None:
                index = stream_keys[symbol] = call.key(keys.output_stream(symbol))
            streamed += (index, number, key, entry)
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
            if not fanout.nobody_listens(group, listened):
                event_entries[len(events)] = entry
                events.append((group, signal_event("computed", key, record, record["timestamp"])))
    call.sets.extend((call.key(k), number, ttl, call.key(keys.latest_tick(instrument)), ts)
                     for k, (number, ttl, instrument, ts) in newest.items())
    return computed_rows


def result_rows(computed_rows: list[ComputedRow], outbox: Outbox) -> list[storage.RowSet]:
    """The database rows of a batch's results, for `storage.store`: the ``signal_computed`` rows (from
    :func:`emit`) and the batch's typed Greeks rows."""
    return [storage.computed_rows(computed_rows), storage.greeks_rows(outbox.greeks_rows)]
