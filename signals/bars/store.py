"""Bars (OHLCV + OI) for any timeframe, for computations and the history API (docs/REFERENCE.md §5, issue 5).

Sources, in order
    1. **Redis cache** of closed bars, per instrument and timeframe, in *chunks*: one exchange date for intraday
       timeframes and ``1d``, one week for ``1w``, one month for ``1M`` (a chunk holds the bars made from the ticks
       whose time falls in it; `signals.bars.grid`). A chunk entry records ``u``, the instant up to which its ticks
       are covered, so today's chunk grows bar by bar; complete chunks (``u`` = chunk end) are final until a late
       tick hits them (`signals.bars.chunk_cache`).
    2. **TimescaleDB continuous aggregates** (``signal_bars_1m/5m/15m/1d``, see `signals.bars.timescale`) when present,
       re-bucketed in SQL to the requested size (`signals.bars.sql`).
    3. On plain PostgreSQL, the **one-minute rollup** ``signal_bars_1m_rollup`` (`signals.bars.rollup`): the same
       columns as the aggregates, read by the same SQL, brought up to date for the instrument just before (so it
       equals the raw-tick bars exactly, live seconds and late ticks included).
    4. ``date_bin``/``date_trunc`` over raw ticks in ``signal_ticks`` (without aggregates or rollup, and the bar
       containing ``until`` in backtests), bucketed exactly as `indicators.bars.bucket_start`.
    5. **The still-open bar** from Redis (`signals.bars.open_bar`), kept up to date tick by tick by
       :meth:`BarsService.queue_record` and merged last (`indicators.bars.merge_bars`).

Alignment and volume follow `indicators.bars` (the reference resampler the tests compare with): intraday bars on
a grid anchored at the session open (``SESSION_OPEN``, ``EXCHANGE_TIMEZONE``) of each tick's exchange date, daily
bars per exchange date, weekly from Monday, monthly from the 1st; ``volume`` is the day-cumulative feed volume
turned into traded quantity per bar (running maximum per exchange date, differenced, summed per bar), ``oi`` the
last non-null open interest.

Late ticks
    :meth:`BarsService.queue_record` keeps a high-water mark of tick time per instrument. A tick older than it is
    *late*: the cached chunks whose covered part contains it are dropped (rebuilt from SQL on the next read, so the
    bar it belongs to is corrected) and a per-instrument generation counter moves, so a reader that computed bars
    before the late tick was stored cannot cache them (compare-and-set on the generation). Instruments for which
    :meth:`BarsService.queue_record` is not running only cache bars that ended ``SIGNAL_BARS_SETTLE_S`` before their
    latest tick (or the wall clock), so late ticks within that window are still picked up.

Who calls :meth:`BarsService.queue_record`: the pipeline, for every stored batch; the history import invalidates
instead.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from feed import keys, redis_client
from feed.latest import LatestStore
from indicators.timeframes import Timeframe, parse_timeframe
from signals.bars import cagg_refresh, chunk_cache, open_bar, rollup, sql, tick_record
from signals.bars.grid import Alignment, Grid
from signals.bars.open_bar import OpenBar
from signals.bars.read_plan import ReadPlan
from signals.bars.rows import Bar, bar_dicts, combine_same_start, lua_number, redis_number
from signals.bars.sql import SqlBar, aggregate_for, present_aggregates, query_bars


@dataclass
class _CacheState:
    """What one read finds in Redis before computing anything."""

    raw_entries: list[bytes | None]  # per chunk asked for
    live: OpenBar | None
    generation: str
    hwm: float | None  # None: queue_record is not running for the instrument
    settled: float  # bars ending before this may be cached


class BarsService:
    """Reads and writes bars. ``aggregates`` names the continuous aggregates to read, or ``{rollup.TABLE}`` for the
    one-minute rollup (default: the aggregates present in the database, see `signals.bars.sql.present_aggregates`,
    else the rollup where it is maintained; an empty set means raw ticks only)."""

    def __init__(self, client: Any = None, alignment: Alignment | None = None, aggregates: set[str] | None = None):
        if client is None:
            client = redis_client.get_redis()
        self.client = client
        self.alignment = alignment or Alignment.from_settings()
        self.aggregates = aggregates
        self._record = redis_client.script(client, tick_record.RECORD_LUA)
        self._seed = redis_client.script(client, open_bar.SEED_LUA)
        self._store = redis_client.script(client, chunk_cache.CACHE_LUA)

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
        held = self.client.get(keys.bars_first_tick(instrument_key))
        if held is not None:
            return redis_number(held)
        found = sql.first_tick_time(instrument_key)
        self.client.set(keys.bars_first_tick(instrument_key), lua_number(found),
                        ex=int(settings.SIGNAL_BARS_OPEN_TTL_S))
        return found

    def data_range(self, instrument_key: str) -> tuple[datetime | None, datetime | None]:
        return sql.tick_range(instrument_key)

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
        state = self._read_cache(instrument_key, grid, chunks)
        hwm = state.hwm
        tick_end = math.inf if until is None else until + 1e-6
        open_start = grid.bucket(until) if until is not None else (grid.bucket(hwm) if hwm is not None else None)
        plan = ReadPlan.build(grid, chunks, state.raw_entries, until, open_start, tick_end)
        use_live = plan.take_open_bar(grid, state.live, open_start, until)
        computed = self._compute(instrument_key, grid, plan, until)
        self._cache(instrument_key, grid, plan, computed, state.generation, min(state.settled, tick_end))
        if (hwm is not None and open_start is not None and not use_live and open_start == grid.bucket(hwm)
                and (until is None or until >= hwm)):
            # only the live open bar, computed from every stored tick (not a replay's, nor one cut at an ``until``
            # before the high-water mark: it would be marked complete without the later ticks of the bar and then
            # served to those ticks): queue_record carries it on from here
            self._seed_open(instrument_key, grid, open_start, computed)
        return plan.assemble(chunks, computed, state.live if use_live else None)

    def _read_cache(self, instrument_key: str, grid: Grid, chunks: list[date]) -> _CacheState:
        """One round trip: the chunks' cache entries, the open bar, the generation, the high-water mark and the
        latest tick time."""
        tf = grid.name
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(keys.bars_chunks(tf, instrument_key), [c.isoformat() for c in chunks])
        pipe.hgetall(keys.bars_open(tf, instrument_key))
        pipe.get(keys.bars_generation(instrument_key))
        pipe.get(keys.bars_hwm(instrument_key))
        LatestStore.queue_time(pipe, instrument_key)
        raw_entries, raw_open, generation, raw_hwm, latest_ts = pipe.execute()
        hwm = redis_number(raw_hwm)
        now = _time.time()
        if hwm is not None:
            settled = hwm  # late ticks are reported by queue_record: every bar before the open one can be cached
        else:
            settled = min(redis_number(latest_ts) or now, now) - float(settings.SIGNAL_BARS_SETTLE_S)
        return _CacheState(raw_entries, OpenBar.from_hash(raw_open), (generation or b"0").decode(), hwm, settled)

    def _compute(self, instrument_key: str, grid: Grid, plan: ReadPlan,
                 until: float | None) -> dict[date, list[SqlBar]]:
        """The plan's ranges from SQL, one query per run of contiguous ranges, by chunk."""
        computed: dict[date, list[SqlBar]] = {}
        for group in plan.contiguous_ranges():
            first_chunk, lo, _ = group[0]
            hi = group[-1][2]
            entry = plan.cached.get(first_chunk)
            base_day = base = None
            if entry is not None and lo > grid.chunk_bounds(first_chunk)[0]:
                base_day, base = grid.local_date(lo), entry.run
            for sql_bar in self._query(instrument_key, grid, lo, hi, until, base_day, base):
                computed.setdefault(sql_bar.chunk, []).append(sql_bar)
        return computed

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
        to date for the instrument; when it cannot be (or its minutes would not nest in the bars), raw ticks; so
        too while an aggregate has a pending refresh over the range (`signals.bars.cagg_refresh`)."""
        name = self.source_for(grid.tf)
        split = hi if until is None else min(hi, float(grid.bucket(until)))
        if name == rollup.TABLE and split > lo and not (
                rollup.covers(self.alignment.session_open, self.alignment.tz, lo, split)
                and rollup.catch_up(instrument_key)):
            name = None
        elif name is not None and name != rollup.TABLE and split > lo and not cagg_refresh.is_current(
                instrument_key, lo, split):
            name = None  # ticks written below the watermark and not refreshed yet (an import in a transaction)
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

    def _cache(self, instrument_key: str, grid: Grid, plan: ReadPlan, computed: dict[date, list[SqlBar]],
               generation: str, limit: float) -> None:
        """Store what the ranges just computed add to each chunk (`ReadPlan.cache_updates`); compare-and-set on
        the generation read before the SQL."""
        updates = plan.cache_updates(grid, computed, limit)
        if not updates:
            return
        call_keys, args = chunk_cache.cache_call(
            instrument_key, grid.name, generation, int(settings.SIGNAL_BARS_CACHE_TTL_S),
            int(settings.SIGNAL_BARS_CACHE_MAX_CHUNKS), updates)
        self._store(keys=call_keys, args=args)

    def _seed_open(self, instrument_key: str, grid: Grid, open_start: int,
                   computed: dict[date, list[SqlBar]]) -> None:
        """Hand the open bar just computed from SQL to Redis, where queue_record keeps it current."""
        found = [b for bars in computed.values() for b in bars if b.start == open_start]
        if len(found) != 1:  # not computed here, or split over two chunks (midnight): SQL keeps serving it
            return
        call_keys, args = open_bar.seed_call(instrument_key, grid.name, found[0],
                                             int(settings.SIGNAL_BARS_OPEN_TTL_S),
                                             int(settings.SIGNAL_BARS_CACHE_TTL_S))
        self._seed(keys=call_keys, args=args)

    # -- writes ----------------------------------------------------------------------------------------------------
    def queue_record(self, pipe: Any, ticks: list[dict[str, Any]], timeframes: dict[str, Any]) -> None:
        """Queue, on ``pipe``, the notes of stored ticks (`signals.bars.tick_record`): move each instrument's
        high-water mark, drop cached chunks that late ticks hit, and update the open bar of every timeframe in use
        (``timeframes``: each instrument's members of `feed.keys.bars_timeframes`, as the pipeline reads them).
        On TimescaleDB, ticks below the aggregates' watermark are recorded for a refresh (`cagg_refresh.note_late`).
        Queue it after the ticks are stored, with *every* tick of the instruments concerned (a subset would leave
        the open bars short); the pipeline can carry other writes of the batch in the same round trip. The
        script's reply (one per shard of a cluster) is the number of chunks it dropped."""
        by_key = tick_record.ticks_by_instrument(ticks)
        # TimescaleDB: ticks below an aggregate's watermark are read from raw ticks until the beat refreshes it
        cagg_refresh.note_late({key: (min(t["ts"] for t in group), max(t["ts"] for t in group))
                                for key, group in by_key.items()})
        grids = {key: [self.grid(tf.decode()) for tf in sorted(timeframes.get(key) or ())] for key in by_key}
        cache_ttl = int(settings.SIGNAL_BARS_CACHE_TTL_S)
        for key, key_grids in grids.items():
            if key_grids:  # timeframes in use stay in use while ticks arrive (their open bars stay continuous)
                pipe.expire(keys.bars_timeframes(key), cache_ttl)
        shards: dict[str, dict[str, list[dict[str, Any]]]] = {}  # one call per shard (one on one server)
        for key, group in by_key.items():
            shards.setdefault(keys.shard(key), {})[key] = group
        for part in shards.values():
            call_keys, args = tick_record.record_call(
                part, grids, ZoneInfo(self.alignment.tz), int(settings.SIGNAL_BARS_TRACK_TTL_S),
                int(settings.SIGNAL_BARS_OPEN_TTL_S), cache_ttl)
            self._record(keys=call_keys, args=args, client=pipe)

    def invalidate(self, instrument_keys: Iterable[str]) -> None:
        """Forget every cached bar and open bar of these instruments (after an import) and fail concurrent caching."""
        keys_list = list(dict.fromkeys(instrument_keys))
        if not keys_list:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys_list:
            pipe.smembers(keys.bars_timeframes(key))
        members = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        for key, tfs in zip(keys_list, members, strict=True):
            pipe.incr(keys.bars_generation(key))
            pipe.expire(keys.bars_generation(key), int(settings.SIGNAL_BARS_CACHE_TTL_S))
            pipe.delete(keys.bars_first_tick(key))
            for tf in tfs:
                name = tf.decode()
                for cached in (keys.bars_chunks(name, key), keys.bars_upto(name, key), keys.bars_open(name, key)):
                    pipe.delete(cached)  # one by one: a cluster pipeline takes no multi-key DEL
        pipe.execute()


_service: BarsService | None = None


def get_service() -> BarsService:
    """The process's service on the default Redis client."""
    global _service
    client = redis_client.get_redis()
    if _service is None or _service.client is not client:
        _service = BarsService(client)
    return _service


def recent_bars(instrument_key: str, timeframe: str, until_ts: float, count: int,
                service: BarsService | None = None) -> list[dict[str, Any]]:
    """Recent bars for computations (internal/external functions, docs/REFERENCE.md §3.4): the last ``count`` bars
    of ``timeframe`` up to tick time ``until_ts`` (the last one is the bar containing it, as of that tick), oldest
    first: ``{time (ISO-8601 UTC bar start), open, high, low, close, volume, oi}`` with None where a value is
    missing (volume before any cumulative volume was seen, oi for spot). ``service``: a batch's own (default: the
    process's)."""
    return bar_dicts((service or get_service()).recent(instrument_key, timeframe, until_ts, count))
