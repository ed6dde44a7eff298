"""One-minute bar rollup on plain PostgreSQL: the honest stand-in for TimescaleDB's ``signal_bars_1m`` continuous
aggregate (issue 5).

Why
    Without TimescaleDB, a cold bar read aggregated raw ticks: a month of one instrument is ~720k rows and took
    ~1.6 s. ``signal_bars_1m_rollup`` holds one row per instrument and one-minute bucket with exactly the columns of
    the continuous aggregates, so `signals.bars.sql.bars_sql` reads it through its aggregate branch (re-bucketed
    to 5m, 7m, 1h, 1d, 1w, 1M...) and a cold month is ~12k rows.

How it stays exact
    * Triggers on ``signal_ticks`` (one per INSERT/DELETE/UPDATE statement, with transition tables) record, per
      instrument, the range of tick time the statement touched in ``signal_bars_rollup_pending``. An ``INSERT ...
      ON CONFLICT DO NOTHING`` puts only the rows really inserted in the transition table, so a re-delivered batch
      records nothing; COPY fires the INSERT trigger too. The pending row commits with the ticks (same
      transaction): whoever sees one sees the other.
    * :func:`refresh` consumes pending ranges and re-aggregates every one-minute bucket they touch from the ticks,
      with the raw path's semantics (open/close are the first/last tick by time, ties broken by ``source_id``;
      ``vmax`` the largest cumulative volume; ``oi`` the last non-null one): so a bar re-bucketed from rollup rows
      equals the bar aggregated from the ticks, to the last bit. A bucket left without ticks loses its row.
    * Readers call :func:`catch_up` for their instrument first, folding in the last seconds of live ticks and any
      late tick; celery-beat runs :func:`refresh_pending` every ``SIGNAL_ROLLUP_INTERVAL_S`` (the stand-in for a
      refresh policy), so readers rarely find much to do.

Buckets are those of ``timescale.cagg_bucket_sql("1m")`` (``date_bin`` with the same stride and origin): whole
minutes, so with a session open on a whole minute and a zone whose offset is whole minutes (every exchange zone
today) they nest in every intraday bar, and never straddle local midnight, hence never an exchange day, a week or a
month (:func:`covers` checks it for each read).

With TimescaleDB the continuous aggregates replace all this: migration 0004 installs no trigger there (and
`timescale.apply` drops it), :func:`enabled` is false, the bars service does not read the table and the beat task
does nothing.
"""

from __future__ import annotations

import logging
import time as _time
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction

from signals.bars import timescale
from signals.bars.rollup_triggers import PENDING, TRIGGERS, create_trigger_sql, drop_trigger_sql

log = logging.getLogger(__name__)

TABLE = "signal_bars_1m_rollup"
#: First key of the two-key advisory locks taken per instrument (the second is ``hashtext(instrument_key)``).
LOCK_SPACE = 0x0B41_0001
#: Columns of the rollup, in the order of :func:`aggregate_sql`'s output.
COLUMNS = ("instrument_key", "bucket", "open", "high", "low", "close", "vmax", "oi", "oi_time", "first_time",
           "last_time", "ticks")

# --- SQL ------------------------------------------------------------------------------------------------------------


def seed_sql() -> str:
    """Pending ranges for ticks stored before the triggers existed: one per instrument and exchange day (not one per
    instrument, so that :func:`refresh_pending` can take a large backlog a bounded piece at a time)."""
    tz = settings.EXCHANGE_TIMEZONE.replace("'", "''")
    return (f"INSERT INTO {PENDING} (instrument_key, lo, hi) SELECT instrument_key, min(time), max(time) "
            f"FROM signal_ticks GROUP BY instrument_key, (time AT TIME ZONE '{tz}')::date")


