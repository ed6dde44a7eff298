"""Replay stored ticks through the live computations (docs/BACKTESTS.md):

    python manage.py backtest --start ISO --end ISO [--instruments PATTERN ...] [--config NAME ...]
        [--config-file FILE.json] [--name NAME] [--batch-ticks N] [--inline] [--timeout S]

The run's chunks go to Celery (queue ``SIGNAL_BACKTEST_QUEUE``) and the command follows them with a progress bar
(ticks/s, ETA), then prints a summary (ticks, records, errors per config, wall time). ``--inline`` replays in this
process instead. Exit status 1 when the run fails, is refused or does not finish within ``--timeout``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from feed.ticks import TickError, parse_time
from signals.backtest.chunks import run_chunk
from signals.backtest.progress import resume_stalled, summary
from signals.backtest.runs import BacktestInputError, create_run
from signals.models import BacktestRun, BacktestState

BAR_WIDTH = 30


def _time(value: str, name: str) -> Any:
    try:
        return parse_time(value)
    except TickError as exc:
        raise CommandError(f"--{name}: {exc}") from None


def _documents(path: str | None) -> list[Any]:
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"--config-file: {exc}") from None
    return data if isinstance(data, list) else [data]


def progress_line(done: int, total: int, elapsed: float) -> str:
    """``[#####.....] 1,234/5,678 ticks  2,345 ticks/s  ETA 3s``."""
    fraction = done / total if total else 1.0
    filled = int(BAR_WIDTH * min(fraction, 1.0))
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 and total > done else "-"
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}/{total:,} ticks  {rate:,.0f} ticks/s  "
            f"ETA {eta}")


class Command(BaseCommand):
    help = "Replay stored ticks of a time range through the computations, isolated from live (a backtest run)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--start", required=True, help="ISO-8601 with offset (or epoch seconds)")
        parser.add_argument("--end", required=True, help="ISO-8601 with offset (or epoch seconds); exclusive")
        parser.add_argument("--instruments", nargs="+", default=["*"], help="instrument keys or PREFIX@* patterns")
        parser.add_argument("--config", action="append", default=[], help="a config by name (repeatable)")
        parser.add_argument("--config-file", default=None, help="a JSON config document, or a list of them")
        parser.add_argument("--name", default="", help="a name for the run")
        parser.add_argument("--batch-ticks", type=int, default=1,
                            help="ticks per replayed batch: 1 (default) replays each tick alone, as the live service "
                                 "takes a feed it keeps up with; more replays it as under load (faster)")
        parser.add_argument("--inline", action="store_true", help="replay in this process, no Celery")
        parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait for the run")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _time(options["start"], "start"), _time(options["end"], "end")
        try:
            run = create_run(name=options["name"], start=start, end=end, instruments=options["instruments"],
                             config_names=options["config"], config_documents=_documents(options["config_file"]),
                             created_by="manage.py backtest", send=not options["inline"],
                             batch_ticks=options["batch_ticks"])
        except BacktestInputError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run {run.id}: {run.ticks_total:,} stored tick(s) of {len(run.underlyings)} "
                          f"underlying(s), {len(run.configs)} config(s)")
        began, cpu = time.monotonic(), time.process_time()
        if options["inline"]:
            self._inline(run, began)
        else:
            self._follow(run, began, options["timeout"])
        self._report(run, began, time.process_time() - cpu if options["inline"] else None)

    def _inline(self, run: BacktestRun, began: float) -> None:
        for state in BacktestState.objects.filter(run=run).order_by("underlying"):
            chunk = 0
            while True:
                outcome = run_chunk(str(run.id), state.underlying, chunk, send_next=False)
                self._bar(run, began)
                if outcome.get("last") or "skipped" in outcome or not outcome.get("committed"):
                    break
                chunk = outcome["next_chunk"]

    def _follow(self, run: BacktestRun, began: float, timeout: float) -> None:
        while True:
            run.refresh_from_db()
            self._bar(run, began)
            if run.status in ("completed", "failed"):
                return
            if time.monotonic() - began > timeout:
                sys.stderr.write("\n")
                raise CommandError(f"run {run.id} did not finish within {timeout:g}s; are workers consuming the "
                                   "backtest queue (SIGNAL_BACKTEST_QUEUE)?")
            resume_stalled(run)
            time.sleep(0.5)

    def _bar(self, run: BacktestRun, began: float) -> None:
        done = sum(BacktestState.objects.filter(run=run).values_list("ticks", flat=True))
        sys.stderr.write("\r" + progress_line(done, run.ticks_total, time.monotonic() - began))
        sys.stderr.flush()

    def _report(self, run: BacktestRun, began: float, cpu_s: float | None) -> None:
        sys.stderr.write("\n")
        run.refresh_from_db()
        found = summary(run)
        counts = found["counts"]
        self.stdout.write(f"{found['status']}: {counts['ticks']:,} tick(s), {counts['records']:,} record(s), "
                          f"{counts['errors']:,} failed computation(s), {time.monotonic() - began:.1f}s wall"
                          + (f" ({cpu_s:.1f}s CPU in this process)" if cpu_s is not None else ""))
        for name, count in sorted(found["errors"].items()):
            self.stdout.write(f"  errors in {name}: {count:,}")
        if found["message"]:
            self.stdout.write(found["message"])
        if run.status != "completed":
            raise CommandError(f"run {run.id} {run.status}: {run.error or 'not finished'}")
