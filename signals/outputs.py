"""The sinks of SPEC §3.5: Redis list, Redis output stream, PostgreSQL, WebSocket, and the latest-result cache.

Each config's ``output`` section says which sinks its records go to. Redis writes for a whole batch go in one
pipeline; the list gets its records oldest first so the newest ends up at the head.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from signals import fanout, keys, storage
from signals.computations.context import BatchContext


def build_record(tick: dict[str, Any], config_id: int, config_name: str, computations: list[dict[str, Any]]) -> dict:
    return {
        "instrument_key": tick["instrument_key"],
        "timestamp": tick["timestamp"],
        "config_id": config_id,
        "config_name": config_name,
        "tick_data": {k: v for k, v in tick.items() if k not in ("source_id", "symbol_key")},
        "computations": computations,
    }


def write(records: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]], ctx: BatchContext) -> None:
    """Write ``(record, tick, output settings)`` triples to every sink each one asks for.

    Records are encoded with orjson, which writes NaN and infinities as null: JSON has no NaN.
    """
    pipe = ctx.client.pipeline(transaction=False)
    list_items: dict[str, list[bytes]] = {}
    computed_rows: list[tuple[Any, ...]] = []
    newest: dict[str, tuple[bytes, int]] = {}  # cache key -> (record JSON, ttl); records are in tick-time order
    ws_events: list[tuple[str, dict[str, Any]]] = list(ctx.ws_events)
    for record, tick, output in sorted(records, key=lambda item: item[1]["ts"]):
        text = orjson.dumps(record)
        key = record["instrument_key"]
        if output.get("redis_list", True):
            list_items.setdefault(key, []).append(text)
        if output.get("redis_stream", True):
            pipe.xadd(keys.output_stream(tick["symbol_key"]), {"data": text, "instrument_key": key},
                      maxlen=settings.SIGNAL_OUTPUT_STREAM_MAXLEN, approximate=True)
        newest[keys.latest_result("computed", key, str(record["config_id"]))] = (
            text, int(output.get("cache_ttl_seconds", 300)))
        if output.get("store_to_database", True):
            for c in record["computations"]:
                if c["computation_type"] == "greeks":
                    continue  # typed Greeks history has its own table
                computed_rows.append((key, tick["ts"], tick["source_id"], record["config_id"], c["computation_type"],
                                      c["name"], c["results"], c["success"], c["error"], c["execution_time_ms"]))
        if output.get("websocket", True):
            ws_events.append((keys.topic_group("computed", key), {
                "type": "signal.event", "channel": "computed", "instrument_key": key, "data": record,
                "timestamp": record["timestamp"],
            }))
    for key, items in list_items.items():
        pipe.lpush(keys.output_list(key), *items)
        pipe.ltrim(keys.output_list(key), 0, settings.SIGNAL_OUTPUT_LIST_MAXLEN - 1)
    for cache_key, (text, ttl) in newest.items():
        pipe.set(cache_key, text, ex=ttl)
    for cache_key, text, ttl in ctx.cache_writes:
        pipe.set(cache_key, text, ex=ttl)
    shared = settings.CHANNEL_LAYER_URL == settings.REDIS_URL
    fanout.publish(ws_events, known=ctx.listened, pipe=pipe if shared else None)
    pipe.execute()
    if computed_rows or ctx.greeks_rows:
        with transaction.atomic():  # one commit for the batch's results
            storage.relax_durability()
            storage.store_computed(computed_rows)
            storage.store_greeks(ctx.greeks_rows)
