"""Celery task of the one-minute bar rollup (imported by `signals.tasks` for autodiscovery).

``signals.refresh_bar_rollup`` is run by celery-beat every ``SIGNAL_ROLLUP_INTERVAL_S``: the plain-PostgreSQL
stand-in for a continuous-aggregate refresh policy (`signals.rollup.refresh_pending`). Readers fold in what is
still pending for their instrument themselves, so a late or skipped run only costs the next reader a little more;
overlapping runs are safe (they take the same per-instrument locks). With TimescaleDB it does nothing.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings


@shared_task(name="signals.refresh_bar_rollup", time_limit=120, soft_time_limit=100)
def refresh_bar_rollup() -> dict[str, Any]:
    """Consume pending tick ranges into ``signal_bars_1m_rollup`` (bounded transactions, within a time budget)."""
    from signals import rollup

    if not rollup.enabled():  # TimescaleDB: the continuous aggregates' own policies refresh them
        return {"written": 0, "ranges": 0, "enabled": False}
    done = rollup.refresh_pending(max_ranges=int(settings.SIGNAL_ROLLUP_MAX_RANGES),
                                  budget_s=float(settings.SIGNAL_ROLLUP_BUDGET_S))
    return {**done, "enabled": True}
