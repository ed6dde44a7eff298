"""What reached each sink, against what was sent: lost and duplicated per sink.

A record's identity is its ``record_id`` when it carries one, else (config id, instrument, the tick's time in
``tick_data``): the suite's ticks have distinct times per instrument, so either names one tick and one config.
A tick's identity in ``signal_ticks`` is its stream entry (``source_id``); a second row with the same instrument
and time is a duplicate.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
import redis

from faults.publisher import SentTick
from feed import keys
from feed.instruments import key_matches


@dataclass
class Count:
    sink: str
    expected: int
    lost: int
    duplicated: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass(frozen=True)
class Config:
    id: int
    pattern: str
    per_tick: bool = True  # one record per matching tick; else one per batch (technical indicators)


def every_tick_configs(db_url: str) -> list[Config]:
    """The enabled every-tick configs (the demo's: price, chain Greeks, indicators). One with technical indicators
    writes one record per batch, on its newest tick: how many depends on the batching, so its records are not
    expected one by one, but they take room in the capped output lists."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT id, instrument_key, jsonb_array_length(COALESCE(config->'technical_indicators', "
                            "'[]'::jsonb)) = 0 FROM configs_signalconfig WHERE enabled AND frequency = 'every_tick' "
                            "ORDER BY id").fetchall()
    return [Config(int(i), pattern, bool(per_tick)) for i, pattern, per_tick in rows]


def expected_records(ticks: list[SentTick], configs: list[Config]) -> set[tuple[int, str, int]]:
    return {(c.id, t.instrument_key, t.ts_ms) for t in ticks for c in configs
            if c.per_tick and key_matches(c.pattern, t.instrument_key)}


def record_identity(record: dict[str, Any]) -> Any:
    if record.get("record_id"):
        return record["record_id"]
    tick = record.get("tick_data") or {}
    return (int(record["config_id"]), record["instrument_key"], round(float(tick["ts"]) * 1000))


def _as_tuple(record: dict[str, Any]) -> tuple[int, str, int]:
    tick = record.get("tick_data") or {}
    return (int(record["config_id"]), record["instrument_key"], round(float(tick["ts"]) * 1000))


def _tally(sink: str, expected: set[tuple[int, str, int]], records: list[dict[str, Any]]) -> Count:
    """Lost: expected records never seen; duplicated: copies beyond the first (by identity, see the module)."""
    mine = [r for r in records if _as_tuple(r) in expected]
    by_tick = Counter(_as_tuple(r) for r in mine)
    by_identity = Counter(record_identity(r) for r in mine)
    duplicated = max(sum(n - 1 for n in by_tick.values()), sum(n - 1 for n in by_identity.values()))
    return Count(sink, len(expected), len(expected - by_tick.keys()), duplicated)


def symbol_of(instrument_key: str) -> str:
    """``EXCHANGE@SYMBOL``: the key of its output stream."""
    return "@".join(instrument_key.split("@")[:2])


def count_rows(db_url: str, ticks: list[SentTick]) -> Count:
    if not ticks:
        return Count("signal_ticks", 0, 0, 0)
    lo, hi = min(t.ts_ms for t in ticks) / 1000 - 1, max(t.ts_ms for t in ticks) / 1000 + 1
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT source_id, instrument_key, round(extract(epoch FROM time) * 1000)::int8 "
                            "FROM signal_ticks WHERE time >= to_timestamp(%s) AND time <= to_timestamp(%s)",
                            [lo, hi]).fetchall()
    wanted = {t.source_id for t in ticks}
    identities = {(t.instrument_key, t.ts_ms) for t in ticks}
    per_tick = Counter((key, ms) for _, key, ms in rows if (key, ms) in identities)
    stored = {source for source, _, _ in rows if source in wanted}
    return Count("signal_ticks", len(ticks), len(wanted - stored), sum(n - 1 for n in per_tick.values() if n > 1))


