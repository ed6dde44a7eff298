"""TimescaleDB when the extension exists, plain PostgreSQL otherwise (docs/REFERENCE.md §3.5, §5; issue 5 storage).

With TimescaleDB (where creating the extension works, :func:`available`):

* ``signal_ticks``, ``signal_computed`` and ``signal_greeks`` become hypertables on ``time`` (their composite
  primary keys all contain ``time``), with compression (segmented by instrument) and retention policies;
* continuous aggregates ``signal_bars_1m``, ``_5m``, ``_15m`` (buckets aligned to the session open) and
  ``_1d`` (exchange days) over ``signal_ticks``, with real-time aggregation (``materialized_only = false``) and
  refresh policies. Their columns: ``instrument_key, bucket, open, high, low, close, vmax`` (the largest
  cumulative day volume seen in the bucket; per-bar volume is derived from it, see `signals.bars.sql`),
  ``oi`` (last non-null), ``oi_time``, ``first_time``, ``last_time``, ``ticks``. Continuous aggregates need
  TimescaleDB >= 2.15 (``time_bucket`` with an ``origin``); with an older version only the hypertables and
  policies are set up.

Without it the tables stay plain PostgreSQL tables, indexed by their primary keys (instrument, time, ...), and bars
come from ``signal_bars_1m_rollup``, a one-minute rollup table kept current by a trigger and a refresh task
(`signals.bars.rollup`, migration 0004), or from ``date_bin`` over raw ticks.

Everything here is SQL text generation plus :func:`apply` / :func:`remove` (used by migration 0002), so the text
is unit-tested on any machine and executed where the extension exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from django.conf import settings
from django.db import connections, transaction

from indicators.sql_buckets import sql_bucket_params
from indicators.timeframes import parse_timeframe
from signals.bars.rollup_triggers import drop_trigger_sql

log = logging.getLogger(__name__)

MIN_CAGG_VERSION = (2, 15)

#: A bucket's bar from its ticks, the same SQL on every path (the aggregates here, the rollup, and in substance the
#: raw-tick query of `signals.bars.sql`): ticks ordered by time, ticks of one instant by source id in byte order
#: (``COLLATE "C"``, whatever the database's collation; Python's ``str`` order, which the Redis open bar and the
#: tests' pandas reference follow). Ordered ``array_agg`` rather than TimescaleDB's ``first``/``last``: those take
#: one ordering value, and a row of (time, source id) breaks the parallel refresh of an aggregate ("input of
#: anonymous composite types is not implemented").
TICK_AGGREGATES = """(array_agg(ltp ORDER BY time, source_id COLLATE "C"))[1] AS open,
       max(ltp) AS high, min(ltp) AS low,
       (array_agg(ltp ORDER BY time DESC, source_id COLLATE "C" DESC))[1] AS close,
       max(volume)::float8 AS vmax,
       ((array_agg(oi ORDER BY time DESC, source_id COLLATE "C" DESC) FILTER (WHERE oi IS NOT NULL))[1])::float8 AS oi,
       max(time) FILTER (WHERE oi IS NOT NULL) AS oi_time,
       min(time) AS first_time, max(time) AS last_time, count(*) AS ticks"""

#: Hypertables: table -> (chunk interval, compression segment-by, compression order-by).
HYPERTABLES: dict[str, tuple[str, str, str]] = {
    "signal_ticks": ("1 day", "instrument_key", "time DESC, source_id"),
    "signal_computed": ("1 day", "instrument_key, config_id", "time DESC, source_id, computation_type, name"),
    "signal_greeks": ("1 day", "instrument_key, config_id", "time DESC, source_id, price_field"),
}

#: Continuous aggregates of signal_ticks: name -> timeframe.
CAGGS: dict[str, str] = {
    "signal_bars_1m": "1m",
    "signal_bars_5m": "5m",
    "signal_bars_15m": "15m",
    "signal_bars_1d": "1d",
}
#: Aggregates of earlier layouts, dropped by :func:`teardown_statements`: ``signal_bars_1h`` was refreshed and never
#: read (an hour bucket from 23:15 mixes two exchange days' cumulative volumes; 1h bars come from the 15m one).
RETIRED_CAGGS = ("signal_bars_1h",)

#: Refresh policy per aggregate: (start_offset, end_offset, schedule_interval). The window must span at least two
#: buckets; late ticks inside it are re-materialised by the next run, newer data is served by real-time aggregation.
CAGG_POLICIES: dict[str, tuple[str, str, str]] = {
    "signal_bars_1m": ("3 days", "1 minute", "1 minute"),
    "signal_bars_5m": ("3 days", "5 minutes", "5 minutes"),
    "signal_bars_15m": ("7 days", "15 minutes", "15 minutes"),
    "signal_bars_1d": ("30 days", "1 day", "1 hour"),
}


@dataclass(frozen=True)
class Policies:
    """Retention and compression ages (days) per hypertable, from the settings ``SIGNAL_TICKS_RETENTION_DAYS``,
    ``SIGNAL_COMPUTED_RETENTION_DAYS``, ``SIGNAL_GREEKS_RETENTION_DAYS`` and ``SIGNAL_COMPRESS_AFTER_DAYS``. The
    defaults are the service's storage plan: history kept five years, compressed after a day. 0 turns a policy off
    (kept forever, never compressed)."""

    ticks_retention_days: int = 1826
    computed_retention_days: int = 1826
    greeks_retention_days: int = 1826
    compress_after_days: int = 1

    @classmethod
    def from_settings(cls) -> Policies:
        return cls(
            ticks_retention_days=int(settings.SIGNAL_TICKS_RETENTION_DAYS),
            computed_retention_days=int(settings.SIGNAL_COMPUTED_RETENTION_DAYS),
            greeks_retention_days=int(settings.SIGNAL_GREEKS_RETENTION_DAYS),
            compress_after_days=int(settings.SIGNAL_COMPRESS_AFTER_DAYS),
        )

    def retention(self, table: str) -> int:
        return {"signal_ticks": self.ticks_retention_days, "signal_computed": self.computed_retention_days,
                "signal_greeks": self.greeks_retention_days}[table]

    @staticmethod
    def retention_setting(table: str) -> str:
        return {"signal_ticks": "SIGNAL_TICKS_RETENTION_DAYS", "signal_computed": "SIGNAL_COMPUTED_RETENTION_DAYS",
                "signal_greeks": "SIGNAL_GREEKS_RETENTION_DAYS"}[table]


# --- detection ----------------------------------------------------------------------------------------------------
def available(connection: Any) -> bool:
    """TimescaleDB works in ``connection``'s database: creating the extension succeeds, tried on a throwaway
    connection in a transaction that is rolled back. Being listed in ``pg_available_extensions`` is not enough:
    the extension files are shared by every cluster of a PostgreSQL version, and where the library is not in
    ``shared_preload_libraries`` ``CREATE EXTENSION`` fails with a FATAL error that ends the session (hence not
    on ``connection`` itself)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cursor.fetchone() is None:
            return False
    try:
        probe = connection.get_new_connection(connection.get_connection_params())
    except Exception as exc:  # noqa: BLE001 - no second connection: only the listing is known, which proves nothing
        log.warning("could not open a connection to try timescaledb (%s): taking it as not available", exc)
        return False
    try:
        with probe.cursor() as cursor:
            cursor.execute(create_extension_sql())
            cursor.execute("SELECT count(*) FROM timescaledb_information.hypertables")
        return True
    except Exception as exc:  # noqa: BLE001 - whatever stops it (not preloaded, no privilege): not usable here
        log.info("timescaledb is listed but does not work here: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return False
    finally:
        try:
            probe.rollback()
            probe.close()
        except Exception:  # noqa: BLE001, S110 - a session the server ended is closed already
            pass


def installed_version(cursor: Any) -> tuple[int, ...] | None:
    """The installed extension's version in this database, or None."""
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = cursor.fetchone()
    return parse_version(row[0]) if row else None


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def supports_caggs(version: tuple[int, ...] | None) -> bool:
    return version is not None and version[:2] >= MIN_CAGG_VERSION


def existing_aggregates(cursor: Any) -> set[str]:
    """Names of our continuous aggregates present in this database (empty on plain PostgreSQL)."""
    if installed_version(cursor) is None:
        return set()
    cursor.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates "
                   "WHERE view_name = ANY(%s)", [list(CAGGS)])
    return {row[0] for row in cursor.fetchall()}


