"""Celery tasks of the Greeks area: thin wrappers taking primitives (imported by `signals.tasks` for autodiscovery).

``signals.greeks_history_chunk`` prices one config's stored option ticks of one underlying over one time chunk
(`signals.greeks_history.compute_chunk`) and records its counts under the run's progress hash, which the
``compute_greeks`` command polls. Re-delivery is harmless: the rows are keyed, and the progress field is set, not
incremented.
"""

from __future__ import annotations

import json
from typing import Any

from celery import shared_task


def progress_key(run_id: str) -> str:
    return f"signal:greeks:history:{run_id}"


PROGRESS_TTL_S = 7 * 86400


@shared_task(name="signals.greeks_history_chunk", time_limit=3600, soft_time_limit=3500)
def greeks_history_chunk(run_id: str, chunk: int, underlying_key: str, config_id: int, start: str,
                         end: str) -> dict[str, Any]:
    """Compute and store the Greeks of [start, end) (ISO-8601) for one config; idempotent."""
    from signals.greeks_history import run_chunk

    return run_chunk(run_id, chunk, underlying_key, config_id, start, end)


def record_progress(run_id: str, chunk: int, outcome: dict[str, Any]) -> None:
    from signals.redis_client import get_redis

    pipe = get_redis().pipeline(transaction=False)
    pipe.hset(progress_key(run_id), str(chunk), json.dumps(outcome))
    pipe.expire(progress_key(run_id), PROGRESS_TTL_S)
    pipe.execute()
