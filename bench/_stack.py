"""Start a real bridge and Celery worker on a benchmark database and Redis databases of their own (127.0.0.1 only).

Used by the benchmarks; every process is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent


def bench_env(database: str, redis_db: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "signal_project.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db + 1}",
        "CHANNEL_LAYER_PREFIX": f"bench-{database}",
        "SIGNAL_JWT_SECRET": "bench-secret-0123456789abcdef0123456789",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    })
    return env


def prepare(database: str, redis_db: int, env: dict[str, str]) -> None:
    """Fresh database (migrated, demo configs seeded) and flushed Redis databases."""
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    for db in (redis_db, redis_db + 1):
        redis.Redis(db=db).flushdb()
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(manage + ["seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def running_stack(env: dict[str, str], workers: int = 1, concurrency: int = 1) -> Iterator[list[subprocess.Popen]]:
    """A bridge and ``workers`` Celery workers; concurrency 1 runs the solo pool (one process), more runs prefork."""
    procs = [subprocess.Popen([sys.executable, "manage.py", "stream_bridge", "--consumer", "bench-bridge"],
                              cwd=ROOT, env=env)]
    for i in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "signal_project", "worker", "-Q", "signals",
             *(["--pool=solo"] if concurrency == 1 else ["--pool=prefork", f"--concurrency={concurrency}"]),
             "-n", f"bench{i}@%h", "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env))
    try:
        time.sleep(4.0)  # imports and connections; the first batches then find everything warm
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
