"""One chunk of one underlying of a backtest run (the task ``signals.backtest_chunk``), and the run's progress.

The chunk reads the next ``SIGNAL_BACKTEST_CHUNK_TICKS`` stored ticks of the underlying after the saved cursor (by
time, then ``source_id``), with INDVIX's ticks of the same span as context (the Greeks price against it), and
replays them in the order the live pipeline took them (stream entry order; an imported tick, which has none, by
its time). Its records replace whatever an earlier attempt of the same chunk left, in the transaction that saves
the state and moves the cursor; that transaction first checks the underlying still waits for this chunk, so a
duplicate attempt commits nothing and sends nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from configs.registry import ActiveConfig
from feed.streams import id_order, stream_entry
from signals.backtest.records import COPY_SQL, copy_stream
from signals.backtest.replay import ChunkOutcome, Replay
from signals.backtest.runs import send_chunk
from signals.backtest.state import RunState
from signals.models import BacktestRecord, BacktestRun, BacktestState
from signals.storage import TICK_COLUMNS, relax_durability

log = logging.getLogger(__name__)
_COLUMNS = ", ".join(TICK_COLUMNS)


def load_ticks(keys: list[str], context_keys: list[str], start: datetime, end: datetime,
               cursor: tuple[float, str] | None, limit: int) -> list[dict[str, Any]]:
    """The next ``limit`` stored ticks of ``keys`` in [start, end) after ``cursor`` by (time, source id), with the
    ticks of ``context_keys`` in the same span marked ``context``."""
    after_time = datetime.fromtimestamp(cursor[0], UTC) if cursor else start - timedelta(microseconds=1)
    after_id = cursor[1] if cursor else ""
    sql = (f"SELECT {_COLUMNS} FROM signal_ticks WHERE instrument_key = ANY(%s) AND time >= %s AND time < %s "
           "AND (time > %s OR (time = %s AND source_id COLLATE \"C\" > %s)) "
           "ORDER BY time, source_id COLLATE \"C\" LIMIT %s")
    with connection.cursor() as db:
        db.execute(sql, [keys, start, end, after_time, after_time, after_id, limit])
        rows = db.fetchall()
        ticks = [_tick(row) for row in rows]
        if context_keys and ticks:
            last = ticks[-1]["ts"] if len(ticks) == limit else end.timestamp()
            db.execute(f"SELECT {_COLUMNS} FROM signal_ticks WHERE instrument_key = ANY(%s) AND (time > %s OR "
                       "(time = %s AND source_id COLLATE \"C\" > %s)) AND time <= %s AND time < %s "
                       "ORDER BY time, source_id COLLATE \"C\"",
                       [context_keys, after_time, after_time, after_id, datetime.fromtimestamp(last, UTC), end])
            ticks += [{**_tick(row), "context": True} for row in db.fetchall()]
    return ticks


_PRICE_FIELDS = ("ltp", "open", "high", "low", "close", "volume", "oi", "bid", "ask", "ltq")
_FIELD_AT = [(name, TICK_COLUMNS.index(name)) for name in _PRICE_FIELDS]
_KEY, _TIME, _SOURCE = (TICK_COLUMNS.index(name) for name in ("instrument_key", "time", "source_id"))
_SYMBOL_KEYS: dict[str, str] = {}  # instrument key -> its EXCHANGE@SYMBOL


def _tick(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row as the normalised tick the live pipeline handled (`feed.ticks.parse_tick`'s fields)."""
    when = row[_TIME].astimezone(UTC)
    key = row[_KEY]
    symbol = _SYMBOL_KEYS.get(key)
    if symbol is None:
        symbol = _SYMBOL_KEYS[key] = "@".join(key.split("@")[:2])
    tick = {"instrument_key": key, "symbol_key": symbol, "ts": when.timestamp(), "timestamp": when.isoformat()}
    for name, at in _FIELD_AT:
        tick[name] = row[at]
    tick["state"] = "U"  # not stored: every stored tick replays as a regular-session one
    tick["source_id"] = row[_SOURCE]
    return tick


