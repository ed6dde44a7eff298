"""Bars (OHLCV + OI) for any timeframe, for computations and the history API (docs/REFERENCE.md §5, issue 5).

Sources, in order
    1. **Redis cache** of closed bars, per instrument and timeframe, in *chunks*: one exchange date for intraday
       timeframes and ``1d``, one week for ``1w``, one month for ``1M`` (a chunk holds the bars made from the ticks
       whose time falls in it). A chunk entry records ``u``, the instant up to which its ticks are covered, so
       today's chunk grows bar by bar; complete chunks (``u`` = chunk end) are final until a late tick hits them.
    2. **TimescaleDB continuous aggregates** (``signal_bars_1m/5m/15m/1d``, see `signals.bars.timescale`) when present,
       re-bucketed in SQL to the requested size (7m from 1m, 30m from 15m, 1w from 1d…); the 1h aggregate is not
       used because a 23:15–00:15 bucket would mix two exchange days' cumulative volumes.
    3. On plain PostgreSQL, the **one-minute rollup** ``signal_bars_1m_rollup`` (`signals.bars.rollup`): the same
       columns as the aggregates, read by the same SQL, brought up to date for the instrument just before (so it
       equals the raw-tick bars exactly, live seconds and late ticks included).
    4. ``date_bin``/``date_trunc`` over raw ticks in ``signal_ticks`` (without aggregates or rollup, and the bar
       containing ``until`` in backtests), bucketed exactly as `indicators.bars.bucket_start`.
    5. **The still-open bar** from Redis (``signal:bars:open:{tf}:{key}``), kept up to date tick by tick by
       :meth:`queue_record` and merged last (`indicators.bars.merge_bars`).

Alignment and volume follow `indicators.bars` (the reference resampler the tests compare with): intraday bars on
a grid anchored at the session open (``SESSION_OPEN``, ``EXCHANGE_TIMEZONE``) of each tick's exchange date, daily
bars per exchange date, weekly from Monday, monthly from the 1st; ``volume`` is the day-cumulative feed volume
turned into traded quantity per bar (running maximum per exchange date, differenced, summed per bar), ``oi`` the
last non-null open interest. ``open``/``close`` are the first/last ticks by time, ties broken by ``source_id``
(the continuous aggregates break ties by time only; the rollup by ``source_id`` too).

Late ticks
    :meth:`queue_record` keeps a high-water mark of tick time per instrument. A tick older than it is *late*: the
    cached chunks whose covered part contains it are dropped (rebuilt from SQL on the next read, so the bar it
    belongs to is corrected) and a per-instrument generation counter moves, so a reader that computed bars before
    the late tick was stored cannot cache them (compare-and-set on the generation). Instruments for which
    :meth:`queue_record` is not running only cache bars that ended ``SIGNAL_BARS_SETTLE_S`` before their latest
    tick (or the wall clock), so late ticks within that window are still picked up.

Who calls :meth:`queue_record`: the pipeline, for every stored batch; the history import invalidates instead.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import orjson
import pandas as pd
from django.conf import settings
from django.db import connection, transaction

from feed import keys, redis_client
from indicators.bars import BAR_COLUMNS
from indicators.sql_buckets import sql_bucket_expression
from indicators.timeframes import Timeframe, parse_timeframe
from signals.bars import rollup

# [start epoch seconds, open, high, low, close, volume, oi, run] with None for missing values; ``run`` (internal) is
# the running maximum of the cumulative day volume at the bar's end, the volume base of the next bar that day.
Bar = list[Any]

# --- Redis keys ---------------------------------------------------------------------------------------------------
# Every key of one instrument carries it as a hash tag (``{NSE@NIFTY@index}``), so the scripts that touch several
# of them stay on one slot under Redis Cluster.


def _tag(instrument_key: str) -> str:
    return "{" + instrument_key + "}"


def chunks_key(timeframe: str, instrument_key: str) -> str:
    """Hash: chunk id (ISO date of the chunk's first day) -> JSON ``{"u", "r", "b": [bars]}``."""
    return f"signal:bars:chunks:{timeframe}:{_tag(instrument_key)}"


def upto_key(timeframe: str, instrument_key: str) -> str:
    """Hash: chunk id -> covered-until instant (epoch seconds) of the cached chunk (checked by late ticks)."""
    return f"signal:bars:upto:{timeframe}:{_tag(instrument_key)}"


def open_key(timeframe: str, instrument_key: str) -> str:
    """Hash: the still-open bar (see :data:`_RECORD_LUA` for the fields)."""
    return f"signal:bars:open:{timeframe}:{_tag(instrument_key)}"


def timeframes_key(instrument_key: str) -> str:
    """Set of the timeframes with cached chunks or an open bar for the instrument."""
    return f"signal:bars:tfs:{_tag(instrument_key)}"


def hwm_key(instrument_key: str) -> str:
    """Largest tick time passed to :meth:`queue_record` (expires when ticks stop being recorded)."""
    return f"signal:bars:hwm:{_tag(instrument_key)}"


def generation_key(instrument_key: str) -> str:
    return f"signal:bars:gen:{_tag(instrument_key)}"


def first_tick_key(instrument_key: str) -> str:
    """Time of the instrument's oldest stored tick (bounds look-backs; dropped by imports)."""
    return f"signal:bars:first:{_tag(instrument_key)}"


# --- alignment ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    session_open: dtime
    tz: str

    @classmethod
    def from_settings(cls) -> Alignment:
        return cls(dtime.fromisoformat(settings.SESSION_OPEN), settings.EXCHANGE_TIMEZONE)


class Grid:
    """Scalar bar and chunk arithmetic for one timeframe (epoch seconds in and out); agrees with
    `indicators.bars.bucket_start` (tested)."""

    def __init__(self, tf: Timeframe | str, alignment: Alignment):
        self.tf = parse_timeframe(tf)
        self.alignment = alignment
        self.zone = ZoneInfo(alignment.tz)
        self.size = self.tf.count * 60 if self.tf.is_intraday else None

    @property
    def name(self) -> str:
        return self.tf.name

    def local_date(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.zone).date()

    def midnight(self, day: date) -> int:
        return int(datetime.combine(day, dtime(0), tzinfo=self.zone).timestamp())

    def chunk_date(self, day: date) -> date:
        if self.tf.unit == "week":
            return day - timedelta(days=day.weekday())
        if self.tf.unit == "month":
            return day.replace(day=1)
        return day

    def chunk_of(self, ts: float) -> date:
        return self.chunk_date(self.local_date(ts))

    def next_chunk(self, chunk: date) -> date:
        if self.tf.unit == "week":
            return chunk + timedelta(days=7)
        if self.tf.unit == "month":
            return (chunk.replace(day=28) + timedelta(days=4)).replace(day=1)
        return chunk + timedelta(days=1)

    def previous_chunk(self, chunk: date) -> date:
        if self.tf.unit == "month":
            return (chunk - timedelta(days=1)).replace(day=1)
        return chunk - timedelta(days=7 if self.tf.unit == "week" else 1)

    def chunk_bounds(self, chunk: date) -> tuple[int, int]:
        return self.midnight(chunk), self.midnight(self.next_chunk(chunk))

    def bucket(self, ts: float) -> int:
        """Start of the bar containing ``ts``."""
        day = self.local_date(ts)
        if self.size is None:
            return self.midnight(self.chunk_date(day))
        opening = int(datetime.combine(day, self.alignment.session_open, tzinfo=self.zone).timestamp())
        return opening + math.floor((ts - opening) / self.size) * self.size

    def bar_end(self, start: float) -> int:
        if self.size is not None:
            return int(start) + self.size
        return self.midnight(self.next_chunk(self.local_date(start)))

    def chunks_between(self, first: date, last: date) -> list[date]:
        out = []
        chunk = self.chunk_date(first)
        while chunk <= last:
            out.append(chunk)
            chunk = self.next_chunk(chunk)
        return out


# --- SQL ------------------------------------------------------------------------------------------------------------

#: The continuous aggregate used for each kind of timeframe (coarsest whose buckets nest in the requested ones).
_AGGREGATE_STEPS = ((15, "signal_bars_15m"), (5, "signal_bars_5m"), (1, "signal_bars_1m"))


def aggregate_for(tf: Timeframe, present: set[str]) -> str | None:
    if not tf.is_intraday:
        return "signal_bars_1d" if "signal_bars_1d" in present else None
    for minutes, name in _AGGREGATE_STEPS:
        if tf.count % minutes == 0 and name in present:
            return name
    return None


def _chunk_expression(tf: Timeframe, tz_literal: str) -> str:
    """The cache chunk of a bar: its exchange date for intraday/1d (per tick date), its own start for 1w/1M."""
    if tf.unit in ("week", "month"):
        return f"(bucket AT TIME ZONE {tz_literal})::date"
    return "xday"


def bars_sql(tf: Timeframe | str, alignment: Alignment, source: str = "raw") -> str:
    """SQL for bars of ``tf`` over ``[%(lo)s, %(hi)s)`` (tick or sub-bucket time) of one instrument.

    ``source`` is ``"raw"`` (``signal_ticks``), a continuous aggregate name or ``rollup.TABLE`` (the same columns;
    ``lo``/``hi`` must then be bucket boundaries). Parameters: ``key``, ``lo``, ``hi``,
    ``base_day`` and ``base`` (the running maximum of cumulative volume on exchange date ``base_day`` before ``lo``,
    when ``lo`` is not the start of that date; NULLs otherwise). One row per (bar, cache chunk), ordered. Instants
    come out as epoch seconds (float8: parsing thousands of timestamptz in Python costs more than the query).
    """
    tf = parse_timeframe(tf)
    tz = alignment.tz
    if "'" in tz:
        raise ValueError("invalid time zone name")
    tzq = f"'{tz}'"
    if source == "raw":
        bucket = sql_bucket_expression(tf, "time", alignment.session_open, tz)
        groups = f"""
WITH t AS (
  SELECT {bucket} AS bucket, (time AT TIME ZONE {tzq})::date AS xday, time, source_id, ltp, volume, oi
  FROM signal_ticks
  WHERE instrument_key = %(key)s AND time >= %(lo)s AND time < %(hi)s
), g AS (
  SELECT bucket, xday,
         (array_agg(ltp ORDER BY time, source_id))[1] AS open,
         max(ltp) AS high, min(ltp) AS low,
         (array_agg(ltp ORDER BY time DESC, source_id DESC))[1] AS close,
         max(volume)::float8 AS vmax,
         ((array_agg(oi ORDER BY time DESC, source_id DESC) FILTER (WHERE oi IS NOT NULL))[1])::float8 AS oi,
         max(time) FILTER (WHERE oi IS NOT NULL) AS oi_time,
         min(time) AS first_time, max(time) AS last_time
  FROM t GROUP BY bucket, xday
)"""
    else:
        if not source.replace("_", "").isalnum():
            raise ValueError(f"bad aggregate name {source!r}")
        bucket = sql_bucket_expression(tf, "c.bucket", alignment.session_open, tz)
        groups = f"""
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
    chunk = _chunk_expression(tf, tzq)
    return groups + f""", r AS (
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


_present_aggregates: tuple[float, set[str]] | None = None


def present_aggregates() -> set[str]:
    """Continuous aggregates in this database (re-checked every 5 minutes; empty on plain PostgreSQL)."""
    global _present_aggregates
    now = _time.monotonic()
    if _present_aggregates is None or now - _present_aggregates[0] > 300:
        from signals.bars import timescale

        with connection.cursor() as cursor:
            found = timescale.existing_aggregates(cursor)
        _present_aggregates = (now, found)
    return _present_aggregates[1]


# --- Lua ------------------------------------------------------------------------------------------------------------

# KEYS: hwm, generation, then per timeframe (open, upto, chunks).
# ARGV: track_ttl, open_ttl, cache_ttl, n ticks, m timeframes,
#       n × (ts, ltp, volume|"", oi|"", exchange date), then m × n × (bar start, chunk id).
# Open bar fields: b start, d exchange date of its newest part, o/ot open and its time, h, l, c/ct, vm largest
# cumulative volume on date d, vb running maximum of date d before the bar, va volume of the bar's earlier dates,
# oi/oit, s = 1 when it is known to hold every tick of the bar (seeded from SQL, or rolled over while tracked).
_RECORD_LUA = """
local track_ttl, open_ttl, cache_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n, m = tonumber(ARGV[4]), tonumber(ARGV[5])
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function mx(a, b) if a == nil then return b end if b == nil then return a end if a > b then return a end return b end
local ts, px, vol, oi, day = {}, {}, {}, {}, {}
for i = 1, n do
  local o = 5 + (i - 1) * 5
  ts[i] = tonumber(ARGV[o + 1]); px[i] = tonumber(ARGV[o + 2]); vol[i] = tonumber(ARGV[o + 3])
  oi[i] = tonumber(ARGV[o + 4]); day[i] = ARGV[o + 5]
end
local old = tonumber(redis.call('GET', KEYS[1]))
local hwm = old
for i = 1, n do hwm = mx(hwm, ts[i]) end
redis.call('SET', KEYS[1], fmt(hwm), 'EX', track_ttl)
local late = false
if old ~= nil then
  for i = 1, n do if ts[i] < old then late = true end end
end
if late then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], cache_ttl)
end
local tb = 5 + n * 5
local dropped = 0
for j = 1, m do
  local okey, ukey, ckey = KEYS[2 + 3 * j - 2], KEYS[2 + 3 * j - 1], KEYS[2 + 3 * j]
  local bk, ch = {}, {}
  for i = 1, n do
    local o = tb + ((j - 1) * n + (i - 1)) * 2
    bk[i] = tonumber(ARGV[o + 1]); ch[i] = ARGV[o + 2]
  end
  if late then
    for i = 1, n do
      if ts[i] < old then
        local u = tonumber(redis.call('HGET', ukey, ch[i]))
        if u ~= nil and ts[i] < u then
          redis.call('HDEL', ukey, ch[i]); redis.call('HDEL', ckey, ch[i]); dropped = dropped + 1
        end
      end
    end
  end
  local raw = redis.call('HGETALL', okey)
  local st = {}
  for k = 1, #raw, 2 do st[raw[k]] = raw[k + 1] end
  local b = tonumber(st.b)
  local S = {b = b, d = st.d, o = tonumber(st.o), ot = tonumber(st.ot), h = tonumber(st.h), l = tonumber(st.l),
             c = tonumber(st.c), ct = tonumber(st.ct), vm = tonumber(st.vm), vb = tonumber(st.vb),
             va = tonumber(st.va), oi = tonumber(st.oi), oit = tonumber(st.oit), s = st.s or '0'}
  for i = 1, n do
    if S.b == nil or bk[i] > S.b then
      local vb = nil
      local s = '0'
      if S.b ~= nil then
        if day[i] == S.d then vb = mx(S.vb, S.vm) end
        if old ~= nil and S.s == '1' then s = '1' end
      end
      S = {b = bk[i], d = day[i], o = px[i], ot = ts[i], h = px[i], l = px[i], c = px[i], ct = ts[i],
           vm = vol[i], vb = vb, va = nil, oi = oi[i], oit = nil, s = s}
      if oi[i] ~= nil then S.oit = ts[i] end
    elseif bk[i] == S.b then
      if ts[i] < S.ot then S.o = px[i]; S.ot = ts[i] end
      if ts[i] >= S.ct then S.c = px[i]; S.ct = ts[i] end
      if px[i] > S.h then S.h = px[i] end
      if px[i] < S.l then S.l = px[i] end
      if oi[i] ~= nil and (S.oit == nil or ts[i] >= S.oit) then S.oi = oi[i]; S.oit = ts[i] end
      if day[i] == S.d then
        S.vm = mx(S.vm, vol[i])
      elseif day[i] > S.d then
        local run = mx(S.vb, S.vm)
        if run ~= nil then S.va = (S.va or 0) + run - (S.vb or 0) end
        S.d = day[i]; S.vb = nil; S.vm = vol[i]
      else
        S.s = '0'
      end
    else
      if day[i] == S.d and vol[i] ~= nil then S.vb = mx(S.vb, vol[i]) end
    end
  end
  redis.call('HSET', okey, 'b', fmt(S.b), 'd', S.d, 'o', fmt(S.o), 'ot', fmt(S.ot), 'h', fmt(S.h), 'l', fmt(S.l),
             'c', fmt(S.c), 'ct', fmt(S.ct), 'vm', fmt(S.vm), 'vb', fmt(S.vb), 'va', fmt(S.va), 'oi', fmt(S.oi),
             'oit', fmt(S.oit), 's', S.s)
  redis.call('EXPIRE', okey, open_ttl)
end
return dropped
"""

# _RECORD_LUA for many instruments in one call (per-call costs dominate batches of one tick per instrument, as an
# option chain's are). KEYS: every instrument's keys in order. ARGV[1]: a MessagePack array of strings (one separate
# argument each would cost the server about a microsecond apiece; the server decodes MessagePack in a third of the
# time of the same JSON): the number of instruments, then per instrument its key count, its argument count and the
# arguments of _RECORD_LUA. Returns the chunks dropped in all.
_RECORD_MANY_LUA = "local function record(KEYS, ARGV)\n" + _RECORD_LUA + """end
local c = cmsgpack.unpack(ARGV[1])
local dropped, ki, ai = 0, 0, 2
for _ = 1, tonumber(c[1]) do
  local nk, na = tonumber(c[ai]), tonumber(c[ai + 1])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ki + j] end
  for j = 1, na do a[j] = c[ai + 1 + j] end
  ki = ki + nk
  ai = ai + 2 + na
  dropped = dropped + record(k, a)
end
return dropped
"""

# KEYS: open, timeframes. ARGV: open_ttl, cache_ttl, timeframe, then the SQL bar's fields
# b d o ot h l c ct vm vb va oi oit ("" for null).
_SEED_LUA = """
local function num(x) return tonumber(x) end
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function mx(a, b) if a == nil then return b end if b == nil then return a end if a > b then return a end return b end
local raw = redis.call('HGETALL', KEYS[1])
local st = {}
for k = 1, #raw, 2 do st[raw[k]] = raw[k + 1] end
local A = {b = num(ARGV[4]), d = ARGV[5], o = num(ARGV[6]), ot = num(ARGV[7]), h = num(ARGV[8]), l = num(ARGV[9]),
           c = num(ARGV[10]), ct = num(ARGV[11]), vm = num(ARGV[12]), vb = num(ARGV[13]), va = num(ARGV[14]),
           oi = num(ARGV[15]), oit = num(ARGV[16])}
local b = num(st.b)
if b ~= nil and b > A.b then return 0 end
if b ~= nil and b == A.b then
  if st.d ~= A.d then return 0 end
  if num(st.ot) < A.ot then A.o = num(st.o); A.ot = num(st.ot) end
  if num(st.ct) > A.ct then A.c = num(st.c); A.ct = num(st.ct) end
  A.h = mx(A.h, num(st.h)); A.l = -mx(-A.l, -num(st.l))
  A.vm = mx(A.vm, num(st.vm)); A.vb = mx(A.vb, num(st.vb))
  local soit = num(st.oit)
  if soit ~= nil and (A.oit == nil or soit > A.oit) then A.oi = num(st.oi); A.oit = soit end
end
redis.call('HSET', KEYS[1], 'b', fmt(A.b), 'd', A.d, 'o', fmt(A.o), 'ot', fmt(A.ot), 'h', fmt(A.h), 'l', fmt(A.l),
           'c', fmt(A.c), 'ct', fmt(A.ct), 'vm', fmt(A.vm), 'vb', fmt(A.vb), 'va', fmt(A.va), 'oi', fmt(A.oi),
           'oit', fmt(A.oit), 's', '1')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
"""

# KEYS: chunks, upto, generation, timeframes. ARGV: expected generation, cache_ttl, timeframe, max chunks,
# then triples (chunk id, JSON, covered-until).
_STORE_LUA = """
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return 0 end
for i = 5, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
local limit = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[1]) > limit then
  local names = redis.call('HKEYS', KEYS[1])
  table.sort(names)
  for i = 1, #names - limit do
    redis.call('HDEL', KEYS[1], names[i]); redis.call('HDEL', KEYS[2], names[i])
  end
end
local ttl = tonumber(ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl)
redis.call('SADD', KEYS[4], ARGV[3]); redis.call('EXPIRE', KEYS[4], ttl)
return 1
"""


def exchange_day(ts: float, zone: ZoneInfo) -> str:
    """ISO date of epoch time ``ts`` in ``zone``."""
    return _exchange_day_of_slot(int(ts // _DAY_SLOT_S), zone)


_DAY_SLOT_S = 900  # every UTC offset in use is a multiple of 15 minutes, so a date never changes inside a slot


@lru_cache(maxsize=4096)
def _exchange_day_of_slot(slot: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(slot * _DAY_SLOT_S, zone).date().isoformat()


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _num(raw: Any) -> float | None:
    if raw is None or raw in (b"", ""):
        return None
    return float(raw)


# --- the service ----------------------------------------------------------------------------------------------------


@dataclass
class OpenBar:
    start: int
    day: str
    open: float
    open_time: float
    high: float
    low: float
    close: float
    close_time: float
    vmax: float | None
    vbase: float | None
    vacc: float | None
    oi: float | None
    oi_time: float | None
    seeded: bool

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> OpenBar | None:
        if not raw or not raw.get(b"b"):
            return None
        g = {k.decode(): v for k, v in raw.items()}
        return cls(int(float(g["b"])), g.get("d", b"").decode(), float(g["o"]), float(g["ot"]), float(g["h"]),
                   float(g["l"]), float(g["c"]), float(g["ct"]), _num(g.get("vm")), _num(g.get("vb")),
                   _num(g.get("va")), _num(g.get("oi")), _num(g.get("oit")), g.get("s") == b"1")

    @property
    def volume(self) -> float | None:
        run = self.run
        part = None if run is None else run - (self.vbase or 0.0)
        if part is None:
            return self.vacc
        return part + (self.vacc or 0.0)

    @property
    def run(self) -> float | None:
        return self.vmax if self.vbase is None else (self.vbase if self.vmax is None else max(self.vmax, self.vbase))

    def as_bar(self) -> Bar:
        return [self.start, self.open, self.high, self.low, self.close, self.volume, self.oi, self.run]


@dataclass
class _Entry:
    upto: float
    run: float | None
    bars: list[Bar]


@dataclass
class _Plan:
    """What a read needs: cached bars per chunk, and the tick ranges to compute."""

    cached: dict[date, _Entry] = field(default_factory=dict)
    ranges: list[tuple[date, float, float]] = field(default_factory=list)  # (chunk, lo, hi) to compute


def combine_same_start(bars: Sequence[Bar]) -> list[Bar]:
    """Bars sorted by start; bars of two chunks with the same start (ticks on both sides of local midnight in one
    bucket) combined: open of the earlier, close/oi of the later, high/low extremes, volumes added. Bars are not
    copied unless combined (the caller must not mutate them)."""
    ordered = bars if all(bars[i][0] < bars[i + 1][0] for i in range(len(bars) - 1)) else sorted(
        bars, key=lambda b: b[0])
    out: list[Bar] = []
    for bar in ordered:
        if out and out[-1][0] == bar[0]:
            prev = out[-1]
            volume = None if prev[5] is None and bar[5] is None else (prev[5] or 0.0) + (bar[5] or 0.0)
            out[-1] = [prev[0], prev[1], max(prev[2], bar[2]), min(prev[3], bar[3]), bar[4], volume,
                       bar[6] if bar[6] is not None else prev[6], bar[7]]
        else:
            out.append(bar)
    return out


def bars_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """Bars as the frame `indicators` uses: ``time`` (tz-aware UTC bar start), float64 OHLCV + OI (NaN = none)."""
    if not bars:
        frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS[1:]})
        frame.insert(0, "time", pd.Series(pd.DatetimeIndex([], tz="UTC")))
        return frame
    # column by column (None -> NaN): no per-bar temporaries
    columns = {name: np.array([bar[i] for bar in bars], dtype="float64")
               for i, name in enumerate(BAR_COLUMNS[1:], start=1)}
    frame = pd.DataFrame(columns)
    frame.insert(0, "time", pd.to_datetime(np.array([bar[0] for bar in bars], dtype="int64"), unit="s", utc=True))
    return frame


def bar_dicts(bars: Sequence[Bar]) -> list[dict[str, Any]]:
    """Bars as JSON-ready dicts (docs/REFERENCE.md §3.4/§6): time ISO-8601 UTC, numbers or None."""
    out = []
    for t, o, h, lo, c, v, oi, *_ in bars:
        out.append({"time": datetime.fromtimestamp(t, UTC).isoformat(), "open": o, "high": h, "low": lo, "close": c,
                    "volume": v, "oi": oi})
    return out


class BarsService:
    """Reads and writes bars. ``aggregates`` names the continuous aggregates to read, or ``{rollup.TABLE}`` for the
    one-minute rollup (default: the aggregates present in the database, see :func:`present_aggregates`, else the
    rollup where it is maintained; an empty set means raw ticks only)."""

    def __init__(self, client: Any = None, alignment: Alignment | None = None, aggregates: set[str] | None = None):
        if client is None:
            client = redis_client.get_redis()
        self.client = client
        self.alignment = alignment or Alignment.from_settings()
        self.aggregates = aggregates
        self._record = redis_client.script(client, _RECORD_MANY_LUA)
        self._seed = redis_client.script(client, _SEED_LUA)
        self._store = redis_client.script(client, _STORE_LUA)

    def grid(self, timeframe: str | Timeframe) -> Grid:
        return Grid(timeframe, self.alignment)

    # -- reads ---------------------------------------------------------------------------------------------------
    def bars(self, instrument_key: str, timeframe: str | Timeframe, start: float, end: float) -> list[Bar]:
        """Bars starting in ``[start, end)`` (epoch seconds), from every tick stored so far."""
        grid = self.grid(timeframe)
        if end <= start:
            return []
        last = end + (grid.size or 0)
        chunks = grid.chunks_between(grid.chunk_of(start), grid.chunk_of(last - 1e-6))
        found = self._collect(instrument_key, grid, chunks, until=None)
        return [b for b in found if start <= b[0] < end]

    def bars_before(self, instrument_key: str, timeframe: str | Timeframe, before: float, count: int,
                    until: float | None = None) -> list[Bar]:
        """The last ``count`` bars starting before ``before`` (fewer if the history is shorter)."""
        if count <= 0:
            return []
        grid = self.grid(timeframe)
        last_chunk = grid.chunk_of(before if until is None else min(before, until))
        span = self._chunk_estimate(grid, count)
        chunks: list[date] = []
        first_data: float | None = None
        collected: list[Bar] = []
        limit = datetime.now(UTC).date() - timedelta(days=int(settings.SIGNAL_BARS_MAX_LOOKBACK_DAYS))
        while True:
            new_chunks = []
            chunk = chunks[0] if chunks else grid.next_chunk(last_chunk)
            for _ in range(span):
                chunk = grid.previous_chunk(chunk)
                new_chunks.append(chunk)
            new_chunks.reverse()
            part = self._collect(instrument_key, grid, new_chunks, until=until)
            collected = combine_same_start(part + collected)
            chunks = new_chunks + chunks
            usable = [b for b in collected if b[0] < before]
            if len(usable) >= count:
                return usable[-count:]
            if first_data is None:
                first_data = self.first_tick_time(instrument_key)
            if first_data is None or grid.chunk_bounds(chunks[0])[0] <= first_data or chunks[0] <= limit:
                return usable[-count:]
            span = min(span * 2, 4000)

    def recent(self, instrument_key: str, timeframe: str | Timeframe, until: float, count: int,
               include_open: bool = True) -> list[Bar]:
        """The last ``count`` bars up to tick time ``until`` (ticks after it ignored, as in a replay): the last one
        is the bar containing ``until`` (partial) unless ``include_open`` is false."""
        grid = self.grid(timeframe)
        open_start = grid.bucket(until)
        if include_open:
            return self.bars_before(instrument_key, grid.tf, open_start + 1e-3, count, until=until)
        return self.bars_before(instrument_key, grid.tf, open_start, count, until=until)

    def first_tick_time(self, instrument_key: str) -> float | None:
        """The oldest stored tick's time (cached in Redis for SIGNAL_BARS_OPEN_TTL_S; imports drop it)."""
        held = self.client.get(first_tick_key(instrument_key))
        if held is not None:
            return _num(held)
        with connection.cursor() as cursor:
            cursor.execute("SELECT min(time) FROM signal_ticks WHERE instrument_key = %s", [instrument_key])
            row = cursor.fetchone()
        found = row[0].timestamp() if row and row[0] else None
        self.client.set(first_tick_key(instrument_key), _fmt(found), ex=int(settings.SIGNAL_BARS_OPEN_TTL_S))
        return found

    def data_range(self, instrument_key: str) -> tuple[datetime | None, datetime | None]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (SELECT min(time) FROM signal_ticks WHERE instrument_key = %s), "
                           "(SELECT max(time) FROM signal_ticks WHERE instrument_key = %s)",
                           [instrument_key, instrument_key])
            lo, hi = cursor.fetchone()
        return lo, hi

    @staticmethod
    def _chunk_estimate(grid: Grid, count: int) -> int:
        if grid.tf.is_intraday:
            session = float(getattr(settings, "SIGNAL_BARS_SESSION_MINUTES", 375))
            per_chunk = max(1.0, session / grid.tf.count)
            return max(2, math.ceil(count / per_chunk * 1.45) + 1)
        if grid.tf.unit == "day":
            return math.ceil(count * 1.45) + 3
        return count + 1

    def _collect(self, instrument_key: str, grid: Grid, chunks: list[date], until: float | None) -> list[Bar]:
        """Every bar of the given chunks (ascending), considering ticks up to ``until`` (all when None)."""
        if not chunks:
            return []
        tf = grid.name
        ids = [c.isoformat() for c in chunks]
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(chunks_key(tf, instrument_key), ids)
        pipe.hgetall(open_key(tf, instrument_key))
        pipe.get(generation_key(instrument_key))
        pipe.get(hwm_key(instrument_key))
        pipe.hget(keys.latest_tick(instrument_key), "ts")
        raw_entries, raw_open, generation, raw_hwm, latest_ts = pipe.execute()
        generation = (generation or b"0").decode()
        hwm = _num(raw_hwm)
        now = _time.time()
        if hwm is not None:
            settled = hwm  # late ticks are reported by queue_record: every bar before the open one can be cached
        else:
            settled = min(_num(latest_ts) or now, now) - float(settings.SIGNAL_BARS_SETTLE_S)
        tick_end = math.inf if until is None else until + 1e-6
        open_start = grid.bucket(until) if until is not None else (grid.bucket(hwm) if hwm is not None else None)

        plan = _Plan()
        for chunk, raw in zip(chunks, raw_entries, strict=True):
            lo, hi = grid.chunk_bounds(chunk)
            need_hi = min(hi, tick_end)
            if lo >= need_hi:
                continue
            entry = None
            if raw:
                data = orjson.loads(raw)
                entry = _Entry(float(data["u"]), data.get("r"), data["b"])
                if until is not None and open_start is not None and entry.upto > open_start:
                    # a replay before the end of what is cached: keep the bars closed by ``until`` only
                    kept = [b for b in entry.bars if b[0] < open_start]
                    run = kept[-1][7] if kept and grid.size is not None else None
                    entry = _Entry(float(max(lo, open_start)), run, kept)
            if entry is not None:
                plan.cached[chunk] = entry
                if entry.upto >= need_hi:
                    continue
                plan.ranges.append((chunk, entry.upto, need_hi))
            else:
                plan.ranges.append((chunk, float(lo), need_hi))

        live = OpenBar.from_hash(raw_open)
        use_live = (live is not None and live.seeded and open_start is not None and live.start == open_start
                    and (until is None or live.close_time <= until) and bool(plan.ranges)
                    and plan.ranges[-1][1] <= open_start < plan.ranges[-1][2]
                    and grid.chunk_of(open_start) == plan.ranges[-1][0])
        if use_live:
            chunk, lo, _ = plan.ranges[-1]
            if lo < open_start:
                plan.ranges[-1] = (chunk, lo, float(open_start))
            else:
                plan.ranges.pop()

        computed: dict[date, list[SqlBar]] = {}
        for group in _contiguous(plan.ranges):
            first_chunk, lo, _ = group[0]
            hi = group[-1][2]
            entry = plan.cached.get(first_chunk)
            base_day = base = None
            if entry is not None and lo > grid.chunk_bounds(first_chunk)[0]:
                base_day, base = grid.local_date(lo), entry.run
            for sql_bar in self._query(instrument_key, grid, lo, hi, until, base_day, base):
                computed.setdefault(sql_bar.chunk, []).append(sql_bar)

        self._cache(instrument_key, grid, plan, computed, generation, min(settled, tick_end))
        if (hwm is not None and open_start is not None and not use_live and open_start == grid.bucket(hwm)
                and (until is None or until >= hwm)):
            # only the live open bar, computed from every stored tick (not a replay's, nor one cut at an ``until``
            # before the high-water mark: it would be marked complete without the later ticks of the bar and then
            # served to those ticks): queue_record carries it on from here
            self._seed_open(instrument_key, grid, open_start, computed)

        bars: list[Bar] = []
        for chunk in chunks:
            entry = plan.cached.get(chunk)
            if entry is not None:
                bars.extend(entry.bars)
            bars.extend(b.as_bar() for b in computed.get(chunk, []))
        bars = combine_same_start(bars)
        if use_live and live is not None:
            bars = merge_open_bar(bars, live.as_bar())
        return bars

    def source_for(self, timeframe: str | Timeframe) -> str | None:
        """What bars of ``timeframe`` are aggregated from before raw ticks: a continuous aggregate's name,
        ``rollup.TABLE``, or None (raw ticks only)."""
        tf = parse_timeframe(timeframe)
        if self.aggregates is None:
            present = present_aggregates()
            name = aggregate_for(tf, present)
            if name is None and not present and rollup.enabled():
                return rollup.TABLE  # plain PostgreSQL: every timeframe is whole minutes, 1d/1w/1M whole days
            return name
        name = aggregate_for(tf, self.aggregates)
        return rollup.TABLE if name is None and rollup.TABLE in self.aggregates else name

    def _query(self, instrument_key: str, grid: Grid, lo: float, hi: float, until: float | None,
               base_day: date | None, base: float | None) -> list[SqlBar]:
        """Bars for ticks in ``[lo, hi)``: from an aggregate (or the rollup) for the part before the bar containing
        ``until`` (aggregates do not know ``until``), from raw ticks for the rest. The rollup is first brought up
        to date for the instrument; when it cannot be (or its minutes would not nest in the bars), raw ticks."""
        name = self.source_for(grid.tf)
        split = hi if until is None else min(hi, float(grid.bucket(until)))
        if name == rollup.TABLE and split > lo and not (
                rollup.covers(self.alignment.session_open, self.alignment.tz, lo, split)
                and rollup.catch_up(instrument_key)):
            name = None
        if name is None:
            return query_bars(grid.tf, self.alignment, instrument_key, lo, hi, "raw", base_day, base)
        out: list[SqlBar] = []
        if split > lo:
            out.extend(query_bars(grid.tf, self.alignment, instrument_key, lo, split, name, base_day, base))
        if hi > split:
            tail_day = grid.local_date(split)
            same_day = [b for b in out if b.last_day == tail_day]
            tail_base = same_day[-1].run_end if same_day else (base if base_day == tail_day else None)
            out.extend(query_bars(grid.tf, self.alignment, instrument_key, split, hi, "raw", tail_day, tail_base))
        return out

    def _cache(self, instrument_key: str, grid: Grid, plan: _Plan, computed: dict[date, list[SqlBar]],
               generation: str, limit: float) -> None:
        """Store what the ranges just computed add to each chunk, up to the last bar boundary before ``limit``
        (settled and before ``until``); compare-and-set on the generation read before the SQL."""
        args: list[str] = []
        for chunk, _, hi in plan.ranges:
            start, end = grid.chunk_bounds(chunk)
            edge = min(hi, limit)
            if edge >= end:
                upto = float(end)
            elif edge <= start:
                continue
            else:
                upto = float(max(start, grid.bucket(edge)))
            entry = plan.cached.get(chunk)
            if upto <= (entry.upto if entry is not None else float(start)):
                continue
            new_bars = [b.as_bar() for b in computed.get(chunk, []) if b.start < upto]
            bars = (entry.bars if entry is not None else []) + new_bars
            run = new_bars[-1][7] if new_bars else (entry.run if entry is not None else None)
            args += [chunk.isoformat(), orjson.dumps({"u": upto, "r": run, "b": bars}), repr(upto)]
        if not args:
            return
        tf = grid.name
        self._store(keys=[chunks_key(tf, instrument_key), upto_key(tf, instrument_key),
                          generation_key(instrument_key), timeframes_key(instrument_key)],
                    args=[generation, int(settings.SIGNAL_BARS_CACHE_TTL_S), tf,
                          int(settings.SIGNAL_BARS_CACHE_MAX_CHUNKS), *args])

    def _seed_open(self, instrument_key: str, grid: Grid, open_start: int,
                   computed: dict[date, list[SqlBar]]) -> None:
        """Hand the open bar just computed from SQL to Redis, where queue_record keeps it current."""
        found = [b for bars in computed.values() for b in bars if b.start == open_start]
        if len(found) != 1:  # not computed here, or split over two chunks (midnight): SQL keeps serving it
            return
        b = found[0]
        part = None if b.run_end is None else b.run_end - (b.vbase or 0.0)
        vacc = b.volume if part is None else (None if b.volume is None else b.volume - part)
        tf = grid.name
        self._seed(keys=[open_key(tf, instrument_key), timeframes_key(instrument_key)],
                   args=[int(settings.SIGNAL_BARS_OPEN_TTL_S), int(settings.SIGNAL_BARS_CACHE_TTL_S), tf,
                         b.start, b.last_day.isoformat(), _fmt(b.open), _fmt(b.first_time), _fmt(b.high),
                         _fmt(b.low), _fmt(b.close), _fmt(b.last_time), _fmt(b.vmax), _fmt(b.vbase), _fmt(vacc),
                         _fmt(b.oi), _fmt(b.oi_time)])

    # -- writes ----------------------------------------------------------------------------------------------------
    def queue_record(self, pipe: Any, ticks: list[dict[str, Any]], timeframes: dict[str, Any]) -> None:
        """Queue, on ``pipe``, the notes of stored ticks: move each instrument's high-water mark, drop cached chunks
        that late ticks hit, and update the open bar of every timeframe in use (``timeframes``: each instrument's
        members of `timeframes_key`, as the pipeline reads them). Queue it after the ticks are stored, with *every* tick of the
        instruments concerned (a subset would leave the open bars short); the pipeline can carry other writes of the
        batch in the same round trip. The script's reply is the number of chunks it dropped."""
        by_key: dict[str, list[dict[str, Any]]] = {}
        for tick in ticks:
            by_key.setdefault(tick["instrument_key"], []).append(tick)
        zone = ZoneInfo(self.alignment.tz)
        all_keys: list[str] = []
        all_args: list[Any] = [len(by_key)]
        for key, group in by_key.items():
            group = sorted(group, key=lambda t: (t["ts"], t.get("source_id", "")))
            grids = [self.grid(tf.decode()) for tf in sorted(timeframes.get(key) or ())]
            args: list[Any] = [int(settings.SIGNAL_BARS_TRACK_TTL_S), int(settings.SIGNAL_BARS_OPEN_TTL_S),
                               int(settings.SIGNAL_BARS_CACHE_TTL_S), len(group), len(grids)]
            for t in group:
                args += [repr(float(t["ts"])), repr(float(t["ltp"])), _fmt(t.get("volume")), _fmt(t.get("oi")),
                         exchange_day(t["ts"], zone)]
            tick_keys = [hwm_key(key), generation_key(key)]
            for grid in grids:
                tick_keys += [open_key(grid.name, key), upto_key(grid.name, key), chunks_key(grid.name, key)]
                for t in group:
                    args += [grid.bucket(t["ts"]), grid.chunk_of(t["ts"]).isoformat()]
            all_keys += tick_keys
            all_args += (len(tick_keys), len(args), *args)
            if grids:  # timeframes in use stay in use while ticks arrive (their open bars stay continuous)
                pipe.expire(timeframes_key(key), int(settings.SIGNAL_BARS_CACHE_TTL_S))
        if by_key:  # as strings, exactly what the script would get as separate arguments
            self._record(keys=all_keys, args=[msgpack.packb([str(a) for a in all_args])], client=pipe)

    def invalidate(self, instrument_keys: Iterable[str]) -> None:
        """Forget every cached bar and open bar of these instruments (after an import) and fail concurrent caching."""
        keys_list = list(dict.fromkeys(instrument_keys))
        if not keys_list:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys_list:
            pipe.smembers(timeframes_key(key))
        members = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        for key, tfs in zip(keys_list, members, strict=True):
            pipe.incr(generation_key(key))
            pipe.expire(generation_key(key), int(settings.SIGNAL_BARS_CACHE_TTL_S))
            pipe.delete(first_tick_key(key))
            for tf in tfs:
                name = tf.decode()
                pipe.delete(chunks_key(name, key), upto_key(name, key), open_key(name, key))
        pipe.execute()


def _contiguous(ranges: list[tuple[date, float, float]]) -> list[list[tuple[date, float, float]]]:
    groups: list[list[tuple[date, float, float]]] = []
    for item in ranges:
        if groups and abs(groups[-1][-1][2] - item[1]) < 1e-9:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def merge_open_bar(bars: list[Bar], live: Bar) -> list[Bar]:
    """`indicators.bars.merge_bars` for one open bar on plain lists (no pandas on the hot path; the equivalence is
    tested): a bar with the same start is combined (database open, high/low extremes, the open bar's close and
    oi where it has them, the larger volume), otherwise the open bar is inserted in time order."""
    def nanmax(a: float | None, b: float | None) -> float | None:
        return b if a is None else (a if b is None else max(a, b))

    def nanmin(a: float | None, b: float | None) -> float | None:
        return b if a is None else (a if b is None else min(a, b))

    for i, bar in enumerate(bars):
        if bar[0] == live[0]:
            merged = [bar[0], bar[1] if bar[1] is not None else live[1], nanmax(bar[2], live[2]),
                      nanmin(bar[3], live[3]), live[4] if live[4] is not None else bar[4], nanmax(bar[5], live[5]),
                      live[6] if live[6] is not None else bar[6], nanmax(bar[7], live[7])]
            return bars[:i] + [merged] + bars[i + 1:]
    out = [*bars, list(live)]
    return sorted(out, key=lambda b: b[0]) if bars and bars[-1][0] > live[0] else out


_service: BarsService | None = None


def get_service() -> BarsService:
    """The process's service on the default Redis client."""
    global _service
    from feed.redis_client import get_redis

    client = get_redis()
    if _service is None or _service.client is not client:
        _service = BarsService(client)
    return _service
