"""Each config's last run (time, status, first error, records), shown in the admin and the API.

Time-driven runs stamp every run. The tick pipeline runs configs many times a second, so each worker process
accumulates what it ran and writes a config's row at most once per ``SIGNAL_CONFIG_RUN_STAMP_S`` (one UPDATE per
config per period): cheap, and an error anywhere in the period is what the stamp shows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from configs.models import SignalConfig


@dataclass
class _Pending:
    records: int = 0
    error: str = ""
    last_written: float = float("-inf")


_pending: dict[int, _Pending] = {}
_lock = threading.Lock()


def first_error(record: dict[str, Any]) -> str:
    for computation in record.get("computations") or []:
        if not computation.get("success", True):
            return f"{computation.get('computation_type')} {computation.get('name')}: {computation.get('error')}"
    return ""


def stamp(config_id: int, status: str, error: str = "", records: int = 0, at: datetime | None = None) -> None:
    """Write one config's last run now (no signals fire: it is not a config change)."""
    SignalConfig.objects.filter(pk=config_id).update(
        last_run_at=at or timezone.now(), last_run_status=status, last_run_error=error[:2000],
        last_run_records=records,
    )


def note_records(records: list[dict[str, Any]], now: float | None = None) -> list[int]:
    """Account for pipeline records; write the configs whose stamp is due. Returns the config ids written."""
    now = time.monotonic() if now is None else now
    period = settings.SIGNAL_CONFIG_RUN_STAMP_S
    due: list[tuple[int, _Pending]] = []
    with _lock:
        for record in records:
            config_id = int(record["config_id"])
            pending = _pending.get(config_id)
            if pending is None:
                pending = _pending[config_id] = _Pending()
            pending.records += 1
            if not pending.error:
                pending.error = first_error(record)
        for config_id, pending in _pending.items():
            if pending.records and now - pending.last_written >= period:
                due.append((config_id, _Pending(pending.records, pending.error)))
                pending.records, pending.error, pending.last_written = 0, "", now
    for config_id, pending in due:
        stamp(config_id, "error" if pending.error else "ok", pending.error, pending.records)
    return [config_id for config_id, _ in due]


def reset() -> None:
    """Forget accumulated runs (tests)."""
    with _lock:
        _pending.clear()
