"""Retention and compression as settings, on TimescaleDB and on plain PostgreSQL (issue 16).

The settings (`timescale.Policies`: ``SIGNAL_*_RETENTION_DAYS``, ``SIGNAL_COMPRESS_AFTER_DAYS``) say how long rows
of ``signal_ticks``, ``signal_computed`` and ``signal_greeks`` are kept and when TimescaleDB compresses them. The
beat task ``signals.enforce_retention`` (every ``SIGNAL_RETENTION_INTERVAL_S``) runs :func:`enforce`:

* on TimescaleDB, :func:`sync_policies` replaces every retention or compression policy whose age differs from the
  settings (a policy made by an earlier value, or by hand), adds missing ones and removes those turned off (0);
  TimescaleDB's own jobs then drop and compress chunks. Their job status is not looked at: on PostgreSQL 15.20
  the jobs do their work but report ``Failed``;
* on plain PostgreSQL, :func:`delete_expired` deletes rows older than the cut-off, per instrument and a day of
  rows per statement, each statement its own transaction (the primary key, instrument first, finds them; no
  statement holds locks or builds a backlog for long). The one-minute rollup's triggers record the deleted ranges,
  so the rollup forgets those bars too.
"""

from __future__ import annotations

import logging
import time as _time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from signals.bars import timescale

log = logging.getLogger(__name__)

TABLES = tuple(timescale.HYPERTABLES)
#: Rows of one instrument deleted by one statement at most: this much of tick time.
STEP = timedelta(days=1)


def cutoff(days: int, now: datetime | None = None) -> datetime | None:
    """Rows before this instant are past a retention of ``days`` (None: kept forever)."""
    if days <= 0:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=days)


def enforce(policies: timescale.Policies | None = None, now: datetime | None = None,
            budget_s: float = 300.0) -> dict[str, int]:
    """Apply the retention settings once (see the module docstring). Returns, per table, the rows deleted (plain
    PostgreSQL) or the policies changed (TimescaleDB, under ``"policies"``)."""
    policies = policies or timescale.Policies.from_settings()
    with connection.cursor() as cursor:
        hypertables = timescale.installed_version(cursor) is not None and _hypertables(cursor)
    if hypertables:
        return {"policies": len(sync_policies(policies))}
    deadline = _time.monotonic() + budget_s
    return {table: delete_expired(table, cutoff(policies.retention(table), now), deadline) for table in TABLES}


def _hypertables(cursor: Any) -> bool:
    cursor.execute("SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = ANY(%s)",
                   [list(TABLES)])
    return cursor.fetchone()[0] == len(TABLES)


def _instruments(table: str) -> list[str]:
    """The table's distinct instruments, by skipping along its primary key (a loose index scan)."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
WITH RECURSIVE k AS (
  (SELECT instrument_key FROM {table} ORDER BY instrument_key LIMIT 1)
  UNION ALL
  SELECT (SELECT instrument_key FROM {table} WHERE instrument_key > k.instrument_key ORDER BY instrument_key LIMIT 1)
  FROM k WHERE k.instrument_key IS NOT NULL
) SELECT instrument_key FROM k WHERE instrument_key IS NOT NULL""")
        return [row[0] for row in cursor.fetchall()]


def delete_expired(table: str, before: datetime | None, deadline: float) -> int:
    """Delete ``table``'s rows older than ``before``, per instrument, at most :data:`STEP` of its oldest rows per
    statement (autocommit: each its own transaction), until none is left or ``deadline`` (monotonic) passes; the
    next run goes on from there. Returns the rows deleted."""
    if before is None or table not in TABLES:
        return 0
    deleted = 0
    for key in _instruments(table):
        while _time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE instrument_key = %(key)s AND time < LEAST(%(before)s, "
                               f"(SELECT min(time) FROM {table} WHERE instrument_key = %(key)s) + %(step)s)",
                               {"key": key, "before": before, "step": STEP})
                if cursor.rowcount <= 0:
                    break
                deleted += cursor.rowcount
    if deleted:
        log.info("retention: %d rows of %s older than %s deleted", deleted, table, before.isoformat())
    return deleted


def _policy_ages(cursor: Any) -> dict[tuple[str, str], int | None]:
    """(table, 'retention' | 'compression') -> the policy's age in whole days (None: not whole days)."""
    cursor.execute("""
SELECT hypertable_name, proc_name,
       extract(epoch FROM coalesce(config->>'drop_after', config->>'compress_after')::interval) / 86400
FROM timescaledb_information.jobs
WHERE hypertable_name = ANY(%s) AND proc_name IN ('policy_retention', 'policy_compression')""", [list(TABLES)])
    kinds = {"policy_retention": "retention", "policy_compression": "compression"}
    return {(table, kinds[proc]): (int(days) if days is not None and float(days).is_integer() else None)
            for table, proc, days in cursor.fetchall()}


def sync_policies(policies: timescale.Policies) -> list[str]:
    """TimescaleDB: make every table's retention and compression policy the settings' (replace, add or remove).
    Returns the statements run."""
    ran: list[str] = []
    with connection.cursor() as cursor:
        current = _policy_ages(cursor)
        for table, (_, segment_by, order_by) in timescale.HYPERTABLES.items():
            wanted = {"retention": policies.retention(table), "compression": policies.compress_after_days}
            for kind, days in wanted.items():
                have = current.get((table, kind), 0 if days <= 0 else -1)
                if have == (days if days > 0 else 0):
                    continue
                statements = [f"SELECT remove_{kind}_policy('{table}', if_exists => true)"]
                if days > 0 and kind == "retention":
                    statements.append(timescale.retention_sql(table, days))
                elif days > 0:
                    statements.append(timescale.compression_sql(table, segment_by, order_by, days)[1])
                for statement in statements:
                    cursor.execute(statement)
                ran += statements
    if ran:
        log.info("retention: TimescaleDB policies brought in line with the settings: %s", "; ".join(ran))
    return ran