# --- SQL generation -----------------------------------------------------------------------------------------------
def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_extension_sql() -> str:
    return "CREATE EXTENSION IF NOT EXISTS timescaledb"


def hypertable_sql(table: str, chunk_interval: str) -> str:
    """Convert an existing table (rows kept) into a hypertable partitioned on ``time``. No default ``time``
    index: the primary key (instrument, time, ...) serves the range scans, and every index costs inserts."""
    return (f"SELECT create_hypertable({_literal(table)}, 'time', chunk_time_interval => INTERVAL "
            f"{_literal(chunk_interval)}, create_default_indexes => false, migrate_data => true, "
            "if_not_exists => true)")


def compression_sql(table: str, segment_by: str, order_by: str, after_days: int) -> list[str]:
    return [
        f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = {_literal(segment_by)}, "
        f"timescaledb.compress_orderby = {_literal(order_by)})",
        f"SELECT add_compression_policy({_literal(table)}, INTERVAL {_literal(f'{after_days} days')}, "
        "if_not_exists => true)",
    ]


def retention_sql(table: str, days: int) -> str:
    return (f"SELECT add_retention_policy({_literal(table)}, INTERVAL {_literal(f'{days} days')}, "
            "if_not_exists => true)")


def cagg_bucket_sql(timeframe: str, session_open: str | dtime, tz: str, column: str = "time") -> str:
    """The ``time_bucket`` call of an aggregate: intraday sizes use the session open of 2000-01-03 as origin
    (so buckets line up with `indicators.bars.bucket_start`); ``1d`` buckets exchange days in ``tz``."""
    tf = parse_timeframe(timeframe)
    if tf.is_intraday:
        if not tf.divides_day:
            raise ValueError(f"{tf.name} does not divide a day: no fixed-origin aggregate for it")
        stride, origin = sql_bucket_params(tf, session_open, tz)
        return f"time_bucket(INTERVAL {_literal(stride)}, {column}, origin => TIMESTAMPTZ {_literal(origin)})"
    if tf.unit != "day":
        raise ValueError("aggregates exist for intraday sizes and 1d only")
    return f"time_bucket(INTERVAL '1 day', {column}, {_literal(tz)})"


