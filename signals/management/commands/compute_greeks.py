"""Compute option Greeks from stored ticks over a time range (docs/REFERENCE.md §4, issue 3): backtests and backfills.

    python manage.py compute_greeks --underlying NSE@NIFTY@index --start 2025-06-20T09:15:00+05:30 \
        --end 2025-06-20T15:30:00+05:30 [--config nifty-chain-greeks] [--chunk-minutes 30] [--inline]

The range is split into chunks, one Celery task each (queue ``SIGNAL_GREEKS_HISTORY_QUEUE``), run in parallel by
the workers; the command waits for them and prints the counts. Every option tick is priced against the
underlying's and INDVIX's stored ticks at or before its own time. Re-running adds no rows (primary keys).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from feed import keys
from feed.instruments import InstrumentKeyError, parse_instrument_key
from feed.redis_client import get_redis
from feed.ticks import TickError, parse_time
from signals.options.history import compute_chunk, greeks_configs
from signals.tasks import greeks_history_chunk


def _time(value: str, name: str) -> datetime:
    try:
        return parse_time(value)
    except TickError as exc:
        raise CommandError(f"--{name}: {exc}") from None


def chunks(start: datetime, end: datetime, minutes: int) -> list[tuple[datetime, datetime]]:
    step = timedelta(minutes=minutes)
    out = []
    at = start
    while at < end:
        out.append((at, min(at + step, end)))
        at += step
    return out


class Command(BaseCommand):
    help = "Compute option Greeks from stored ticks over a time range (idempotent), in parallel Celery tasks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--underlying", required=True, help="spot key, e.g. NSE@NIFTY@index")
        parser.add_argument("--start", required=True, help="ISO-8601 with offset (or epoch seconds)")
        parser.add_argument("--end", required=True, help="ISO-8601 with offset (or epoch seconds); exclusive")
        parser.add_argument("--config", default=None,
                            help="config name (default: every enabled Greeks config covering the underlying)")
        parser.add_argument("--chunk-minutes", type=int, default=None,
                            help=f"minutes per task (default {settings.SIGNAL_GREEKS_HISTORY_CHUNK_MINUTES})")
        parser.add_argument("--inline", action="store_true", help="run the chunks in this process, no Celery")
        parser.add_argument("--no-wait", action="store_true", help="queue the tasks and return")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the tasks")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            underlying = parse_instrument_key(options["underlying"])
        except InstrumentKeyError as exc:
            raise CommandError(f"--underlying: {exc}") from None
        if underlying.product not in ("index", "equities"):
            raise CommandError(f"--underlying: {underlying.key} is not a spot key (index or equities)")
        start, end = _time(options["start"], "start"), _time(options["end"], "end")
        if start >= end:
            raise CommandError("--start must be before --end")
        minutes = options["chunk_minutes"] or settings.SIGNAL_GREEKS_HISTORY_CHUNK_MINUTES
        if minutes < 1:
            raise CommandError("--chunk-minutes must be at least 1")
        try:
            configs = greeks_configs(underlying.key, options["config"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        jobs = [(config.id, a, b) for config in configs for a, b in chunks(start, end, minutes)]
        names = ", ".join(c.name for c in configs)
        self.stdout.write(f"{underlying.key} {start.isoformat()} .. {end.isoformat()}: {len(jobs)} chunk(s) "
                          f"of {minutes} min for config(s) {names}")
        began = time.monotonic()
        if options["inline"]:
            totals = {"ticks": 0, "rows": 0, "stored": 0}
            for config_id, a, b in jobs:
                for name, value in compute_chunk(underlying.key, config_id, a, b).items():
                    totals[name] += value
            self._report(totals, len(jobs), 0, began)
            return
        run_id = uuid.uuid4().hex
        self._send(run_id, underlying.key, jobs)
        if options["no_wait"]:
            self.stdout.write(f"queued run {run_id} on {settings.SIGNAL_GREEKS_HISTORY_QUEUE}")
            return
        outcomes = self._wait(run_id, len(jobs), options["timeout"])
        failed = [o for o in outcomes if not o.get("ok")]
        totals = {name: sum(o.get(name, 0) for o in outcomes) for name in ("ticks", "rows", "stored")}
        self._report(totals, len(jobs), len(failed), began)
        if failed:
            raise CommandError(f"{len(failed)} chunk(s) failed (re-run to retry; rows already stored stay): "
                               + "; ".join(sorted({o['error'] for o in failed})[:5]))

    def _send(self, run_id: str, underlying: str, jobs: list[tuple[int, datetime, datetime]]) -> None:
        for i, (config_id, a, b) in enumerate(jobs):
            greeks_history_chunk.apply_async(args=[run_id, i, underlying, config_id, a.isoformat(), b.isoformat()],
                                             queue=settings.SIGNAL_GREEKS_HISTORY_QUEUE)

    def _wait(self, run_id: str, expected: int, timeout: float) -> list[dict[str, Any]]:
        client = get_redis()
        deadline = time.monotonic() + timeout
        reported = -1
        while True:
            done = client.hgetall(keys.greeks_history_progress(run_id))
            if len(done) != reported:
                reported = len(done)
                self.stdout.write(f"  {reported}/{expected} chunk(s) done")
            if len(done) >= expected:
                return [json.loads(v) for v in done.values()]
            if time.monotonic() > deadline:
                raise CommandError(f"only {len(done)}/{expected} chunk(s) finished within {timeout:g}s; are workers "
                                   f"consuming queue {settings.SIGNAL_GREEKS_HISTORY_QUEUE!r}? (run {run_id})")
            time.sleep(0.2)

    def _report(self, totals: dict[str, int], chunks_count: int, failed: int, began: float) -> None:
        self.stdout.write(self.style.SUCCESS(
            f"done in {time.monotonic() - began:.1f}s: {chunks_count - failed}/{chunks_count} chunk(s), "
            f"{totals['ticks']} option tick(s), {totals['rows']} Greeks row(s) computed, {totals['stored']} new"))