def arrival_order(tick: dict[str, Any]) -> tuple[float, int]:
    """Where a tick came in live: its stream entry's id (milliseconds, sequence); an imported tick by its time."""
    entry = stream_entry(tick["source_id"])
    if entry is None:
        return tick["ts"], 0
    ms, seq = id_order(entry[1])
    return ms / 1000.0, seq


def run_chunk(run_id: str, underlying: str, chunk: int, send_next: bool = True) -> dict[str, Any]:
    """Replay chunk ``chunk`` of ``underlying``, then the next ones for up to ``SIGNAL_BACKTEST_TASK_S``; returns
    what it did (``skipped`` when the chunk was done already; ``next_chunk``: the first one it left). ``send_next``:
    queue the next chunk once the last one replayed is committed (not when the caller runs them itself)."""
    run = BacktestRun.objects.filter(id=run_id).first()
    if run is None or run.status == "failed":
        return {"skipped": "run deleted or failed"}
    row = BacktestState.objects.filter(run=run, underlying=underlying).first()
    if row is None or row.done or row.next_chunk != chunk:
        return {"skipped": f"chunk {chunk} is not next"}
    try:
        return _replay_chunks(run, row, chunk, send_next)
    except Exception as exc:
        log.exception("backtest chunk failed", extra={"run": run_id, "underlying": underlying, "chunk": chunk})
        BacktestRun.objects.filter(id=run.id).update(status="failed", error=f"{underlying} chunk {chunk}: "
                                                     f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now())
        raise


class _Commit(threading.Thread):
    """One chunk's commit (`_commit`) on a connection of its own, while the next chunk replays: the server's work
    on the records (most of a commit) overlaps the replay instead of following it. Inside a caller's transaction
    (whose rows another connection cannot see) it commits in place instead."""

    def __init__(self, *args: Any):
        super().__init__(name="backtest-commit", daemon=True)
        self.args = args
        self.committed: bool | None = None
        self.error: BaseException | None = None
        self.own_connection = not connection.in_atomic_block
        if self.own_connection:
            self.start()
        else:
            self.run()

    def run(self) -> None:
        try:
            self.committed = _commit(*self.args)
        except BaseException as exc:  # handed to the replaying thread, which fails the run
            self.error = exc
        finally:
            if self.own_connection:
                connection.close()

    def result(self) -> bool:
        if self.own_connection:
            self.join()
        if self.error is not None:
            raise self.error
        return bool(self.committed)


def _replay_chunks(run: BacktestRun, row: BacktestState, chunk: int, send_next: bool) -> dict[str, Any]:
    """Chunks in a row from ``chunk`` on, each continuing from the state the previous one saved (reloaded from its
    checkpoint, exactly as a chunk in another process would be), each committed while the next one replays. A
    commit that finds its chunk done by another attempt stops the row: that attempt goes on with the next ones."""
    started = time.perf_counter()
    until = time.monotonic() + float(settings.SIGNAL_BACKTEST_TASK_S)
    configs = [ActiveConfig(c["id"], c["name"], c["pattern"], c["frequency"], c["document"]) for c in run.configs]
    checkpoint = bytes(row.state)
    done = {"ticks": 0, "records": 0, "chunks": 0}
    pending: _Commit | None = None
    try:
        while True:
            outcome, stream, checkpoint, last = _replay(run, row, chunk, RunState.load(checkpoint), configs)
            if pending is not None and not pending.result():
                pending = None
                return {**done, "committed": False, "last": False, "next_chunk": chunk}
            pending = _Commit(run, row.underlying, chunk, checkpoint, stream, outcome, last)
            done = {"ticks": done["ticks"] + outcome.ticks, "records": done["records"] + len(outcome.records),
                    "chunks": done["chunks"] + 1}
            if last or time.monotonic() > until:
                break
            chunk += 1
        committed = pending.result()
        pending = None
    finally:
        if pending is not None:
            if pending.own_connection:  # a replay failed while a commit was under way: let it end first
                pending.join()
    if committed and not last and send_next:
        send_chunk(run.id, row.underlying, chunk + 1)
    return {**done, "committed": committed, "last": last, "next_chunk": chunk + 1,
            "seconds": round(time.perf_counter() - started, 3)}