def bucket_sql(column: str = "time") -> str:
    """The one-minute bucket of ``column``: the ``signal_bars_1m`` aggregate's ``time_bucket`` (stride and session
    origin from `timescale.cagg_bucket_sql`), written with ``date_bin``."""
    return timescale.plain_bucket_sql("1m", settings.SESSION_OPEN, settings.EXCHANGE_TIMEZONE, column)


#: The aggregates of one bucket's ticks, in :data:`COLUMNS` order after the bucket: the continuous aggregates' own.
_AGGREGATES = timescale.TICK_AGGREGATES


def aggregate_sql() -> str:
    """The ``signal_bars_1m`` aggregate's SELECT (`timescale.cagg_select_sql`) for plain PostgreSQL, over every
    tick: ``time_bucket`` becomes ``date_bin``, the aggregates are the same. :func:`refresh_sql` computes the same
    per bucket."""
    return f"SELECT instrument_key, {bucket_sql('time')} AS bucket,\n       {_AGGREGATES}\n" \
           "FROM signal_ticks GROUP BY instrument_key, bucket"


def refresh_sql(by: str) -> str:
    """One statement: consume the pending ranges chosen by ``by`` (``"keys"``: every range of the instruments in
    ``%(keys)s``; ``"ids"``: the ranges ``%(ids)s``), take the distinct (instrument, one-minute bucket) set they
    touch, aggregate each bucket's ticks (an index range scan of ``signal_ticks`` per bucket: small in-memory sorts
    for the ordered aggregates, however large the backlog), upsert the rows that changed and delete the rows of
    buckets left without ticks. Returns (rows inserted or updated, rows deleted, ranges consumed).

    One statement, so one snapshot: a pending range it consumes and the ticks it aggregates are seen together (the
    trigger writes both in the ticks' transaction). The two writes to the rollup touch disjoint rows (buckets with
    ticks are upserted, buckets without are deleted), as PostgreSQL requires of data-modifying CTEs."""
    where = {"keys": "instrument_key = ANY(%(keys)s)", "ids": "id = ANY(%(ids)s)"}[by]
    cols = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
    old = ", ".join(f"r.{c}" for c in COLUMNS[2:])
    new = ", ".join(f"EXCLUDED.{c}" for c in COLUMNS[2:])
    return f"""
WITH p AS (
  DELETE FROM {PENDING} WHERE {where} RETURNING instrument_key, lo, hi
), k AS (
  SELECT DISTINCT p.instrument_key, s.bucket
  FROM p, generate_series({bucket_sql("p.lo")}, {bucket_sql("p.hi")}, INTERVAL '1 minute') AS s (bucket)
), a AS (
  SELECT k.instrument_key, k.bucket, x.*
  FROM k LEFT JOIN LATERAL (
    SELECT {_AGGREGATES}
    FROM signal_ticks t
    WHERE t.instrument_key = k.instrument_key AND t.time >= k.bucket AND t.time < k.bucket + INTERVAL '1 minute'
    HAVING count(*) > 0
  ) x ON true
), up AS (
  INSERT INTO {TABLE} AS r ({cols}) SELECT {cols} FROM a WHERE a.ticks IS NOT NULL
  ON CONFLICT (instrument_key, bucket) DO UPDATE SET {updates}
  WHERE ({old}) IS DISTINCT FROM ({new})
  RETURNING 1
), gone AS (
  DELETE FROM {TABLE} r USING a
  WHERE r.instrument_key = a.instrument_key AND r.bucket = a.bucket AND a.ticks IS NULL
  RETURNING 1
)
SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM gone), (SELECT count(*) FROM p)"""


# Locks: per instrument, in ascending order of the lock key (not of the instrument key: two keys may share a hash,
# and every session must take shared locks in one global order or two refreshers could deadlock). The ORDER BY sits
# in a subquery so the locks are taken row by row in that order (PostgreSQL's documented pattern).
_LOCK_SQL = (f"SELECT count(pg_advisory_xact_lock({LOCK_SPACE}, h)) FROM (SELECT DISTINCT hashtext(k) AS h "
             "FROM unnest(%s::text[]) AS k ORDER BY h) s")