def stored_count(db_url: str, ticks: list[SentTick]) -> int:
    """How many of ``ticks`` are in ``signal_ticks`` (cheap: for the settle poll)."""
    if not ticks:
        return 0
    lo, hi = min(t.ts_ms for t in ticks) / 1000 - 1, max(t.ts_ms for t in ticks) / 1000 + 1
    with psycopg.connect(db_url, connect_timeout=2) as conn:
        (n,) = conn.execute("SELECT count(DISTINCT source_id) FROM signal_ticks WHERE time >= to_timestamp(%s) AND "
                            "time <= to_timestamp(%s) AND source_id = ANY(%s)",
                            [lo, hi, [t.source_id for t in ticks]]).fetchone()
    return int(n)


def newest_in_list(ticks: list[SentTick], configs: list[Config], cap: int) -> set[tuple[int, str, int]]:
    """The records an output list capped at ``cap`` must still hold: those of each instrument's newest ticks, as
    many as fit when every tick adds one record per matching config (a per-batch config counted as one per tick,
    its most)."""
    per_key: dict[str, list[int]] = {}
    for t in ticks:
        per_key.setdefault(t.instrument_key, []).append(t.ts_ms)
    kept = []
    for key, stamps in per_key.items():
        matching = [c for c in configs if key_matches(c.pattern, key)]
        if matching:
            kept += [SentTick("", "", key, ms) for ms in sorted(stamps)[-(cap // len(matching)):]]
    return expected_records(kept, configs)


def count_outputs(client: redis.Redis, ticks: list[SentTick], configs: list[Config], list_cap: int) -> list[Count]:
    """The output stream (``signal_output_stream:{symbol}``) and the output lists (``computed_data:{key}``, capped
    at ``list_cap`` records each: only the newest are expected there)."""
    expected = expected_records(ticks, configs)
    symbols = {symbol_of(t.instrument_key) for t in ticks}
    streamed = [json.loads(fields[b"data"]) for symbol in sorted(symbols)
                for _, fields in client.xrange(keys.output_stream(symbol))]
    listed = [json.loads(raw) for key in sorted({t.instrument_key for t in ticks})
              for raw in client.lrange(keys.output_list(key), 0, -1)]
    return [_tally("output stream", expected, streamed),
            _tally("output list", newest_in_list(ticks, configs, list_cap), listed)]


def count_latest(client: redis.Redis, ticks: list[SentTick], configs: list[Config]) -> Count:
    """Latest values: each instrument's latest tick and each config's latest record must be its newest tick."""
    newest: dict[str, int] = {}
    for t in ticks:
        newest[t.instrument_key] = max(newest.get(t.instrument_key, 0), t.ts_ms)
    wanted = [(keys.latest_tick(key), None, ms) for key, ms in newest.items()]
    wanted += [(keys.latest_result("computed", key, str(c.id)), c.id, ms) for key, ms in newest.items()
               for c in configs if c.per_tick and key_matches(c.pattern, key)]
    pipe = client.pipeline(transaction=False)
    for redis_key, config_id, _ in wanted:
        if config_id is None:
            pipe.hget(redis_key, "data")
        else:
            pipe.get(redis_key)
    lost = 0
    for (_, config_id, ms), raw in zip(wanted, pipe.execute(), strict=True):
        value = json.loads(raw) if raw else {}
        ts = (value.get("tick_data") or {}).get("ts") if config_id is not None else value.get("ts")
        lost += ts is None or round(float(ts) * 1000) != ms
    return Count("latest values", len(wanted), lost, 0)


def clear_outputs(client: redis.Redis, ticks: list[SentTick]) -> None:
    """Drop the output stream and lists once counted, so the next scenario counts only its own records and the
    lists stay under their cap."""
    names = {keys.output_list(t.instrument_key) for t in ticks}
    names |= {keys.output_stream(symbol_of(t.instrument_key)) for t in ticks}
    client.delete(*names)