def _replay(run: BacktestRun, row: BacktestState, chunk: int, state: RunState,
            configs: list[ActiveConfig]) -> tuple[ChunkOutcome, bytes, bytes, bool]:
    """One chunk from ``state``: its outcome, its records' COPY data, the checkpoint after it, whether it is the
    underlying's last."""
    keys = run.underlyings[row.underlying]
    vix = settings.SIGNAL_VIX_KEY
    context = [vix] if vix not in keys else []
    limit = int(settings.SIGNAL_BACKTEST_CHUNK_TICKS)
    ticks = load_ticks(keys, context, run.start_time, run.end_time, state.cursor, limit)
    own = [t for t in ticks if not t.get("context")]
    last = len(own) < limit
    ticks.sort(key=arrival_order)
    replay = Replay(row.underlying, configs, state)
    outcome = replay.run(ticks, run.batch_ticks, heartbeat(row.id, chunk))
    if own:
        newest = max(own, key=lambda t: (t["ts"], t["source_id"]))
        state.cursor = (newest["ts"], newest["source_id"])
    if last:
        replay.fire_until(run.end_time.timestamp(), inclusive=False)
    return outcome, copy_stream(run.id, row.underlying, chunk, outcome.records), state.dump(), last


def heartbeat(state_id: int, chunk: int) -> Callable[[], None]:
    """While a chunk replays, its underlying's row is stamped every quarter of ``SIGNAL_BACKTEST_STALL_S``: a chunk
    that takes longer than that is alive, not stalled, and is not sent again (only a dead worker's chunk is)."""
    every = float(settings.SIGNAL_BACKTEST_STALL_S) / 4
    last = time.monotonic()

    def alive() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            last = time.monotonic()
            BacktestState.objects.filter(id=state_id, next_chunk=chunk, done=False).update(updated_at=timezone.now())

    return alive


def _commit(run: BacktestRun, underlying: str, chunk: int, checkpoint: bytes, stream: bytes, outcome: ChunkOutcome,
            last: bool) -> bool:
    with transaction.atomic():
        # the run's row first: commits of one run go one at a time, so the last one sees every other underlying done
        BacktestRun.objects.select_for_update().filter(id=run.id).first()
        row = BacktestState.objects.select_for_update().filter(run_id=run.id, underlying=underlying).first()
        if row is None or row.done or row.next_chunk != chunk:
            return False  # another attempt of this chunk committed first
        BacktestRecord.objects.filter(run_id=run.id, underlying=underlying, chunk=chunk).delete()
        # the checkpoint and the records commit together or not at all: a crash losing an unflushed commit only
        # means the chunk is redone (as for a killed worker), so the commit need not wait for the disk
        relax_durability()
        with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(COPY_SQL) as copy:
            copy.write(stream)
        errors = dict(row.errors)
        for name, count in outcome.errors.items():
            errors[name] = errors.get(name, 0) + count
        BacktestState.objects.filter(id=row.id).update(
            state=checkpoint, next_chunk=chunk + 1, done=last, ticks=row.ticks + outcome.ticks,
            records=row.records + len(outcome.records), errors=errors, updated_at=timezone.now())
        if last and not BacktestState.objects.filter(run_id=run.id, done=False).exclude(id=row.id).exists():
            BacktestRun.objects.filter(id=run.id, status="running").update(status="completed",
                                                                           finished_at=timezone.now())
    return True
