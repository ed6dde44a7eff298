"""Celery tasks: thin wrappers taking primitives and calling plain functions. Each task's queue is named in
CELERY_TASK_ROUTES; the bridge overrides it per underlying (SIGNAL_QUEUE_ROUTES)."""

from __future__ import annotations

import gc
from typing import Any

import redis
from celery import shared_task
from celery.signals import task_prerun, worker_init
from django.db import InterfaceError, OperationalError
from redis.exceptions import NoScriptError

from signals.serializers import TICKS_SERIALIZER

# Connection-level failures of PostgreSQL or Redis: the batch is sent again (to the same queue, backing off up to
# 30 s) until they pass. Without this a failed task is acknowledged and its ticks, already acknowledged on the tick
# stream, are lost. Retrying is safe: a batch is idempotent (rows conflict, latest values are last-write-wins, its
# Redis outputs are written once).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, NoScriptError)


@shared_task(name="signals.process_ticks", autoretry_for=TRANSIENT_ERRORS, max_retries=None, retry_backoff=1,
             retry_backoff_max=30, retry_jitter=False, serializer=TICKS_SERIALIZER)
def process_ticks(ticks: list[dict[str, Any]]) -> dict[str, int]:
    """Process one underlying's normalised ticks from one bridge read (idempotent on re-delivery)."""
    from signals.pipeline import process_batch

    report = process_batch(ticks)
    return {"ticks": report.ticks, "stored": report.stored, "records": report.records}


@shared_task(name="signals.tasks.publish_stream_metrics", time_limit=30, soft_time_limit=25)
def publish_stream_metrics() -> dict[str, float]:
    """Record tick-stream consumer lag and Celery queue lengths in Redis for `/metrics` (run by celery-beat)."""
    from signals.monitoring import collect_stream_metrics

    return collect_stream_metrics()


@worker_init.connect
def warm_numerical_kernels(**kwargs: Any) -> None:
    """Compile (or load from cache) the Greeks kernels once, before the pool forks: a cold numba compile takes
    seconds, and no tick should wait for it. Import what the first batch would (the pipeline, its computation
    handlers), then move everything alive out of the collector's generations: a full collection during a batch
    then only walks what batches allocate (measured: 1-2 ms, against 15 ms with those modules imported after the
    freeze; every tick queued behind the batch waits for it), and prefork children do not copy frozen pages."""
    from greeks.engine import warm_up
    from signals import greeks_service, pipeline  # noqa: F401
    from signals.computations import load_handlers

    warm_up()
    load_handlers()
    gc.collect()
    gc.freeze()


@task_prerun.connect
def drop_unusable_connections(**kwargs: Any) -> None:
    """Workers keep their database connection across tasks (CELERY_DB_REUSE_MAX); drop it first when it is broken
    or older than CONN_MAX_AGE, as Django does around each request."""
    from django.db import close_old_connections

    close_old_connections()


from signals import greeks_tasks, rollup_tasks  # noqa: E402,F401  (register the Greeks history and bar rollup tasks)
