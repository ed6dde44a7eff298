"""The Redis cache of closed bars: one hash entry per instrument, timeframe and chunk (`signals.bars.grid`), written
by ``cache_chunks.lua``.

An entry (`feed.keys.bars_chunks`) is the JSON ``{"u": covered-until, "r": run, "b": [bars]}``: the bars made from
the chunk's ticks up to ``u`` (epoch seconds; the chunk's end once complete), ``r`` the running maximum of
cumulative volume at the last bar's end (the volume base of the bars computed after it), bars as
`signals.bars.rows.Bar`. `feed.keys.bars_upto` repeats ``u`` per chunk for the late-tick check of
``record_ticks.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from feed import keys
from feed.redis_client import lua_source
from signals.bars.rows import Bar

CACHE_LUA = lua_source(__file__, "cache_chunks.lua")


@dataclass
class ChunkEntry:
    upto: float
    run: float | None
    bars: list[Bar]

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkEntry:
        data = orjson.loads(raw)
        return cls(float(data["u"]), data.get("r"), data["b"])


def cache_call(instrument_key: str, timeframe: str, generation: str, cache_ttl: int, max_chunks: int,
               entries: list[tuple[date, ChunkEntry]]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``cache_chunks.lua`` storing ``entries`` (chunk, entry) unless the generation moved.

    KEYS: chunks, upto, generation, timeframes. ARGV: expected generation, cache_ttl (seconds), timeframe, max
    chunks kept (the oldest go first), then triples (chunk id, JSON entry, covered-until). Returns 0 when the
    generation is not the expected one (a late tick or an import came between the read and the write), else 1."""
    args: list[Any] = [generation, cache_ttl, timeframe, max_chunks]
    for chunk, entry in entries:
        args += [chunk.isoformat(), orjson.dumps({"u": entry.upto, "r": entry.run, "b": entry.bars}),
                 repr(entry.upto)]
    return ([keys.bars_chunks(timeframe, instrument_key), keys.bars_upto(timeframe, instrument_key),
             keys.bars_generation(instrument_key), keys.bars_timeframes(instrument_key)], args)