_TRY_LOCK_SQL = f"SELECT pg_try_advisory_xact_lock({LOCK_SPACE}, hashtext(%s))"


# --- installation (migration 0004, timescale.apply) ---------------------------------------------------------------


def wanted(cursor: Any) -> bool:
    """The rollup belongs in this database: no continuous aggregates and ``signal_ticks`` not a hypertable (which
    would refuse triggers with transition tables)."""
    if timescale.installed_version(cursor) is None:
        return True
    if timescale.existing_aggregates(cursor):
        return False
    cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'signal_ticks'")
    return cursor.fetchone() is None


def installed(cursor: Any) -> bool:
    """Every trigger is in place and enabled (the rollup is then complete and current up to its pending ranges)."""
    cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'signal_ticks'::regclass AND tgname = ANY(%s) "
                   "AND tgenabled <> 'D'", [list(TRIGGERS)])
    return cursor.fetchone()[0] == len(TRIGGERS)


def install(cursor: Any) -> bool:
    """Create the trigger function and triggers, and record every tick already stored as pending, when the rollup
    is :func:`wanted`. Run in one transaction: CREATE TRIGGER locks ``signal_ticks`` against writes until commit,
    so no tick falls between the seed and the triggers. Returns whether it installed."""
    if not wanted(cursor):
        log.info("continuous aggregates or hypertables present: no bar rollup")
        return False
    for statement in create_trigger_sql():
        cursor.execute(statement)
    # a clean slate (after an uninstall, rows of buckets whose ticks went meanwhile would otherwise linger)
    cursor.execute(f"TRUNCATE {TABLE}, {PENDING}")
    cursor.execute(seed_sql())
    _forget_enabled()
    return True


def uninstall(cursor: Any) -> None:
    for statement in drop_trigger_sql():
        cursor.execute(statement)
    _forget_enabled()


_enabled: tuple[float, bool] | None = None


def enabled() -> bool:
    """The rollup is maintained here (its triggers exist): re-checked every 5 minutes, like the aggregates."""
    global _enabled
    now = _time.monotonic()
    if _enabled is None or now - _enabled[0] > 300:
        with connection.cursor() as cursor:
            _enabled = (now, installed(cursor))
    return _enabled[1]


def _forget_enabled() -> None:
    global _enabled
    _enabled = None


def covers(session_open: dtime, tz: str, lo: float, hi: float) -> bool:
    """One-minute buckets nest in every bar of this alignment over ``[lo, hi)``: the range's ends, the session open
    and the rollup's own origin (``SESSION_OPEN``) are whole minutes, and so is the zone's UTC offset at both ends
    (then local midnight is a bucket boundary too: no bucket mixes two exchange days, weeks or months)."""
    own = dtime.fromisoformat(str(settings.SESSION_OPEN))  # the rollup's bucket origin
    for opening in (session_open, own):
        if opening.second or opening.microsecond:
            return False
    if lo % 60 or hi % 60:
        return False
    zone = ZoneInfo(tz)
    for ts in (lo, hi):
        offset = datetime.fromtimestamp(ts, zone).utcoffset()
        if offset is None or offset.total_seconds() % 60:
            return False
    return True


# --- refresh --------------------------------------------------------------------------------------------------------


def _refresh_locked(cursor: Any, by: str, params: dict[str, Any]) -> tuple[int, int]:
    """Run :func:`refresh_sql` (the caller holds the instruments' locks). Returns (rows written, ranges consumed)."""
    cursor.execute(f"SET LOCAL jit = off; SET LOCAL work_mem = '{int(settings.SIGNAL_BARS_WORK_MEM_MB)}MB'")
    cursor.execute(refresh_sql(by), params)
    upserted, deleted, consumed = cursor.fetchone()
    return int(upserted) + int(deleted), int(consumed)


