"""Backtest runs: checking a request and planning the run, one chunk of one underlying (the Celery task's plain
function), and what the command, the API and the admin read back.

A run replays each underlying as a chain of chunks (``SIGNAL_BACKTEST_CHUNK_TICKS`` stored ticks each, in tick
time): a chunk loads the state the previous chunk left (`BacktestState`), replays its ticks (`replay.Replay`), and
in one transaction replaces its records, saves the state and moves the underlying's cursor, then sends the next
chunk. A chunk redone (its worker was killed, or its message came twice) finds the cursor where its last commit
left it: a chunk already committed is skipped, one not committed runs again from the saved state, so the results
are the same. Different underlyings run in parallel on as many workers as consume ``SIGNAL_BACKTEST_QUEUE``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction

from configs.models import SignalConfig, external_function_exists
from configs.validation import ConfigError, validate_config
from feed.instruments import InstrumentKeyError, normalise_pattern
from signals.backtest.state import RunState
from signals.models import BacktestRun, BacktestState, InstrumentRecord

log = logging.getLogger(__name__)
TASK_NAME = "signals.backtest_chunk"
MAX_BATCH_TICKS = 10_000
INLINE_CONFIG_IDS = -1  # inline config documents get ids -1, -2, ... in their order

class BacktestInputError(ValueError):
    def __init__(self, message: str, field: str, details: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.field = field
        self.details = details

# -- planning ----------------------------------------------------------------------------------------------------
def instrument_keys(patterns: list[str]) -> dict[str, list[str]]:
    """Underlying (``EXCHANGE@SYMBOL``) -> the instrument keys the patterns cover (the instrument registry's, and
    exact keys with stored ticks). Raises `BacktestInputError` naming a pattern that is malformed or unknown."""
    found: dict[str, set[str]] = {}
    for i, text in enumerate(patterns):
        try:
            pattern = normalise_pattern(text)
        except InstrumentKeyError as exc:
            raise BacktestInputError(f"instruments[{i}]: {exc}", f"instruments[{i}]") from None
        if pattern == "*":
            query = InstrumentRecord.objects.all()
        elif pattern.endswith("@*"):
            query = InstrumentRecord.objects.filter(key__startswith=pattern[:-1])
        else:
            query = InstrumentRecord.objects.filter(key=pattern)
        keys = set(query.values_list("key", flat=True))
        if not keys and "*" not in pattern and _has_ticks(pattern):
            keys = {pattern}
        if not keys:
            raise BacktestInputError(f"instruments[{i}]: unknown instrument {text!r} (not in the instrument registry "
                                     "and no stored ticks)", f"instruments[{i}]")
        for key in keys:
            found.setdefault("@".join(key.split("@")[:2]), set()).add(key)
    return {underlying: sorted(keys) for underlying, keys in sorted(found.items())}

def _has_ticks(key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM signal_ticks WHERE instrument_key = %s LIMIT 1", [key])
        return cursor.fetchone() is not None

def run_configs(names: list[str], documents: list[Any]) -> list[dict[str, Any]]:
    """The configs of a run as plain dicts: the named ones (enabled or not), the inline documents (validated as
    every config is, with ids -1, -2, ...), or without either every enabled config."""
    out: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        config = SignalConfig.objects.filter(name=name).first()
        if config is None:
            raise BacktestInputError(f"configs[{i}]: no config named {name!r}", f"configs[{i}]")
        out.append(_config_dict(config.id, config.name, config.config))
    for i, document in enumerate(documents):
        try:
            valid = validate_config(document, function_exists=external_function_exists)
        except ConfigError as exc:
            path, message = exc.errors[0]
            raise BacktestInputError(f"config_documents[{i}].{path}: {message}", f"config_documents[{i}].{path}",
                                     {f"config_documents[{i}].{p}": [m] for p, m in exc.errors}) from None
        out.append(_config_dict(INLINE_CONFIG_IDS - i, str(valid.get("name") or f"inline-{i + 1}"), valid))
    if not names and not documents:
        out = [_config_dict(c.id, c.name, c.config)
               for c in SignalConfig.objects.filter(enabled=True).order_by("id")]
    return out

def _config_dict(config_id: int, name: str, document: dict[str, Any]) -> dict[str, Any]:
    return {"id": config_id, "name": name, "pattern": document["instrument_key"],
            "frequency": document.get("frequency", "every_tick"), "document": document}

def create_run(*, name: str, start: datetime, end: datetime, instruments: list[str], config_names: list[str],
               config_documents: list[Any], created_by: str = "", send: bool = True,
               batch_ticks: int = 1) -> BacktestRun:
    """Check a request, record the run and (``send``) queue the first chunk of each underlying. ``batch_ticks``:
    ticks per replayed batch (1: each tick alone, as the live service takes a feed it keeps up with)."""
    if start >= end:
        raise BacktestInputError("end_time: the range is empty (end_time must be after start_time)", "end_time")
    if not 1 <= batch_ticks <= MAX_BATCH_TICKS:
        raise BacktestInputError(f"batch_ticks: must be 1 to {MAX_BATCH_TICKS}", "batch_ticks")
    if not instruments:
        raise BacktestInputError("instruments: give at least one instrument key or pattern", "instruments")
    underlyings = instrument_keys(instruments)
    configs = run_configs(config_names, config_documents)
    total = _count_ticks([k for keys in underlyings.values() for k in keys], start, end)
    with transaction.atomic():
        run = BacktestRun.objects.create(
            id=uuid.uuid4(), name=name, start_time=start, end_time=end, instruments=instruments,
            configs=configs, underlyings=underlyings, ticks_total=total, created_by=created_by, batch_ticks=batch_ticks,
            status="running" if underlyings else "completed")
        BacktestState.objects.bulk_create(
            [BacktestState(run=run, underlying=u, state=RunState(fired_until=start.timestamp()).dump())
             for u in underlyings])
        if send:
            transaction.on_commit(lambda: [send_chunk(run.id, u, 0) for u in underlyings])
    return run

def _count_ticks(keys: list[str], start: datetime, end: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM signal_ticks WHERE instrument_key = ANY(%s) AND time >= %s "
                       "AND time < %s", [keys, start, end])
        return int(cursor.fetchone()[0])

def send_chunk(run_id: Any, underlying: str, chunk: int) -> None:
    current_app.send_task(TASK_NAME, args=[str(run_id), underlying, chunk], queue=settings.SIGNAL_BACKTEST_QUEUE)
