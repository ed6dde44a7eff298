"""Bars in SQL (docs/REFERENCE.md §5): the query that aggregates one instrument's ticks, a continuous aggregate
or the one-minute rollup into bars of any timeframe, and the choice of the aggregate to read.

The TimescaleDB continuous aggregates (``signal_bars_1m/5m/15m/1d``, `signals.bars.timescale`) are re-bucketed to
the requested size (7m from 1m, 30m from 15m, 1h from 15m, 1w from 1d…; there is no 1h aggregate, since a
23:15–00:15 bucket would mix two exchange days' cumulative volumes). The one-minute rollup (`signals.bars.rollup`)
has the same columns and is read by the same SQL. Over raw ticks, bars are bucketed exactly as
`indicators.bars.bucket_start`. ``open``/``close`` are the first/last ticks by time, ticks of one instant ordered by
``source_id`` in byte order, as in the aggregates and the rollup (`timescale.TICK_AGGREGATES`).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import connection, transaction

from indicators.sql_buckets import sql_bucket_expression
from indicators.timeframes import Timeframe, parse_timeframe
from signals.bars import timescale
from signals.bars.grid import Alignment
from signals.bars.rows import Bar

#: The continuous aggregate used for each kind of timeframe (coarsest whose buckets nest in the requested ones).
_AGGREGATE_STEPS = ((15, "signal_bars_15m"), (5, "signal_bars_5m"), (1, "signal_bars_1m"))


def aggregate_for(tf: Timeframe, present: set[str]) -> str | None:
    if not tf.is_intraday:
        return "signal_bars_1d" if "signal_bars_1d" in present else None
    for minutes, name in _AGGREGATE_STEPS:
        if tf.count % minutes == 0 and name in present:
            return name
    return None


_present_aggregates: tuple[float, set[str]] | None = None


def present_aggregates() -> set[str]:
    """Continuous aggregates in this database (re-checked every 5 minutes; empty on plain PostgreSQL)."""
    global _present_aggregates
    now = _time.monotonic()
    if _present_aggregates is None or now - _present_aggregates[0] > 300:
        with connection.cursor() as cursor:
            found = timescale.existing_aggregates(cursor)
        _present_aggregates = (now, found)
    return _present_aggregates[1]


def _chunk_expression(tf: Timeframe, tz_literal: str) -> str:
    """The cache chunk of a bar: its exchange date for intraday/1d (per tick date), its own start for 1w/1M."""
    if tf.unit in ("week", "month"):
        return f"(bucket AT TIME ZONE {tz_literal})::date"
    return "xday"


def _raw_groups_sql(tf: Timeframe, alignment: Alignment, tzq: str) -> str:
    """CTEs ``t``, ``g``: one row per (bar, exchange date) aggregated from ``signal_ticks``."""
    bucket = sql_bucket_expression(tf, "time", alignment.session_open, alignment.tz)
    return f"""
WITH t AS (
  SELECT {bucket} AS bucket, (time AT TIME ZONE {tzq})::date AS xday, time, source_id, ltp, volume, oi
  FROM signal_ticks
  WHERE instrument_key = %(key)s AND time >= %(lo)s AND time < %(hi)s
), g AS (
  SELECT bucket, xday,
         (array_agg(ltp ORDER BY time, source_id COLLATE "C"))[1] AS open,
         max(ltp) AS high, min(ltp) AS low,
         (array_agg(ltp ORDER BY time DESC, source_id COLLATE "C" DESC))[1] AS close,
         max(volume)::float8 AS vmax,
         ((array_agg(oi ORDER BY time DESC, source_id COLLATE "C" DESC) FILTER (WHERE oi IS NOT NULL))[1])::float8 AS oi,
         max(time) FILTER (WHERE oi IS NOT NULL) AS oi_time,
         min(time) AS first_time, max(time) AS last_time
  FROM t GROUP BY bucket, xday
)"""


def _aggregate_groups_sql(tf: Timeframe, alignment: Alignment, tzq: str, source: str) -> str:
    """CTEs ``c``, ``g``: the same rows as :func:`_raw_groups_sql`, re-bucketed from an aggregate's buckets."""
    if not source.replace("_", "").isalnum():
        raise ValueError(f"bad aggregate name {source!r}")
    bucket = sql_bucket_expression(tf, "c.bucket", alignment.session_open, alignment.tz)
    return f"""
WITH c AS (
  SELECT {bucket} AS bucket, (c.bucket AT TIME ZONE {tzq})::date AS xday, c.open, c.high, c.low, c.close,
         c.vmax, c.oi, c.oi_time, c.first_time, c.last_time
  FROM {source} c
  WHERE c.instrument_key = %(key)s AND c.bucket >= %(lo)s AND c.bucket < %(hi)s
), g AS (
  SELECT bucket, xday,
         (array_agg(open ORDER BY first_time))[1] AS open,
         max(high) AS high, min(low) AS low,
         (array_agg(close ORDER BY last_time DESC))[1] AS close,
         max(vmax)::float8 AS vmax,
         ((array_agg(oi ORDER BY oi_time DESC) FILTER (WHERE oi IS NOT NULL))[1])::float8 AS oi,
         max(oi_time) AS oi_time, min(first_time) AS first_time, max(last_time) AS last_time
  FROM c GROUP BY bucket, xday
)"""


