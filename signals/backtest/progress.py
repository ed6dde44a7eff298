"""What the command, the API and the admin read back from a run: status, progress, counts and errors; the runs'
chunks that stalled (their worker died) sent again; a run's records."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from signals.backtest.runs import send_chunk
from signals.models import BacktestRecord, BacktestRun, BacktestState


def summary(run: BacktestRun) -> dict[str, Any]:
    states = list(BacktestState.objects.filter(run=run).order_by("underlying"))
    ticks = sum(s.ticks for s in states)
    errors: dict[str, int] = {}
    for state in states:
        for name, count in state.errors.items():
            errors[name] = errors.get(name, 0) + count
    end = run.finished_at or timezone.now()
    elapsed = max((end - run.created_at).total_seconds(), 1e-6)
    message = ""
    if run.status == "completed" and run.ticks_total == 0:
        message = "no stored ticks of these instruments in this range: nothing was replayed"
    return {
        "id": str(run.id), "name": run.name, "status": run.status,
        "start_time": run.start_time.isoformat(), "end_time": run.end_time.isoformat(),
        "instruments": run.instruments, "batch_ticks": run.batch_ticks, "configs": [{"id": c["id"], "name": c["name"]} for c in run.configs],
        "underlyings": sorted(run.underlyings),
        "progress": {"ticks": ticks, "ticks_total": run.ticks_total,
                     "fraction": round(ticks / run.ticks_total, 4) if run.ticks_total else 1.0 if
                     run.status == "completed" else 0.0,
                     "underlyings_done": sum(s.done for s in states), "underlyings": len(states)},
        "counts": {"ticks": ticks, "records": sum(s.records for s in states), "errors": sum(errors.values())},
        "errors": errors, "error": run.error or None, "message": message or None,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "elapsed_s": round(elapsed, 3), "ticks_per_s": round(ticks / elapsed, 1),
    }


def resume_stalled(run: BacktestRun, stall_s: float | None = None) -> int:
    """Send again the current chunk of each unfinished underlying of a running run that has not moved for
    ``SIGNAL_BACKTEST_STALL_S`` (its worker died with it); returns how many. A chunk still running elsewhere is
    harmless to send twice: only one attempt commits."""
    if run.status != "running":
        return 0
    stall = float(settings.SIGNAL_BACKTEST_STALL_S if stall_s is None else stall_s)
    cutoff = timezone.now() - timedelta(seconds=stall)
    stalled = list(BacktestState.objects.filter(run=run, done=False, updated_at__lt=cutoff))
    for state in stalled:
        BacktestState.objects.filter(id=state.id, next_chunk=state.next_chunk).update(updated_at=timezone.now())
        send_chunk(run.id, state.underlying, state.next_chunk)
    return len(stalled)


def resume_all_stalled(stall_s: float | None = None) -> int:
    """`resume_stalled` for every running run (the periodic check, ``signals.backtest_resume_stalled``, so a run
    whose chunk's worker died finishes without anyone reading its status); returns how many chunks went out."""
    return sum(resume_stalled(run, stall_s) for run in BacktestRun.objects.filter(status="running"))


def records(run: BacktestRun, instrument_key: str, start: datetime | None = None, end: datetime | None = None,
            config_id: int | None = None) -> QuerySet[BacktestRecord]:
    query = BacktestRecord.objects.filter(run=run, instrument_key=instrument_key)
    if start is not None:
        query = query.filter(time__gte=start)
    if end is not None:
        query = query.filter(time__lt=end)
    if config_id is not None:
        query = query.filter(config_id=config_id)
    return query.order_by("time", "underlying", "chunk", "seq")
