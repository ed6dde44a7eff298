"""Time-driven config runs: recompute each config of a schedule from the latest tick of every matching instrument.

The instruments come from the instrument registry (`InstrumentRecord`, built from observed ticks; expired
derivatives are skipped), the ticks from the latest values in Redis (`LatestStore`), and the outputs are written
by the same code as a tick batch (`signals.pipeline.batch.run_configs`). A record's ``timestamp`` is the tick's time,
as for every record; its ``record_id`` names the schedule period. A period's outputs are written once: a retried
or redelivered task, or a second beat firing the same period, writes nothing more (and adds no database row).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from configs import runs
from configs.frequency import parse_frequency
from configs.registry import ActiveConfig, registry
from configs.scheduling import config_fires_at, exchange_tz, schedule_period
from feed import keys
from feed.latest import LatestStore
from feed.redis_client import get_redis
from signals.instrument_registry import live_keys
from signals.pipeline.batch import run_configs
from signals.schedule import token_locks

log = logging.getLogger(__name__)


def instruments_for(configs: list[ActiveConfig], today: Any = None) -> dict[int, list[str]]:
    """Config id -> registry instrument keys its pattern matches (derivatives past expiry left out)."""
    today = today or timezone.now().astimezone(exchange_tz()).date()
    return {config.id: live_keys(config.pattern, today) for config in configs}


def latest_ticks(instrument_keys: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """The latest tick of each instrument, and each one's previous tick by tick time (for ``previous``)."""
    store = LatestStore(get_redis())
    ticks = [tick for tick in store.get_many(instrument_keys) if tick is not None]
    for tick in ticks:
        tick.setdefault("source_id", f"latest/{tick['instrument_key']}/{tick['ts']!r}")
        tick.setdefault("symbol_key", "@".join(tick["instrument_key"].split("@")[:2]))
    previous: dict[str, dict[str, Any] | None] = {}
    for tick, before in zip(ticks, store.before_each(ticks), strict=True):
        previous[tick["source_id"]] = None if before is None else {
            "ltp": before["ltp"], "ts": before["ts"],
            "timestamp": datetime.fromtimestamp(before["ts"], UTC).isoformat(),
        }
    return ticks, previous


def run_schedule(schedule_key: str, now: datetime | None = None) -> dict[str, Any]:
    """Run the enabled configs of one beat schedule now (or as if at ``now``: the calendar's decision depends on
    it). Overlapping runs of one schedule are skipped."""
    client = get_redis()
    token = uuid.uuid4().hex
    lock = keys.schedule_running(schedule_key)
    if not client.set(lock, token, nx=True, ex=max(settings.CELERY_TASK_TIME_LIMIT, 10)):
        log.warning("scheduled run skipped: the previous run is still going", extra={"schedule": schedule_key})
        return {"schedule_key": schedule_key, "skipped": "previous run still going"}
    try:
        return _run(schedule_key, now or timezone.now())
    finally:
        token_locks.release(client, lock, token)


def _run(schedule_key: str, started: datetime) -> dict[str, Any]:
    registry.refresh()
    # the beat entry fires on every day (and at every close time for on_close): the calendar decides per config
    configs = [c for c in registry.by_schedule(schedule_key) if config_fires_at(c.document, started)]
    if not configs:
        return {"schedule_key": schedule_key, "configs": 0, "records": 0}
    matches = instruments_for(configs, started.astimezone(exchange_tz()).date())
    all_keys = sorted({key for found in matches.values() for key in found})
    ticks, previous = latest_ticks(all_keys)
    period = schedule_period(parse_frequency(configs[0].frequency), started)
    try:
        records = run_configs(configs, ticks, previous, run=period) if ticks else []
    except Exception as exc:
        for config in configs:
            runs.stamp(config.id, "error", f"{type(exc).__name__}: {exc}", 0, started)
        raise
    per_config: dict[int, list[dict[str, Any]]] = {}
    for record, _, _ in records:
        per_config.setdefault(record["config_id"], []).append(record)
    for config in configs:
        produced = per_config.get(config.id, [])
        error = next((e for e in map(runs.first_error, produced) if e), "")
        status = "error" if error else ("ok" if produced else "no_data")
        runs.stamp(config.id, status, error, len(produced), started)
    log.info("scheduled configs ran", extra={"schedule": schedule_key, "configs": len(configs),
                                             "instruments": len(ticks), "records": len(records)})
    return {"schedule_key": schedule_key, "configs": len(configs), "instruments": len(ticks),
            "records": len(records)}
