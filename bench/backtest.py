"""Backtest benchmark (issue 12): a stored session of the demo feed replayed with both demo configs, on one and two
worker processes, next to the live pipeline's saturation throughput (`bench/pipeline.py`) measured in the same run.

The script makes a database of its own (``signal_bench_backtest``, migrated and seeded with the demo configs) and
Redis databases 6 and 7, stores ``--ticks`` ticks of the demo feed (`feed.simulator.NiftySession`: spot, INDVIX,
two futures and the ±15-strike chain of two expiries, at the demo feed's 200 ticks/s of session time) with stream
entry ids as the live bridge would have given them, then runs ``manage.py backtest`` (all enabled configs: the two
demo configs) with 1 and then 2 Celery worker processes on the ``backtest`` queue, and once in-process
(``--inline``); every run replays batches of ``--batch-ticks`` ticks, and the first ``--tick-by-tick`` ticks are
also replayed one tick per batch (the default of a run, which reproduces the live service keeping up with its
feed, and pays the moneyness view per option tick). Wall time is the one the command reports, from the request to the run's completion (queueing, chunks and their
checkpoints included; not the command's own start-up). Then ``bench/pipeline.py --rates 15000`` gives the live saturation figure on this machine.

    .venv/bin/python bench/backtest.py [--ticks 30000] [--batch-ticks 256] [--tick-by-tick 3000] [--no-live]

Everything runs on 127.0.0.1 and stops by itself (each backtest is bounded by ``--timeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._stack import bench_env, prepare  # noqa: E402

DATABASE, REDIS_DB = "signal_bench_backtest", 6
START = datetime(2025, 6, 20, 3, 45, tzinfo=UTC)  # 09:15 IST
FEED_RATE = 200.0  # ticks per second of session time, as `manage.py simulate_ticks` sends by default


def store(count: int) -> tuple[str, str]:
    """Inside the benchmark's environment: store ``count`` demo ticks; returns the session's ISO start and end."""
    import django

    django.setup()
    from feed.simulator import NiftySession
    from feed.ticks import parse_tick
    from signals import storage
    from signals.instrument_registry import register_instruments

    session = NiftySession(start=START, strikes_each_side=15, seed=3)
    ticks = []
    entry_ms = int(START.timestamp() * 1000)
    for n, (stream, body) in enumerate(session.ticks(FEED_RATE)):
        if n >= count:
            break
        tick = parse_tick(body)
        tick["source_id"] = f"{stream}/{entry_ms + n}-0"
        ticks.append(tick)
        if len(ticks) >= 10_000:
            storage.store_ticks(ticks)
            register_instruments(sorted({t["instrument_key"] for t in ticks}))
            ticks = []
    if ticks:
        storage.store_ticks(ticks)
        register_instruments(sorted({t["instrument_key"] for t in ticks}))
    end = session.now + timedelta(seconds=1)
    return START.isoformat(), end.isoformat()


def workers(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "celery", "-A", "signal_project", "worker", "-Q", "backtest",
                              "--pool=solo", "-n", f"bt{i}@%h", "-l", "WARNING", "--without-gossip",
                              "--without-mingle", "--without-heartbeat"], cwd=ROOT, env=env)
            for i in range(count)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wait_idle(pids: list[int], timeout: float = 60.0) -> None:
    """Wait until the processes have started (4 s at least) and then used no CPU for a second."""
    time.sleep(4.0)
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pids)
        if now - before < 0.05:
            return
        before = now


def backtest(env: dict[str, str], start: str, end: str, extra: list[str], timeout: float,
             worker_pids: list[int] | None = None) -> dict[str, float]:
    """One ``manage.py backtest``; CPU seconds are the command's own (``--inline``, from the request on) or the
    workers' over the run (``worker_pids``); PostgreSQL's are not counted."""
    before = cpu_seconds(worker_pids) if worker_pids else 0.0
    done = subprocess.run([sys.executable, "manage.py", "backtest", "--start", start, "--end", end,
                           "--instruments", "NSE@*", "--timeout", str(timeout), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout + 60)
    if done.returncode != 0:
        raise SystemExit(f"backtest failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    found = re.search(r"completed: ([\d,]+) tick\(s\), ([\d,]+) record\(s\), .*, ([\d.]+)s wall"
                      r"(?: \(([\d.]+)s CPU)?", done.stdout)
    assert found, done.stdout
    ticks = int(found.group(1).replace(",", ""))
    wall = float(found.group(3))  # the command's own: from the request to the run's completion (not its start-up)
    cpu = cpu_seconds(worker_pids) - before if worker_pids else float(found.group(4) or "nan")
    return {"ticks": ticks, "records": int(found.group(2).replace(",", "")), "wall_s": wall,
            "ticks_per_s": ticks / wall, "cpu_s": cpu, "ticks_per_cpu_s": ticks / cpu if cpu else float("nan")}


def live_saturation() -> float:
    done = subprocess.run([sys.executable, "bench/pipeline.py", "--rates", "15000", "--seconds", "10"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"bench/pipeline.py failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])[-1]["throughput_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=30_000)
    parser.add_argument("--batch-ticks", type=int, default=256, help="ticks per replayed batch of the batched runs")
    parser.add_argument("--tick-by-tick", type=int, default=3000,
                        help="the first this many ticks are also replayed one tick per batch (the default mode)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--no-live", action="store_true", help="skip bench/pipeline.py")
    parser.add_argument("--store", type=int, help=argparse.SUPPRESS)  # the storing step, in the bench's environment
    args = parser.parse_args()
    if args.store:
        print(json.dumps(store(args.store)))
        return
    env = bench_env(DATABASE, REDIS_DB)
    prepare(DATABASE, REDIS_DB, env)
    stored = subprocess.run([sys.executable, __file__, "--store", str(args.ticks)], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True)
    start, end = json.loads(stored.stdout.strip().splitlines()[-1])
    batched = ["--batch-ticks", str(args.batch_ticks)]
    first = (datetime.fromisoformat(start) + timedelta(seconds=args.tick_by_tick / FEED_RATE)).isoformat()
    results: dict[str, dict[str, float]] = {
        "tick by tick, inline": backtest(env, start, first, ["--inline"], args.timeout),
        f"batches of {args.batch_ticks}, inline": backtest(env, start, end, ["--inline", *batched], args.timeout),
        # the configuration bench/pipeline.py measures live: the `price` config alone
        f"price only, batches of {args.batch_ticks}, inline": backtest(
            env, start, end, ["--inline", "--config", "nifty-price", *batched], args.timeout)}
    for count in (1, 2):
        procs = workers(env, count)
        try:
            wait_idle([proc.pid for proc in procs])  # imports, kernels, connections: not the run's CPU time
            name = f"batches of {args.batch_ticks}, {count} worker{'s' if count > 1 else ''}"
            results[name] = backtest(env, start, end, batched, args.timeout, [proc.pid for proc in procs])
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(15)
    live = None if args.no_live else live_saturation()
    print(f"{args.ticks:,} stored ticks of the demo feed ({start} .. {end}), both demo configs")
    print(f"{'run':>36} {'ticks':>8} {'records':>8} {'wall s':>8} {'ticks/s':>9} {'CPU s':>7} {'ticks/CPU-s':>11} "
          f"{'x live':>7}")
    for name, r in results.items():
        ratio = f"{r['ticks_per_s'] / live:.2f}" if live else "-"
        print(f"{name:>36} {r['ticks']:>8} {r['records']:>8} {r['wall_s']:>8.1f} {r['ticks_per_s']:>9.0f} "
              f"{r['cpu_s']:>7.1f} {r['ticks_per_cpu_s']:>11.0f} {ratio:>7}")
    if live:
        print(f"{'live saturation (pipeline.py)':>36} {'':>8} {'':>8} {'':>8} {live:>9.0f}")
    print(json.dumps({"results": results, "live_saturation_per_s": live}))


if __name__ == "__main__":
    main()
