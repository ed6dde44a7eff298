"""A run's records in PostgreSQL (`signals.models.BacktestRecord`): written by one binary COPY per chunk, each record
kept as its compact JSON text in a ``bytea`` column.

Why not ``jsonb`` and psycopg's row-by-row COPY: a record of an option tick carries its Greeks (about 1.2 KB of
JSON), and the server spent more time parsing 60,000 such documents into ``jsonb`` than the replay spent computing
them, while nothing queries inside a record (the API filters on the typed columns and returns records whole). The
COPY stream is built here in one buffer (PostgreSQL's binary COPY format: per row a field count, then each field's
length and bytes), which costs a fraction of formatting each field through the driver's adapters.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

COPY_SQL = ("COPY signal_backtest_records (run_id, underlying, chunk, seq, instrument_key, time, config_id, record) "
            "FROM STDIN (FORMAT BINARY)")
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
# field count 8; run id (uuid, 16 bytes); underlying (length-prefixed text): the part shared by a chunk's rows
_ROW_START = struct.Struct("!hi16s")
# chunk (int4), seq (int4): each a length then the value
_TWO_INTS = struct.Struct("!iiii")
# time (timestamptz: microseconds since 2000-01-01 UTC), config id (int8)
_TIME_CONFIG = struct.Struct("!iqiq")
_LENGTH = struct.Struct("!i")


def encode(record: dict[str, Any]) -> bytes:
    """A record as stored: compact JSON, NaN and infinities as null (JSON has no NaN, as on the live sinks)."""
    return orjson.dumps(record)


def decode(stored: bytes | memoryview) -> dict[str, Any]:
    return orjson.loads(bytes(stored) if isinstance(stored, memoryview) else stored)


def _micros(timestamp: str, cache: dict[str, int]) -> int:
    """Microseconds since PostgreSQL's epoch of an ISO tick time (exact: no float in between)."""
    found = cache.get(timestamp)
    if found is None:
        found = cache[timestamp] = (datetime.fromisoformat(timestamp) - _PG_EPOCH) // _ONE_MICROSECOND
    return found


def copy_stream(run_id: uuid.UUID | str, underlying: str, chunk: int, records: Iterable[dict[str, Any]]) -> bytes:
    """The binary COPY data (`COPY_SQL`) of a chunk's records, ``seq`` numbering them in their order."""
    run_bytes = (run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))).bytes
    under = underlying.encode()
    start = _ROW_START.pack(8, 16, run_bytes) + _LENGTH.pack(len(under)) + under
    parts = [_HEADER]
    times: dict[str, int] = {}
    keys: dict[str, bytes] = {}
    for seq, record in enumerate(records):
        key = record["instrument_key"]
        key_field = keys.get(key)
        if key_field is None:
            encoded = key.encode()
            key_field = keys[key] = _LENGTH.pack(len(encoded)) + encoded
        document = encode(record)
        parts += (start, _TWO_INTS.pack(4, chunk, 4, seq), key_field,
                  _TIME_CONFIG.pack(8, _micros(record["timestamp"], times), 8, record["config_id"]),
                  _LENGTH.pack(len(document)), document)
    parts.append(_TRAILER)
    return b"".join(parts)