def refresh(instrument_key: str | None = None) -> int:
    """Bring the rollup up to date with every pending range (of one instrument, or of all). Returns rows written
    (inserted, updated or deleted). One transaction; waits for another refresher of the same instruments.

    The per-instrument lock is what keeps the rollup right under concurrency: without it, two refreshers could
    upsert the same bucket from different snapshots and the older one could write last, after the newer one had
    consumed the pending range that would have corrected it. The lock is taken in its own statement before the
    data statement, so (read committed) the data statement's snapshot includes everything the previous holder
    committed. Inside a caller's transaction the locks are held until it ends."""
    with transaction.atomic(), connection.cursor() as cursor:
        if instrument_key is None:
            cursor.execute(f"SELECT DISTINCT instrument_key FROM {PENDING}")
            keys = [row[0] for row in cursor.fetchall()]
        else:
            keys = [instrument_key]
        if not keys:
            return 0
        cursor.execute(_LOCK_SQL, [keys])
        # ranges of these instruments committed after the listing above are consumed too: their locks are held
        written, _ = _refresh_locked(cursor, "keys", {"keys": keys})
    return written


def catch_up(instrument_key: str) -> bool:
    """Before reading one instrument's rollup: fold its pending ranges in. True when the rollup is then current for
    it (as of this call); False when it is not and could not be made so without waiting on a lock while holding
    others (inside a caller's transaction, which may hold other instruments' locks: the caller reads raw ticks).

    No pending range visible means nothing to do, lock-free: a refresher that consumed ranges but has not committed
    still shows them to this snapshot (and is then waited for), and one that committed has committed its rows."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {PENDING} WHERE instrument_key = %s)", [instrument_key])
        if not cursor.fetchone()[0]:
            return True
        if connection.in_atomic_block and len(connection.atomic_blocks) > 1:
            cursor.execute(_TRY_LOCK_SQL, [instrument_key])
            if not cursor.fetchone()[0]:
                return False
        else:
            cursor.execute(_LOCK_SQL, [[instrument_key]])
        _refresh_locked(cursor, "keys", {"keys": [instrument_key]})
    return True


#: Tick time (summed over ranges) one transaction of :func:`refresh_pending` takes at most (but always one range):
#: live ranges last seconds, so hundreds go together; a backlog (the seed, an import) goes about an instrument-day
#: at a time, so no transaction outlives the task's time limit and is rolled back to start over.
STEP_SPAN = timedelta(days=1)


def refresh_pending(max_ranges: int = 500, budget_s: float = 60.0) -> dict[str, int]:
    """What celery-beat runs: consume pending ranges, oldest first, at most ``max_ranges`` (and :data:`STEP_SPAN`
    of tick time) per transaction, until none is left or ``budget_s`` has passed; each transaction commits its
    progress. Returns rows written and ranges consumed. Meant to run in its own transactions (inside a caller's,
    the locks of every step would be held to its end, in no global order)."""
    deadline = _time.monotonic() + budget_s
    written = consumed = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"""
SELECT id, instrument_key, n FROM (
  SELECT id, instrument_key, count(*) OVER () AS n,
         sum(hi - lo) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - (hi - lo) AS before
  FROM (SELECT id, instrument_key, lo, hi FROM {PENDING} ORDER BY id LIMIT %(n)s) p
) s WHERE before < %(span)s ORDER BY id""", {"n": max(1, max_ranges), "span": STEP_SPAN})
            rows = cursor.fetchall()
            if not rows:
                break
            cursor.execute(_LOCK_SQL, [sorted({row[1] for row in rows})])
            # ranges another refresher consumed while this one waited for the locks are simply gone
            w, c = _refresh_locked(cursor, "ids", {"ids": [row[0] for row in rows]})
        written += w
        consumed += c
        if (len(rows) == rows[0][2] < max_ranges) or _time.monotonic() >= deadline:
            break  # everything there was (when this step started) is consumed, or time is up
    return {"written": written, "ranges": consumed}

