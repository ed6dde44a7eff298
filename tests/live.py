"""Real processes for tests that need real sockets: the ASGI web process under uvicorn (as the Procfile runs it)
on the test database and Redis, and the demo's bridge and feed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from tests.support import ROOT, stop_process, worker_database_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
           "DATABASE_URL": worker_database_url()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # unless the test gives its processes one to share
    return {**env, **extra}


class LiveProcess:
    """A subprocess whose output is kept in ``lines``."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self) -> None:
        stop_process(self.proc)


class WebProcess(LiveProcess):
    def __init__(self, **extra_env: str):
        self.port = free_port()
        super().__init__([sys.executable, "-m", "uvicorn", "signal_project.asgi:application", "--host", "127.0.0.1",
                          "--port", str(self.port), "--no-access-log", "--lifespan", "off",
                          "--ws-per-message-deflate", "false"], live_env(**extra_env))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("web process exited:\n" + "".join(self.lines[-40:]))
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("web process did not answer /health:\n" + "".join(self.lines[-40:]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        body = urllib.request.urlopen(f"{self.url}/metrics", timeout=5).read().decode()
        values = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " ")]
        return sum(values)


def manage(*args: str, **extra_env: str) -> LiveProcess:
    return LiveProcess([sys.executable, "manage.py", *args], live_env(**extra_env))
