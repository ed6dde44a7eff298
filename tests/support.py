"""Plain helpers shared by the tests (fixtures live in conftest.py): the project root, the real worker and
subprocess handling, waiting for a condition."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signals

ROOT = Path(__file__).resolve().parent.parent


def worker_database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def stop_process(proc: subprocess.Popen, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) a test's subprocess and wait for it; kill it if it will not stop."""
    if proc.poll() is None:
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class CeleryProcess:
    """A real ``celery`` subprocess (worker or beat) on the test database and Redis, its output kept in ``lines``."""

    def __init__(self, args: list[str], extra_env: dict[str, str] | None = None):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
               "DATABASE_URL": worker_database_url(), **(extra_env or {})}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "signal_project", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.heard(line)

    def heard(self, line: str) -> None:
        """Called with every output line (after it is kept)."""

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill=kill)


class WorkerProcess(CeleryProcess):
    """A `celery worker` (solo pool) on the given queues."""

    def __init__(self, queues: str, name: str = "w1", extra_env: dict[str, str] | None = None,
                 concurrency: int | None = None):
        self.ready = threading.Event()
        reserve = ["--concurrency", str(concurrency)] if concurrency else []  # a solo pool's prefetch
        super().__init__(["worker", "-Q", queues, "--pool=solo", "-n", f"{name}@%h", "-l", "INFO",
                          "--without-gossip", "--without-mingle", "--without-heartbeat", *reserve], extra_env)

    def heard(self, line: str) -> None:
        if " ready." in line or "ready" in line and "celery@" in line:
            self.ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        if not self.ready.wait(timeout):
            self.stop()
            raise AssertionError("celery worker did not start:\n" + "".join(self.lines[-40:]))


# How a batch writes ticks: a COPY, or the INSERT of the conflict-skipping path (for `waiting_on_locks`)
TICK_WRITES = ("COPY signal_ticks", "INSERT INTO signal_ticks")


def waiting_on_locks(conn: Any, *statements: str) -> int:
    """Sessions waiting for a lock while running a statement that starts with one of ``statements`` (e.g.
    ``'INSERT INTO "signal_instruments"'``): how a test knows a worker is held where it wants it."""
    clauses = " OR ".join(["query LIKE %s"] * len(statements))
    row = conn.execute(f"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND ({clauses})",
                       [f"{statement}%" for statement in statements]).fetchone()
    return int(row[0])


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def start_bridge(name: str, **env: str) -> subprocess.Popen:
    """A ``manage.py stream_bridge`` process (consumer ``name``) on the test settings, with ``env`` added."""
    return subprocess.Popen([sys.executable, "manage.py", "stream_bridge", "--consumer", name], cwd=ROOT,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
                                 "DATABASE_URL": worker_database_url(), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def consumer_pending(r: Any, stream: str, consumer: str, group: str = "signal_service") -> int:
    """How many entries of ``stream`` the consumer holds pending (0 for an unknown consumer)."""
    found = [c for c in r.xinfo_consumers(stream, group) if c["name"] == consumer.encode()]
    return int(found[0]["pending"]) if found else 0


@contextmanager
def finished_requests() -> Iterator[list[Any]]:
    """The senders of ``request_finished`` while open."""
    found: list[Any] = []

    def note(sender: Any, **kwargs: Any) -> None:
        found.append(sender)

    signals.request_finished.connect(note)
    try:
        yield found
    finally:
        signals.request_finished.disconnect(note)
