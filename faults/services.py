"""The suite's own Redis server and PostgreSQL cluster, on free ports under a temporary directory, so faults can
kill, stop and restart them without touching anything else on the machine."""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent(user: str | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the suite dies (so nothing outlives a killed run), runs in its
    own process group, and, with ``user``, drops root (PostgreSQL refuses to run as root)."""
    ids = pwd.getpwnam(user) if user else None

    def setup() -> None:
        os.setsid()
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if ids is not None:
            os.setgid(ids.pw_gid)
            os.setuid(ids.pw_uid)

    return setup


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


class RedisServer:
    """redis-server with AOF (``appendfsync always``): what it acknowledged survives a SIGKILL. With ``password``
    it requires one (``requirepass``)."""

    def __init__(self, workdir: Path, password: str | None = None):
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=1)

    def start(self) -> None:
        secured = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "redis.log", *secured],
            preexec_fn=die_with_parent(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.up, 30, "redis-server")

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs (``FAULTS_PG_BIN`` overrides)."""
    if os.environ.get("FAULTS_PG_BIN"):
        return Path(os.environ["FAULTS_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path is None:
        raise RuntimeError("no PostgreSQL server programs found; set FAULTS_PG_BIN")
    return Path(on_path).parent


class PostgresCluster:
    """A throw-away cluster (initdb, trust auth) served by ``postgres`` as the suite's child process."""

    def __init__(self, workdir: Path):
        self.root = workdir / "pg"
        self.data = self.root / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen | None = None

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            ids = pwd.getpwnam(self.user)
            os.chown(self.root, ids.pw_uid, ids.pw_gid)
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], preexec_fn=die_with_parent(self.user), check=True,
                       stdout=subprocess.DEVNULL)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=100", "-c", "fsync=on"],
            preexec_fn=die_with_parent(self.user), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.up, 60, "PostgreSQL")

    def up(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Fast shutdown: sessions are cut, new connections refused until `start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
