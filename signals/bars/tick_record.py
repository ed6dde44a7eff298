"""The notes of stored ticks for the bars, as one call of ``record_ticks.lua`` per batch (on the tick pipeline's
hot path: one script call for every instrument of the batch, queued on the pipeline's round trip).

Per instrument the script moves the high-water mark of tick time; a tick older than it is *late*: the generation
moves and the cached chunks whose covered part contains the tick are dropped. Then it updates the open bar of
every timeframe in use (`signals.bars.open_bar` for the hash). It returns the number of chunks dropped.

Layout of one instrument's part (the script's inner ``record(KEYS, ARGV)``)
    KEYS: hwm, generation, then per timeframe (open, upto, chunks).
    ARGV: track_ttl, open_ttl, cache_ttl, n ticks, m timeframes, n × (ts, ltp, volume|"", oi|"", exchange date,
    source id), then m × n × (bar start, chunk id). Ticks of one instant are ordered by source id (byte order), as
    everywhere else (`signals.bars.sql`).

The call for many instruments (per-call costs dominate batches of one tick per instrument, as an option chain's
are): KEYS are every instrument's keys in order; ARGV[1] is a MessagePack array of strings (one separate argument
each would cost the server about a microsecond apiece; the server decodes MessagePack in a third of the time of the
same JSON): the number of instruments, then per instrument its key count, its argument count and its arguments.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from feed import keys
from feed.redis_client import lua_source
from signals.bars.grid import Grid, exchange_day
from signals.bars.rows import lua_number

RECORD_LUA = lua_source(__file__, "record_ticks.lua")


def ticks_by_instrument(ticks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for tick in ticks:
        by_key.setdefault(tick["instrument_key"], []).append(tick)
    return by_key


def record_call(by_key: dict[str, list[dict[str, Any]]], grids: dict[str, list[Grid]], zone: ZoneInfo,
                track_ttl: int, open_ttl: int, cache_ttl: int) -> tuple[list[str], list[bytes]]:
    """KEYS and ARGV of ``record_ticks.lua`` for the ticks of each instrument (``by_key``, in any order) and the
    grids of its timeframes in use (``grids``); TTLs in seconds, exchange dates in ``zone``."""
    all_keys: list[str] = []
    all_args: list[Any] = [len(by_key)]
    for key, group in by_key.items():
        group = sorted(group, key=lambda t: (t["ts"], t.get("source_id", "")))
        key_grids = grids[key]
        args: list[Any] = [track_ttl, open_ttl, cache_ttl, len(group), len(key_grids)]
        for t in group:
            args += [repr(float(t["ts"])), repr(float(t["ltp"])), lua_number(t.get("volume")),
                     lua_number(t.get("oi")), exchange_day(t["ts"], zone), t.get("source_id", "")]
        tick_keys = [keys.bars_hwm(key), keys.bars_generation(key)]
        for grid in key_grids:
            tick_keys += [keys.bars_open(grid.name, key), keys.bars_upto(grid.name, key),
                          keys.bars_chunks(grid.name, key)]
            for t in group:
                args += [grid.bucket(t["ts"]), grid.chunk_of(t["ts"]).isoformat()]
        all_keys += tick_keys
        all_args += (len(tick_keys), len(args), *args)
    # as strings, exactly what the script would get as separate arguments
    return all_keys, [msgpack.packb([str(a) for a in all_args])]
