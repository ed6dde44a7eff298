"""Celery tasks: thin wrappers taking primitives and calling plain functions. Each task's queue is named in
CELERY_TASK_ROUTES; the bridge overrides it per underlying (SIGNAL_QUEUE_ROUTES). Task names are stored in
celery-beat's rows and in queued messages, so they never change with the code's layout."""

from __future__ import annotations

import gc
from typing import Any

from celery import shared_task
from celery.signals import task_prerun, worker_init
from django.conf import settings
from django.db import close_old_connections

from configs.scheduling import TASK_NAME
from greeks.engine import warm_up
from signals.backtest.chunks import run_chunk as run_backtest_chunk
from signals.backtest.progress import resume_all_stalled
from signals.backtest.runs import TASK_NAME as BACKTEST_TASK
from signals.bars import cagg_refresh, retention, rollup
from signals.ingest.codec import PROCESS_TICKS_TASK, TICKS_SERIALIZER
from signals.monitoring.streams import collect_stream_metrics
from signals.options.history import run_chunk
from signals.pipeline.attempts import process_until_done
from signals.schedule.timed import run_schedule


# No retry through the broker (it may be the Redis that is down): the batch retries in-process, and its stream
# entries stay pending until it is done (signals/pipeline/attempts.py).
@shared_task(name=PROCESS_TICKS_TASK, serializer=TICKS_SERIALIZER, bind=True)
def process_ticks(self: Any, ticks: list[dict[str, Any]], ticket: int | None = None,
                  first_delivered: float | None = None) -> dict[str, int]:
    """Process one underlying's normalised ticks from one bridge read, in its turn (idempotent on re-delivery)."""
    queue = (self.request.delivery_info or {}).get("routing_key")
    report = process_until_done(ticks, ticket, queue, first_delivered)
    return {"ticks": report.ticks, "stored": report.stored, "records": report.records}


@shared_task(name="signals.tasks.publish_stream_metrics", time_limit=30, soft_time_limit=25)
def publish_stream_metrics() -> dict[str, float]:
    """Record tick-stream consumer lag and Celery queue lengths in Redis for `/metrics` (run by celery-beat)."""
    return collect_stream_metrics()


@shared_task(name="signals.greeks_history_chunk", time_limit=3600, soft_time_limit=3500)
def greeks_history_chunk(run_id: str, chunk: int, underlying_key: str, config_id: int, start: str,
                         end: str) -> dict[str, Any]:
    """Compute and store the Greeks of [start, end) (ISO-8601) for one config; idempotent. Re-delivery is harmless:
    the rows are keyed, and the chunk's progress field is set, not incremented."""
    return run_chunk(run_id, chunk, underlying_key, config_id, start, end)


@shared_task(name="signals.refresh_bar_rollup", time_limit=120, soft_time_limit=100)
def refresh_bar_rollup() -> dict[str, Any]:
    """Consume pending tick ranges into ``signal_bars_1m_rollup`` (bounded transactions, within a time budget).

    Run by celery-beat every ``SIGNAL_ROLLUP_INTERVAL_S``: the plain-PostgreSQL stand-in for a continuous-aggregate
    refresh policy. Readers fold in what is still pending for their instrument themselves, so a late or skipped run
    only costs the next reader a little more; overlapping runs are safe (they take the same per-instrument locks)."""
    if not rollup.enabled():  # TimescaleDB: policies refresh the aggregates, this only what imports left pending
        return {"written": 0, "ranges": cagg_refresh.refresh_pending(), "enabled": False}
    done = rollup.refresh_pending(max_ranges=int(settings.SIGNAL_ROLLUP_MAX_RANGES),
                                  budget_s=float(settings.SIGNAL_ROLLUP_BUDGET_S))
    return {**done, "enabled": True}


@shared_task(name="signals.enforce_retention", time_limit=900, soft_time_limit=840)
def enforce_retention() -> dict[str, int]:
    """Retention as the settings say (`signals.bars.retention`): TimescaleDB's policies brought in line with them,
    or, on plain PostgreSQL, expired rows deleted a bounded piece at a time within ``SIGNAL_RETENTION_BUDGET_S``
    (the next run goes on). Run by celery-beat every ``SIGNAL_RETENTION_INTERVAL_S``."""
    return retention.enforce(budget_s=float(settings.SIGNAL_RETENTION_BUDGET_S))


@shared_task(name=TASK_NAME, ignore_result=True)
def run_scheduled(schedule_key: str) -> dict[str, Any]:
    """Run every enabled config whose frequency has this schedule key on the latest data (looked up now)."""
    return run_schedule(schedule_key)


@worker_init.connect
def warm_numerical_kernels(**kwargs: Any) -> None:
    """Compile (or load from cache) the Greeks kernels once, before the pool forks: a cold numba compile takes
    seconds, and no tick should wait for it (this module has imported the pipeline and its computations already).
    Then move everything alive out of the collector's generations: a full collection during a batch then only walks what
    batches allocate (measured: 1-2 ms, against 15 ms with those modules imported after the freeze; every tick
    queued behind the batch waits for it), and prefork children do not copy frozen pages."""
    warm_up()
    gc.collect()
    gc.freeze()


@task_prerun.connect
def drop_unusable_connections(**kwargs: Any) -> None:
    """Workers keep their database connection across tasks (CELERY_DB_REUSE_MAX); drop it first when it is broken
    or older than CONN_MAX_AGE, as Django does around each request."""
    close_old_connections()


@shared_task(name="signals.backtest_resume_stalled", ignore_result=True)
def backtest_resume_stalled() -> int:
    """Send again the chunks of running backtests that have not moved for ``SIGNAL_BACKTEST_STALL_S`` (their worker
    died); run by celery-beat every ``SIGNAL_BACKTEST_CHECK_S``."""
    return resume_all_stalled()


@shared_task(name=BACKTEST_TASK, acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def backtest_chunk(run_id: str, underlying: str, chunk: int) -> dict[str, Any]:
    """Replay one chunk of one underlying of a backtest run from the state the previous chunk saved; redone when
    its worker dies (one attempt commits), then sends the next chunk."""
    return run_backtest_chunk(run_id, underlying, chunk)
