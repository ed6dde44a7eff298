"""Idempotent bulk writes to PostgreSQL: a row that exists already is skipped, never doubled.

A batch's rows are first sent with binary COPY straight into their tables, in one transaction: COPY is the
cheapest way in, and nearly every batch is new. The composite primary keys still guard against doubles: if any
row exists already (Celery redelivered the batch after it was stored, or the bridge regrouped reclaimed entries),
the COPY fails, the transaction rolls back, and the same rows go again through per-connection temporary staging
tables with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, which skips the existing ones. (Binding the rows as
array parameters instead costs more in client-side quoting than the whole rest of the batch; the staging path
costs about twice the direct COPY, which is why it is only the fallback.)
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb

from greeks import GREEK_NAMES

TICK_COLUMNS = ("instrument_key", "time", "source_id", "ltp", "open", "high", "low", "close", "volume", "oi",
                "bid", "ask", "ltq")
TICK_TYPES = ("text", "timestamptz", "text", "float8", "float8", "float8", "float8", "float8", "int8", "int8",
              "float8", "float8", "int8")
COMPUTED_COLUMNS = ("instrument_key", "time", "source_id", "config_id", "computation_type", "name", "results",
                    "success", "error", "execution_time_ms")
COMPUTED_TYPES = ("text", "timestamptz", "text", "int8", "text", "text", "jsonb", "bool", "text", "float8")
GREEKS_COLUMNS = ("instrument_key", "time", "source_id", "config_id", "price_field", "option_price",
                  "underlying_price", "time_to_expiry", "sigma", *GREEK_NAMES, "sigma_source", "status")
GREEKS_TYPES = ("text", "timestamptz", "text", "int8", "text", *("float8",) * (4 + len(GREEK_NAMES)), "text",
                "text")


@dataclass(frozen=True)
class RowSet:
    """Rows for one table, each a tuple in ``columns`` order whose values match ``types`` (binary COPY is strict:
    int for int8, float or int for float8, datetime for timestamptz, `Jsonb` for jsonb, None for NULL)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]


_staged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # per connection: stage tables made


def store(*sets: RowSet, durable: bool = True) -> list[int]:
    """Write every row set in one transaction (joining the caller's, as a savepoint, if there is one); returns the
    rows added per set. ``durable=False`` commits without waiting for the WAL flush: only for derived rows, which
    can be recomputed from the raw ticks."""
    if not any(s.rows for s in sets):
        return [0] * len(sets)
    try:
        with transaction.atomic():
            if not durable:
                relax_durability()
            return [_copy(s) if s.rows else 0 for s in sets]
    except IntegrityError:
        pass  # some row exists already: the whole attempt rolled back; skip the existing rows this time
    with transaction.atomic():
        if not durable:
            relax_durability()
        return [_insert_new(s) if s.rows else 0 for s in sets]


def _copy(rows: RowSet) -> int:
    with connection.cursor() as cursor:
        _copy_into(cursor, rows.table, rows)
    return len(rows.rows)


def _copy_into(cursor: Any, table: str, rows: RowSet) -> None:
    # wrapped like Django's own cursors: a failure is raised as django.db's error (IntegrityError for a row that
    # exists) and marks a broken connection for replacement before the retry (close_old_connections)
    with connection.wrap_database_errors, \
            cursor.cursor.copy(f"COPY {table} ({', '.join(rows.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(rows.types))
        for row in rows.rows:
            copy.write_row(row)


def _insert_new(rows: RowSet) -> int:
    stage = f"_stage_{rows.table}"
    cols = ", ".join(rows.columns)
    with connection.cursor() as cursor:
        _create_stage(cursor, stage, rows.columns, rows.types)
        _copy_into(cursor, stage, rows)
        cursor.execute(f"INSERT INTO {rows.table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")
        added = cursor.rowcount
        # ON COMMIT DELETE ROWS empties it at the commit; inside a caller's transaction that may come after
        # another batch of rows has been staged here, so empty it now
        cursor.execute(f"DELETE FROM {stage}")
        return added


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


def relax_durability() -> None:
    """Inside a transaction: commit without waiting for the WAL flush. Only for derived rows (results), which can be
    recomputed from the raw ticks; the raw ticks themselves are always committed durably."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


# --- row sets of the three tables -----------------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def tick_rows(ticks: Iterable[dict[str, Any]]) -> RowSet:
    rows = [(t["instrument_key"], to_datetime(t["ts"]), t["source_id"], t["ltp"], t["open"], t["high"], t["low"],
             t["close"], _int(t["volume"]), _int(t["oi"]), t["bid"], t["ask"], _int(t["ltq"])) for t in ticks]
    return RowSet("signal_ticks", TICK_COLUMNS, TICK_TYPES, rows)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)  # NaN and infinities as null: JSON has no NaN


def computed_rows(rows: list[tuple[Any, ...]]) -> RowSet:
    """Rows of (instrument_key, ts, source_id, config_id, computation_type, name, results, success, error, ms)."""
    prepared = [(r[0], to_datetime(r[1]), r[2], int(r[3]), r[4], r[5], Jsonb(r[6], dumps=_json), r[7], r[8] or "",
                 r[9]) for r in rows]
    return RowSet("signal_computed", COMPUTED_COLUMNS, COMPUTED_TYPES, prepared)


def greeks_rows(rows: list[dict[str, Any]]) -> RowSet:
    prepared = [(r["instrument_key"], to_datetime(r["ts"]), r["source_id"], int(r["config_id"]), r["price_field"],
                 *(r.get(c) for c in GREEKS_COLUMNS[5:])) for r in rows]
    return RowSet("signal_greeks", GREEKS_COLUMNS, GREEKS_TYPES, prepared)


def store_ticks(ticks: Iterable[dict[str, Any]]) -> int:
    """Store raw ticks durably; returns how many were new."""
    return sum(store(tick_rows(ticks)))


def store_greeks(rows: list[dict[str, Any]]) -> int:
    return sum(store(greeks_rows(rows), durable=False))


# --- reads of stored ticks, where Redis no longer holds them --------------------------------------------------------
def ticks_before(times: dict[str, float], inclusive: bool = False) -> dict[str, dict[str, Any]]:
    """Instrument key -> its newest stored tick before tick time ``times[key]`` (at or before, with ``inclusive``),
    as a tick dict (``ts`` epoch seconds, ``timestamp`` ISO-8601, the quote fields); instruments with none are
    left out. Ties of time go to the greatest ``source_id``, the order every bar path uses."""
    if not times:
        return {}
    op = "<=" if inclusive else "<"
    names = ", ".join(f"t.{c}" for c in TICK_COLUMNS[2:])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT k.key, t.time, {names} FROM unnest(%s::text[], %s::timestamptz[]) AS k(key, at) "
            f"CROSS JOIN LATERAL (SELECT * FROM signal_ticks t WHERE t.instrument_key = k.key AND t.time {op} k.at "
            "ORDER BY t.time DESC, t.source_id COLLATE \"C\" DESC LIMIT 1) t",
            [list(times), [to_datetime(ts) for ts in times.values()]])
        rows = cursor.fetchall()
    found = {}
    for key, when, *values in rows:
        tick = dict(zip(TICK_COLUMNS[2:], values, strict=True))
        tick.update(instrument_key=key, ts=when.timestamp(), timestamp=when.astimezone(UTC).isoformat(),
                    symbol_key="@".join(key.split("@")[:2]))
        found[key] = tick
    return found