def plain_bucket_sql(timeframe: str, session_open: str | dtime, tz: str, column: str = "time") -> str:
    """:func:`cagg_bucket_sql`'s intraday buckets with PostgreSQL's own ``date_bin`` (same stride, same origin, so
    the same buckets): what `signals.bars.rollup` aggregates with on plain PostgreSQL."""
    tf = parse_timeframe(timeframe)
    if not tf.is_intraday or not tf.divides_day:
        raise ValueError(f"{tf.name}: plain buckets exist for intraday sizes dividing a day only")
    stride, origin = sql_bucket_params(tf, session_open, tz)
    return f"date_bin(INTERVAL {_literal(stride)}, {column}, TIMESTAMPTZ {_literal(origin)})"


def cagg_select_sql(timeframe: str, session_open: str | dtime, tz: str) -> str:
    """The aggregate's query (also runnable on plain PostgreSQL given a ``time_bucket`` look-alike, which is how
    the tests check it where TimescaleDB is missing)."""
    bucket = cagg_bucket_sql(timeframe, session_open, tz)
    return (f"SELECT instrument_key, {bucket} AS bucket,\n       {TICK_AGGREGATES}\n"
            "FROM signal_ticks GROUP BY instrument_key, bucket")


def cagg_create_sql(name: str, timeframe: str, session_open: str | dtime, tz: str) -> str:
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} "
            "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
            f"{cagg_select_sql(timeframe, session_open, tz)} WITH NO DATA")


def cagg_policy_sql(name: str) -> str:
    start, end, every = CAGG_POLICIES[name]
    return (f"SELECT add_continuous_aggregate_policy({_literal(name)}, start_offset => INTERVAL {_literal(start)}, "
            f"end_offset => INTERVAL {_literal(end)}, schedule_interval => INTERVAL {_literal(every)}, "
            "if_not_exists => true)")


def cagg_refresh_sql(name: str, start: str | None = None, end: str | None = None) -> str:
    """``CALL refresh_continuous_aggregate`` (cannot run inside a transaction block)."""
    lo = f"TIMESTAMPTZ {_literal(start)}" if start else "NULL"
    hi = f"TIMESTAMPTZ {_literal(end)}" if end else "NULL"
    return f"CALL refresh_continuous_aggregate({_literal(name)}, {lo}, {hi})"


