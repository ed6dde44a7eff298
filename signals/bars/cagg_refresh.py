"""Continuous aggregates brought up to date after writes below their watermark (TimescaleDB; issue 16).

Real-time aggregation (``materialized_only = false``) adds raw ticks *above* an aggregate's watermark to what it
has materialised; ticks written below it (a history import, a late tick older than the refresh policy's window)
stay invisible until the aggregate is refreshed over their range. ``CALL refresh_continuous_aggregate`` cannot run
inside a transaction block, and an import may well run inside one (a caller's ``atomic()``, a test's), so:

* :func:`note` records the written tick ranges, per instrument, in ``signal_bars_rollup_pending`` (the same table
  the plain-PostgreSQL rollup's triggers fill; on TimescaleDB those triggers do not exist), in the writer's
  transaction: whoever sees the ticks sees the range. The pipeline's stored batches are noted the same way when
  they reach below a watermark (:func:`note_late`: late ticks, replays of past sessions), refreshed by the beat;
* :func:`refresh_pending` refreshes the aggregates over the pending ranges and deletes them. It runs right away
  when the writer is not in a transaction, after its commit when it is, and from the beat task that refreshes the
  rollup on plain PostgreSQL (so a range whose writer died before refreshing is picked up within seconds);
* :func:`is_current` tells the bars service whether an instrument's aggregates cover ``[lo, hi)``; while a range
  is pending there, it reads raw ticks instead (same bars, computed the slow way).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from signals.bars import sql, timescale
from signals.bars.rollup_triggers import PENDING

log = logging.getLogger(__name__)

MARGIN = timedelta(days=2)


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


def watermark() -> float | None:
    """The lowest watermark of our aggregates (epoch seconds; far in the past before any refresh): ticks before it
    are in an aggregate only once it is refreshed over them (None: no aggregates). TimescaleDB's own function, as
    its real-time aggregation uses it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM min(_timescaledb_functions.to_timestamp("
                       "_timescaledb_functions.cagg_watermark(mat_hypertable_id))))::float8 "
                       "FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = ANY(%s)",
                       [list(timescale.CAGGS)])
        return cursor.fetchone()[0]


def note_late(ranges: dict[str, tuple[float, float]]) -> int:
    """Record the ranges (instrument -> (first, last) epoch seconds) of stored ticks that reach below the
    aggregates' watermark, for the beat task to refresh (a refresh per batch would cost the pipeline too much);
    readers aggregate them from raw ticks meanwhile. Returns the ranges recorded; nothing on plain PostgreSQL."""
    if not ranges or not sql.present_aggregates():
        return 0
    mark = watermark()
    if mark is None:
        return 0
    late = [(key, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC))
            for key, (lo, hi) in ranges.items() if lo < mark]
    if late:
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {PENDING} (instrument_key, lo, hi) VALUES (%s, %s, %s)", late)
    return len(late)


def _windows(rows: list[tuple[int, datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The pending ranges widened by :data:`MARGIN` each side (a refresh covers whole buckets, the largest a day)
    and merged where they overlap: one refresh per window, not one from the oldest range to the newest."""
    windows: list[tuple[datetime, datetime]] = []
    for _, lo, hi in sorted(rows, key=lambda row: row[1]):
        lo, hi = lo - MARGIN, hi + MARGIN
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
        else:
            windows.append((lo, hi))
    return windows


def refresh_pending() -> int:
    """Refresh every aggregate over the pending ranges (:func:`_windows`), then delete the ranges it covered. Must run outside a transaction block; returns
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
    for lo, hi in _windows(rows):
        timescale.refresh_range(lo, hi, margin=timedelta(0))
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
