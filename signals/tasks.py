"""Celery tasks: thin wrappers taking primitives and calling plain functions. Queues are chosen by the sender
(the bridge routes each underlying to its queue); the defaults below name the queue used otherwise."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings


@shared_task(name="signals.process_ticks", queue=settings.SIGNAL_DEFAULT_QUEUE)
def process_ticks(ticks: list[dict[str, Any]]) -> dict[str, int]:
    """Process one underlying's normalised ticks from one bridge read (idempotent on re-delivery)."""
    from signals.pipeline import process_batch

    report = process_batch(ticks)
    return {"ticks": report.ticks, "stored": report.stored, "records": report.records}


@shared_task(name="signals.tasks.publish_stream_metrics", queue=settings.SIGNAL_DEFAULT_QUEUE, time_limit=30)
def publish_stream_metrics() -> dict[str, float]:
    """Record tick-stream consumer lag and Celery queue lengths in Redis for `/metrics` (run by celery-beat)."""
    from signals.monitoring import collect_stream_metrics

    return collect_stream_metrics()
