"""``python -m faults`` (``make faults``): the fault suite of docs/RELIABILITY.md.

Starts its own Redis (AOF, ``appendfsync always``) and PostgreSQL cluster on free ports under a temporary
directory, migrates and seeds a ``signal_faults`` database, starts web, bridge, worker, beat and configs from the
Procfile, publishes ticks at a bounded rate, and runs each scenario in turn. Prints the table, writes it into
docs/RELIABILITY.md, and exits 1 on any loss, duplicate, unsettled scenario or 5xx other than 503. A watchdog ends
the whole run (every process it started) after ``--max-minutes``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jwt

from faults import report, sinks
from faults.publisher import Publisher
from faults.run import Result, Timing, run
from faults.scenarios import SCENARIOS, Suite, by_name
from faults.services import PostgresCluster, RedisServer, free_port, wait_until
from faults.stack import ROOT, Stack

DATABASE = "signal_faults"
# The project's defaults, stated so the results say what was measured (and the list cap, which the counts need).
SUITE_SETTINGS = {"WORKER_CONCURRENCY": "2", "SIGNAL_OUTPUT_LIST_MAXLEN": "1000"}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help="comma-separated scenario names (default: all)")
    parser.add_argument("--rate", type=float, default=500.0, help="ticks per second (default 500)")
    parser.add_argument("--flow", type=float, default=12.0, help="seconds of ticks per scenario (default 12)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (the worst is reported)")
    parser.add_argument("--settle-timeout", type=float, default=60.0, help="seconds to wait for the sinks")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="watchdog: end everything after this")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "RELIABILITY.md"),
                        help="file to write the results into ('' for none)")
    return parser.parse_args()


def environment(redis_server: RedisServer, db_url: str, web_port: int, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNAL_", "CELERY_", "DJANGO_"))}
    env.update(SUITE_SETTINGS)
    env.update({
        "DATABASE_URL": db_url, "REDIS_URL": redis_server.url(0), "CELERY_BROKER_URL": redis_server.url(1),
        "CHANNEL_LAYER_URL": redis_server.url(0), "PORT": str(web_port), "HOST": "127.0.0.1", "DEBUG": "false",
        "SIGNAL_JWT_SECRET": secret, "DJANGO_SECRET_KEY": secrets.token_hex(32), "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "signal_project.settings", "LOG_LEVEL": "WARNING",
    })
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def manage(env: dict[str, str], *command: str) -> None:
    subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def revision() -> str:
    """The commit measured (``+`` when the work tree has changes), for the results' heading."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}{'+' if dirty else ''}"


def watchdog(minutes: float, cleanup: list) -> None:
    def expire() -> None:
        print(f"faults: watchdog: still running after {minutes:g} min; stopping everything", flush=True)
        for stop in cleanup:
            try:
                stop()
            except Exception:  # noqa: BLE001 (stop all the others regardless)
                pass
        os._exit(2)

    timer = threading.Timer(minutes * 60, expire)
    timer.daemon = True
    timer.start()


def warm_up(suite: Suite, publisher: Publisher) -> None:
    """A few seconds of ticks, all stored: every process is up and the consumer group exists."""
    wait_until(suite.web_answers, 120, "web")
    mark = publisher.mark()
    publisher.flow(True)
    time.sleep(3)
    publisher.flow(False)
    time.sleep(0.5)
    ticks = publisher.sent_since(mark)
    wait_until(lambda: sinks.stored_count(suite.db_url, ticks) == len(ticks), 180, "the warm-up ticks")


def main() -> int:
    args = arguments()
    scenarios = by_name([n for n in args.scenarios.split(",") if n])
    # SIGTERM (CI cancelling, a timeout) ends the run through the cleanup below, like Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="signal-faults-"))
    workdir.chmod(0o755)  # PostgreSQL runs as its own user below it
    cleanup: list = []
    watchdog(args.max_minutes, cleanup)
    try:
        return _run_suite(args, scenarios, workdir, cleanup)
    finally:
        for stop in reversed(cleanup):
            stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _run_suite(args: argparse.Namespace, scenarios: list, workdir: Path, cleanup: list) -> int:
    redis_server, postgres = RedisServer(workdir), PostgresCluster(workdir)
    redis_server.start()
    cleanup.append(redis_server.kill)
    postgres.init()
    postgres.start()
    cleanup.append(postgres.stop)
    postgres.create_database(DATABASE)
    db_url, web_port, secret = postgres.url(DATABASE), free_port(), secrets.token_hex(32)
    env = environment(redis_server, db_url, web_port, secret)
    print(f"faults: Redis :{redis_server.port}, PostgreSQL :{postgres.port}, web :{web_port}; migrating", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    logdir = workdir / "logs"
    logdir.mkdir()
    stack = Stack(env, logdir)
    stack.start()
    cleanup.append(stack.stop)
    publisher = Publisher(redis_server.url(0), args.rate)
    publisher.start()
    cleanup.append(publisher.close)
    suite = Suite(stack, redis_server, postgres, db_url, web_port, "signal:beat:lock")
    warm_up(suite, publisher)
    configs = sinks.every_tick_configs(db_url)
    token = jwt.encode({"sub": "faults", "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    timing = Timing(flow_s=args.flow, settle_timeout_s=args.settle_timeout,
                    list_cap=int(SUITE_SETTINGS["SIGNAL_OUTPUT_LIST_MAXLEN"]))
    results: list[Result] = []
    for scenario in scenarios:
        for _ in range(args.repeat):
            print(f"faults: {scenario.name}: {scenario.fault}", flush=True)
            result = run(scenario, suite, publisher, configs, timing, token)
            results.append(result)
            print(report.table([result]).splitlines()[-1], flush=True)
    print("\n" + report.table(results) + "\n\n" + report.notes(results), flush=True)
    settings = (f"{revision()}; {args.rate:g} ticks/s, {args.flow:g} s of flow per scenario, fault after 4 s, "
                f"{args.repeat} run(s) each; "
                + ", ".join(f"{k}={v}" for k, v in SUITE_SETTINGS.items()))
    if args.docs:
        report.write_docs(Path(args.docs), results, settings)
    failed = [r.scenario.name for r in results if not r.ok]
    if failed:
        kept = ROOT / ".run" / "faults-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(logdir, kept)
        print(f"faults: FAILED: {', '.join(failed)} (the processes' logs are in {kept})", flush=True)
        return 1
    print("faults: every scenario passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
