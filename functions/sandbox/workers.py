"""Caller side of one sandbox worker process: start it, greet it, stop or kill it.

A worker is ``python -m functions.sandbox.child`` (see that module for what runs inside), started with a clean
environment (only ``PYTHONPATH`` to this project, locale, ``TZ=UTC``, single-threaded BLAS) in an empty private
temporary directory, in its own session, so that killing its process group also kills the grandchild running user
code.  It speaks length-prefixed JSON over its stdin/stdout pipes (:mod:`functions.sandbox.protocol`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from functions.sandbox.protocol import ProtocolError, read_frame

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerFailed(Exception):
    """The worker process could not be started or stopped answering correctly."""


class WorkerProcess:
    """One persistent sandbox worker process (caller side)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr_path: str) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        assert proc.stdin is not None and proc.stdout is not None
        self.in_fd = proc.stdin.fileno()  # we write requests here
        self.out_fd = proc.stdout.fileno()  # we read replies here
        os.set_blocking(self.in_fd, False)
        os.set_blocking(self.out_fd, False)
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """Process id of the worker."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the worker process has not exited."""
        return self.proc.poll() is None

    def stderr_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` bytes the worker wrote to stderr (start-up tracebacks)."""
        try:
            with open(self.stderr_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """Kill the worker and everything in its process group (grandchildren included); reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.close_pipes()

    def close_pipes(self) -> None:
        """Close our ends of the worker's pipes (the worker exits on EOF)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit (close its request pipe), kill it if it does not."""
        self.close_pipes()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_env() -> dict[str, str]:
    """The whole environment of a worker process (nothing is inherited from the caller)."""
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONPATH": _PROJECT_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[name] = "1"
    return env


def spawn_worker(python_executable: str, tmp: str, worker_id: int, start_timeout_s: float) -> WorkerProcess:
    """Start a worker with its cwd in ``tmp``/cwd and wait up to ``start_timeout_s`` for its ``hello`` frame.

    The hello (what the worker's hardening achieved, its baseline memory) is kept in ``info``.  Raises
    :class:`WorkerFailed` (with the tail of the worker's stderr) when it does not greet in time.
    """
    stderr_path = os.path.join(tmp, f"worker-{worker_id}.stderr")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [python_executable, "-m", "functions.sandbox.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=os.path.join(tmp, "cwd"),
            env=worker_env(),
            close_fds=True,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, stderr_path)
    try:
        hello = read_frame(worker.out_fd, time.monotonic() + start_timeout_s, max_bytes=1 << 20)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise ProtocolError(f"unexpected greeting {hello!r:.200}")
    except ProtocolError as exc:
        worker.kill()
        tail = worker.stderr_tail()
        raise WorkerFailed(
            f"sandbox worker failed to start: {exc}" + (f"; stderr: {tail}" if tail else "")
        ) from exc
    worker.info = hello
    return worker