def setup_statements(policies: Policies, session_open: str | dtime, tz: str,
                     with_aggregates: bool = True) -> list[str]:
    """Every statement that turns the plain tables into the TimescaleDB layout, in order (idempotent)."""
    # the plain-PostgreSQL rollup's triggers go first: a hypertable refuses triggers with transition tables, and
    # the continuous aggregates replace the rollup (which then stays unread, see signals.bars.rollup.enabled)
    statements = [create_extension_sql(), *drop_trigger_sql()]
    for table, (chunk, segment_by, order_by) in HYPERTABLES.items():
        statements.append(hypertable_sql(table, chunk))
        alter, compress_policy = compression_sql(table, segment_by, order_by, policies.compress_after_days)
        statements.append(alter)  # compression stays enabled (chunks may be compressed); the policy is optional
        if policies.compress_after_days > 0:
            statements.append(compress_policy)
        if policies.retention(table) > 0:
            statements.append(retention_sql(table, policies.retention(table)))
    if with_aggregates:
        for name, timeframe in CAGGS.items():
            statements.append(cagg_create_sql(name, timeframe, session_open, tz))
            statements.append(cagg_policy_sql(name))
    return statements


def teardown_statements() -> list[str]:
    """Undo what can be undone: the aggregates and policies (hypertables stay hypertables; their data is intact)."""
    statements = [f"DROP MATERIALIZED VIEW IF EXISTS {name} CASCADE" for name in (*reversed(CAGGS), *RETIRED_CAGGS)]
    for table in HYPERTABLES:
        statements.append(f"SELECT remove_retention_policy({_literal(table)}, if_exists => true)")
        statements.append(f"SELECT remove_compression_policy({_literal(table)}, if_exists => true)")
    return statements


# --- execution (migration) ----------------------------------------------------------------------------------------
def apply(connection: Any, policies: Policies | None = None, session_open: str | None = None,
          tz: str | None = None) -> str:
    """Set up TimescaleDB on ``connection`` when the extension exists; returns ``"timescaledb"`` or ``"plain"``.

    Runs outside a transaction block (the migration is non-atomic) so the final refresh of existing data can run.
    A server that lists the extension but cannot load it (not in ``shared_preload_libraries``) stays plain.
    """
    policies = policies or Policies.from_settings()
    session_open = session_open or settings.SESSION_OPEN
    tz = tz or settings.EXCHANGE_TIMEZONE
    with connection.cursor() as cursor:
        if not available(connection):
            log.info("timescaledb does not work here: plain PostgreSQL tables and the one-minute bar rollup")
            return "plain"
        cursor.execute(create_extension_sql())
        version = installed_version(cursor)
        with_aggregates = supports_caggs(version)
        if not with_aggregates:
            log.warning("timescaledb %s is older than %s: hypertables and policies only, no continuous aggregates",
                        version, MIN_CAGG_VERSION)
        compressed = _compression_enabled(cursor)
        with transaction.atomic(using=connection.alias):
            for statement in setup_statements(policies, session_open, tz, with_aggregates)[1:]:
                table = statement.split()[2] if statement.startswith("ALTER TABLE") else None
                if table in compressed:  # settings cannot change once chunks are compressed: keep them
                    continue
                cursor.execute(statement)
        if with_aggregates:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM signal_ticks)")
            if cursor.fetchone()[0]:
                for name in CAGGS:  # existing rows: materialise them once (the policies only cover recent windows)
                    cursor.execute(cagg_refresh_sql(name))
    return "timescaledb"


def reapply(connection: Any) -> str:
    """Rebuild the layout of a database already on TimescaleDB: drop the aggregates (those of earlier layouts too)
    and the policies, then :func:`apply` (aggregates with the current definitions, materialised over the existing
    ticks; policies from the current settings). Plain PostgreSQL is left alone. Outside a transaction block."""
    with connection.cursor() as cursor:
        if installed_version(cursor) is None:
            return "plain"
    remove(connection)
    return apply(connection)


def _compression_enabled(cursor: Any) -> set[str]:
    cursor.execute("SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled")
    return {row[0] for row in cursor.fetchall()}


def remove(connection: Any) -> None:
    with connection.cursor() as cursor:
        if installed_version(cursor) is None:
            return
        for statement in teardown_statements():
            cursor.execute(statement)


def refresh_range(start: datetime, end: datetime, using: str = "default",
                  margin: timedelta = timedelta(days=2)) -> list[str]:
    """Re-materialise every aggregate over ``[start, end]`` widened by ``margin`` each side (a refresh only covers
    whole buckets, the largest being a day), e.g. after a history import into old chunks. Returns the aggregates
    refreshed; nothing on plain PostgreSQL. Must run outside a transaction block."""
    lo = (start - margin).isoformat()
    hi = (end + margin).isoformat()
    connection = connections[using]
    with connection.cursor() as cursor:
        names = existing_aggregates(cursor)
        for name in CAGGS:
            if name in names:
                cursor.execute(cagg_refresh_sql(name, lo, hi))
    return [n for n in CAGGS if n in names]
