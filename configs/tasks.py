"""Celery tasks of the configs app: time-driven config runs, sent by celery-beat (one entry per schedule)."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="configs.run_scheduled", ignore_result=True)
def run_scheduled(schedule_key: str) -> dict[str, Any]:
    """Run every enabled config whose frequency has this schedule key on the latest data (looked up now)."""
    from configs.timed import run_schedule

    return run_schedule(schedule_key)