def _bars_from_groups_sql(chunk: str) -> str:
    """The rest of the query over ``g``: per-bar volume from the day's running maximum of cumulative volume (seeded
    with ``%(base)s`` on ``%(base_day)s``), then one row per (bar, cache chunk ``chunk``)."""
    return f""", r AS (
  SELECT g.*, CASE WHEN xday = %(base_day)s THEN %(base)s::float8 END AS day_base FROM g
), s AS (
  SELECT r.*, greatest(max(vmax) OVER (PARTITION BY xday ORDER BY bucket ROWS UNBOUNDED PRECEDING), day_base)
         AS run_end
  FROM r
), v AS (
  SELECT s.*, coalesce(lag(run_end) OVER (PARTITION BY xday ORDER BY bucket), day_base) AS vbase,
         {chunk} AS chunk
  FROM s
)
SELECT extract(epoch FROM bucket)::float8 AS start, chunk,
       (array_agg(open ORDER BY xday))[1] AS open, max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY xday DESC))[1] AS close,
       sum(run_end - coalesce(vbase, 0)) AS volume,
       (array_agg(oi ORDER BY oi_time DESC) FILTER (WHERE oi IS NOT NULL))[1] AS oi,
       extract(epoch FROM max(oi_time))::float8 AS oi_time, extract(epoch FROM min(first_time))::float8 AS first_time,
       extract(epoch FROM max(last_time))::float8 AS last_time,
       (array_agg(xday ORDER BY xday DESC))[1] AS last_day,
       (array_agg(run_end ORDER BY xday DESC))[1] AS run_end,
       (array_agg(vbase ORDER BY xday DESC))[1] AS vbase,
       (array_agg(vmax ORDER BY xday DESC))[1] AS vmax
FROM v GROUP BY bucket, chunk ORDER BY bucket, chunk"""


def bars_sql(tf: Timeframe | str, alignment: Alignment, source: str = "raw") -> str:
    """SQL for bars of ``tf`` over ``[%(lo)s, %(hi)s)`` (tick or sub-bucket time) of one instrument.

    ``source`` is ``"raw"`` (``signal_ticks``), a continuous aggregate name or ``rollup.TABLE`` (the same columns;
    ``lo``/``hi`` must then be bucket boundaries). Parameters: ``key``, ``lo``, ``hi``,
    ``base_day`` and ``base`` (the running maximum of cumulative volume on exchange date ``base_day`` before ``lo``,
    when ``lo`` is not the start of that date; NULLs otherwise). One row per (bar, cache chunk), ordered. Instants
    come out as epoch seconds (float8: parsing thousands of timestamptz in Python costs more than the query).
    """
    tf = parse_timeframe(tf)
    if "'" in alignment.tz:
        raise ValueError("invalid time zone name")
    tzq = f"'{alignment.tz}'"
    if source == "raw":
        groups = _raw_groups_sql(tf, alignment, tzq)
    else:
        groups = _aggregate_groups_sql(tf, alignment, tzq, source)
    return groups + _bars_from_groups_sql(_chunk_expression(tf, tzq))


@dataclass
class SqlBar:
    start: int
    chunk: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    oi: float | None
    oi_time: float | None
    first_time: float
    last_time: float
    last_day: date
    run_end: float | None
    vbase: float | None
    vmax: float | None

    def as_bar(self) -> Bar:
        return [self.start, self.open, self.high, self.low, self.close, self.volume, self.oi, self.run_end]


def query_bars(tf: Timeframe | str, alignment: Alignment, instrument_key: str, lo: float, hi: float,
               source: str = "raw", base_day: date | None = None, base: float | None = None) -> list[SqlBar]:
    """Run :func:`bars_sql` for ticks (or aggregate buckets) in ``[lo, hi)`` (epoch seconds)."""
    sql = bars_sql(tf, alignment, source)
    params = {"key": instrument_key, "lo": datetime.fromtimestamp(lo, UTC), "hi": datetime.fromtimestamp(hi, UTC),
              "base_day": base_day, "base": base}
    with transaction.atomic(), connection.cursor() as cursor:
        # one pass over up to a month of ticks: JIT compilation costs more than it saves, and the sort by bar
        # should stay in memory
        cursor.execute(f"SET LOCAL jit = off; SET LOCAL work_mem = '{int(settings.SIGNAL_BARS_WORK_MEM_MB)}MB'")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for (start, chunk, o, h, lo_, c, v, oi, oi_time, first_time, last_time, last_day, run_end, vbase,
         vmax) in rows:
        out.append(SqlBar(int(start), chunk, o, h, lo_, c, v, oi, oi_time, first_time, last_time, last_day, run_end,
                          vbase, vmax))
    return out


def first_tick_time(instrument_key: str) -> float | None:
    """The instrument's oldest stored tick time (epoch seconds), or None without ticks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(time) FROM signal_ticks WHERE instrument_key = %s", [instrument_key])
        row = cursor.fetchone()
    return row[0].timestamp() if row and row[0] else None


def tick_range(instrument_key: str) -> tuple[datetime | None, datetime | None]:
    """(oldest, newest) stored tick time of the instrument, None without ticks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT min(time) FROM signal_ticks WHERE instrument_key = %s), "
                       "(SELECT max(time) FROM signal_ticks WHERE instrument_key = %s)",
                       [instrument_key, instrument_key])
        lo, hi = cursor.fetchone()
    return lo, hi
