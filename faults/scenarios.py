"""The faults. Each injects one into the running suite and returns when it is over (the process is started again,
the server is back): ``(what happened, notes)``. Killed processes are started again by the supervisor after its
restart delay, as a process manager would."""

from __future__ import annotations

import os
import random
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis

from faults.services import PostgresCluster, RedisServer, wait_until
from faults.stack import Stack, children


@dataclass
class Suite:
    stack: Stack
    redis_server: RedisServer
    postgres: PostgresCluster
    db_url: str
    web_port: int
    beat_lock_key: str

    def web_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    inject: Callable[[Suite], str]


def _kill_and_wait_back(suite: Suite, name: str, group: bool = False) -> str:
    process = suite.stack[name]
    old_pid = process.pid
    process.kill(signal.SIGKILL, group=group)
    wait_until(lambda: process.alive() and process.pid != old_pid, 30, f"{name} restart")
    return f"pid {old_pid} killed, {name} started again"


def kill_bridge(suite: Suite) -> str:
    return _kill_and_wait_back(suite, "bridge")


def kill_worker(suite: Suite) -> str:
    """The worker's main process only: its pool children are orphaned; what they do then is part of the test.
    Any still running after 10 s are killed, so they cannot outlive the scenario."""
    pool = children(suite.stack["worker"].pid)
    note = _kill_and_wait_back(suite, "worker")
    started = time.monotonic()
    while time.monotonic() - started < 10 and any(_running(pid) for pid in pool):
        time.sleep(0.2)
    left = [pid for pid in pool if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    if left:
        return f"{note}; {len(left)} orphaned pool children still running after 10 s were killed"
    return f"{note}; its {len(pool)} pool children exited within {time.monotonic() - started:.1f} s"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_worker_group(suite: Suite) -> str:
    # the whole worker, as when its container dies: the main process and its pool children
    return _kill_and_wait_back(suite, "worker", group=True)


def kill_worker_child(suite: Suite) -> str:
    pool = children(suite.stack["worker"].pid)
    if not pool:
        return "no pool child found"
    victim = random.choice(pool)
    try:
        os.kill(victim, signal.SIGKILL)
    except ProcessLookupError:
        return f"pool child {victim} had exited already"
    return f"pool child {victim} killed; the worker forks another"


def kill_web(suite: Suite) -> str:
    started = time.monotonic()
    note = _kill_and_wait_back(suite, "web")
    wait_until(suite.web_answers, 60, "web")
    return f"{note}; /health answers again after {time.monotonic() - started:.1f} s"


def kill_beat(suite: Suite) -> str:
    lock = redis.Redis.from_url(suite.redis_server.url(0))
    holder = lock.get(suite.beat_lock_key)
    started = time.monotonic()
    note = _kill_and_wait_back(suite, "beat")

    def taken_over() -> bool:
        now = lock.get(suite.beat_lock_key)
        return now is not None and now != holder

    # the dead beat's lock lives out its TTL; the new beat then takes it
    wait_until(taken_over, 120, "the new beat's lock")
    return f"{note}; the new beat holds the lock after {time.monotonic() - started:.1f} s"


def restart_postgres(suite: Suite) -> str:
    suite.postgres.stop()
    time.sleep(3.0)
    suite.postgres.start()
    return "PostgreSQL shut down (connections refused) for 3 s, then started"


def slow_postgres(suite: Suite) -> str:
    with psycopg.connect(suite.db_url) as conn:
        conn.execute("LOCK TABLE signal_ticks IN ACCESS EXCLUSIVE MODE")
        time.sleep(6.0)
    return "signal_ticks locked (ACCESS EXCLUSIVE) for 6 s"


def restart_redis(suite: Suite) -> str:
    suite.redis_server.kill()
    time.sleep(2.0)
    suite.redis_server.start()
    return "Redis SIGKILLed, started again on its AOF after 2 s"


def none(suite: Suite) -> str:
    return "no fault"


SCENARIOS = [
    Scenario("baseline", "none", none),
    Scenario("bridge-kill", "SIGKILL of the bridge", kill_bridge),
    Scenario("worker-kill", "SIGKILL of the worker's main process", kill_worker),
    Scenario("worker-group-kill", "SIGKILL of the whole worker (main process and pool children)", kill_worker_group),
    Scenario("worker-child-kill", "SIGKILL of one worker pool child", kill_worker_child),
    Scenario("web-kill", "SIGKILL of web", kill_web),
    Scenario("beat-kill", "SIGKILL of beat", kill_beat),
    Scenario("postgres-restart", "PostgreSQL refusing connections 3 s, restarted", restart_postgres),
    Scenario("postgres-slow", "signal_ticks locked for 6 s", slow_postgres),
    Scenario("redis-restart", "Redis SIGKILLed, restarted after 2 s (AOF always)", restart_redis),
]


def by_name(names: list[str]) -> list[Scenario]:
    known: dict[str, Any] = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
