"""Idempotent bulk writes to PostgreSQL, conflicts ignored.

Rows are streamed with COPY into a per-connection temporary staging table and moved with one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in the same transaction: COPY is the cheapest way in, and the
composite primary keys make a re-delivered batch a no-op. (Binding the rows as array parameters instead costs
more in client-side quoting than the whole rest of the batch.)
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, transaction

TICK_COLUMNS = ("instrument_key", "time", "source_id", "ltp", "open", "high", "low", "close", "volume", "oi",
                "bid", "ask", "ltq")
TICK_TYPES = ("text", "timestamptz", "text", "float8", "float8", "float8", "float8", "float8", "int8", "int8",
              "float8", "float8", "int8")
COMPUTED_COLUMNS = ("instrument_key", "time", "source_id", "config_id", "computation_type", "name", "results",
                    "success", "error", "execution_time_ms")
COMPUTED_TYPES = ("text", "timestamptz", "text", "int8", "text", "text", "jsonb", "bool", "text", "float8")
GREEKS_COLUMNS = ("instrument_key", "time", "source_id", "config_id", "price_field", "option_price",
                  "underlying_price", "time_to_expiry", "iv", "sigma", "delta", "gamma", "theta", "vega", "rho",
                  "sigma_source", "status")
GREEKS_TYPES = ("text", "timestamptz", "text", "int8", "text") + ("float8",) * 10 + ("text", "text")


_staged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # per connection: stage tables made


def _insert(table: str, columns: tuple[str, ...], types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    stage = f"_stage_{table}"
    cols = ", ".join(columns)
    # savepoint=False: inside a caller's transaction (a batch stores its ticks and results together) this joins
    # it instead of paying for a savepoint; on its own it is the transaction the staging table is emptied with.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        raw = cursor.cursor
        _create_stage(cursor, stage, columns, types)
        # wrapped like Django's own cursors: a failure is raised as django.db's error and marks the connection
        # for replacement before the retry (close_old_connections)
        with connection.wrap_database_errors, raw.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")
        return cursor.rowcount


def _create_stage(cursor: Any, stage: str, columns: tuple[str, ...], types: tuple[str, ...]) -> None:
    """Create the session's staging table once per connection. It counts as made only when its transaction
    commits: a rolled-back transaction rolls back the table's creation too."""
    made = _staged.setdefault(connection.connection, set())
    if stage in made:
        return
    definition = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({definition}) ON COMMIT DELETE ROWS")
    transaction.on_commit(lambda: made.add(stage))


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def store_ticks(ticks: Iterable[dict[str, Any]]) -> int:
    rows = [(t["instrument_key"], to_datetime(t["ts"]), t["source_id"], t["ltp"], t["open"], t["high"], t["low"],
             t["close"], t["volume"], t["oi"], t["bid"], t["ask"], t["ltq"]) for t in ticks]
    return _insert("signal_ticks", TICK_COLUMNS, TICK_TYPES, rows)


def relax_durability() -> None:
    """Inside a transaction: commit without waiting for the WAL flush. Only for derived rows (results), which can be
    recomputed from the raw ticks; the raw ticks themselves are always committed durably."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def store_computed(rows: list[tuple[Any, ...]]) -> int:
    """Rows of (instrument_key, ts, source_id, config_id, computation_type, name, results, success, error, ms)."""
    prepared = [(r[0], to_datetime(r[1]), r[2], r[3], r[4], r[5], orjson.dumps(r[6]).decode(), r[7], r[8] or "", r[9])
                for r in rows]
    return _insert("signal_computed", COMPUTED_COLUMNS, COMPUTED_TYPES, prepared)


def store_greeks(rows: list[dict[str, Any]]) -> int:
    prepared = [tuple(to_datetime(r["ts"]) if c == "time" else r.get(c) for c in GREEKS_COLUMNS) for r in rows]
    return _insert("signal_greeks", GREEKS_COLUMNS, GREEKS_TYPES, prepared)
