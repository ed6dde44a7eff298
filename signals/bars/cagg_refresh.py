"""Continuous aggregates brought up to date after writes below their watermark (TimescaleDB; issue 16).

Real-time aggregation (``materialized_only = false``) adds raw ticks *above* an aggregate's watermark to what it
has materialised; ticks written below it (a history import, a late tick older than the refresh policy's window)
stay invisible until the aggregate is refreshed over their range. ``CALL refresh_continuous_aggregate`` cannot run
inside a transaction block, and an import may well run inside one (a caller's ``atomic()``, a test's), so:

* :func:`note` records the written tick ranges, per instrument, in ``signal_bars_rollup_pending`` (the same table
  the plain-PostgreSQL rollup's triggers fill; on TimescaleDB those triggers do not exist), in the writer's
  transaction: whoever sees the ticks sees the range;
* :func:`refresh_pending` refreshes the aggregates over the pending ranges and deletes them. It runs right away
  when the writer is not in a transaction, after its commit when it is, and from the beat task that refreshes the
  rollup on plain PostgreSQL (so a range whose writer died before refreshing is picked up within seconds);
* :func:`is_current` tells the bars service whether an instrument's aggregates cover ``[lo, hi)``; while a range
  is pending there, it reads raw ticks instead (same bars, computed the slow way).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import connection, transaction

from signals.bars import timescale
from signals.bars.rollup_triggers import PENDING

log = logging.getLogger(__name__)


def in_use() -> bool:
    """Continuous aggregates exist in this database (re-checked on every call: imports are rare)."""
    with connection.cursor() as cursor:
        return bool(timescale.existing_aggregates(cursor))


def note(ranges: dict[str, tuple[float, float]]) -> bool:
    """Record tick ranges (instrument -> (first, last) epoch seconds) just written below the aggregates' watermark
    and refresh them now or after the current transaction commits. Returns False on plain PostgreSQL (nothing to
    do: the rollup's triggers recorded the ranges themselves)."""
    if not ranges or not in_use():
        return False
    rows = [(key, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)) for key, (lo, hi) in ranges.items()]
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {PENDING} (instrument_key, lo, hi) VALUES (%s, %s, %s)", rows)
    if connection.in_atomic_block:
        transaction.on_commit(refresh_pending)
    else:
        refresh_pending()
    return True


def refresh_pending() -> int:
    """Refresh every aggregate over the pending ranges (all of them at once, widened to whole days by
    `timescale.refresh_range`), then delete the ranges it covered. Must run outside a transaction block; returns
    the ranges consumed (0 on plain PostgreSQL, where the rollup consumes them)."""
    if not in_use():
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, lo, hi FROM {PENDING} ORDER BY id")
        rows = cursor.fetchall()
    if not rows:
        return 0
    if connection.in_atomic_block:
        raise RuntimeError("refresh_continuous_aggregate cannot run inside a transaction block")
    timescale.refresh_range(min(row[1] for row in rows), max(row[2] for row in rows))
    # by id: ranges recorded while the refresh ran stay for the next run (their ticks may be newer than it saw)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PENDING} WHERE id = ANY(%s)", [[row[0] for row in rows]])
    log.info("continuous aggregates refreshed over %d pending tick ranges", len(rows))
    return len(rows)


def is_current(instrument_key: str, lo: float, hi: float) -> bool:
    """No pending range of the instrument overlaps ``[lo, hi)`` (epoch seconds): its aggregates hold those ticks."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {PENDING} WHERE instrument_key = %s AND lo < %s "
                       "AND hi >= %s)", [instrument_key, datetime.fromtimestamp(hi, UTC),
                                         datetime.fromtimestamp(lo, UTC)])
        return bool(cursor.fetchone()[0])
