"""A Celery worker's own endpoint (feed/probes.py): /metrics of its prefork children, /healthz, /readyz.

Imported by every Celery process through CELERY_IMPORTS; only a worker acts on it. The heartbeat is a timer on the
worker's event loop (the hub that takes messages and hands them to the pool), so it stops when that loop hangs;
the worker is ready once its consumer is connected (``worker_ready``). The children's samples reach the main
process through ``PROMETHEUS_MULTIPROC_DIR`` (one per pod); a child that exits is marked dead so its live gauges
go away.
"""

from __future__ import annotations

import os
from typing import Any

from celery import bootsteps
from celery.signals import worker_init, worker_process_shutdown, worker_ready
from django.conf import settings
from prometheus_client import multiprocess

from feed import probes

_heartbeat: list[probes.Heartbeat] = []  # this worker's, once its endpoint has started


class ProcessEndpoint(bootsteps.StartStopStep):
    """Serve the endpoint once the pool has started, and beat on every few turns of the event loop's timer."""

    requires = {"celery.worker.components:Timer", "celery.worker.components:Pool"}

    def start(self, worker: Any) -> None:
        heartbeat = probes.start(settings.SIGNAL_METRICS_PORT, settings.SIGNAL_METRICS_HOST,
                                 settings.SIGNAL_HEARTBEAT_MAX_AGE_S)
        _heartbeat.append(heartbeat)
        worker.timer.call_repeatedly(max(min(heartbeat.max_age_s / 6, 5.0), 0.2), heartbeat.beat)


@worker_init.connect
def add_endpoint_step(sender: Any = None, **kwargs: Any) -> None:
    """Sent before the worker builds its blueprint from the app's steps."""
    sender.app.steps["worker"].add(ProcessEndpoint)


@worker_ready.connect
def mark_ready(**kwargs: Any) -> None:
    for heartbeat in _heartbeat:
        heartbeat.ready = True


@worker_process_shutdown.connect
def mark_child_dead(pid: int | None = None, **kwargs: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())
