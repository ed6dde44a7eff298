"""Caller side of the sandbox: a small pool of persistent worker processes and :func:`run_external`.

Each worker is ``python -m functions.sandbox.child`` (see that module for what runs inside), started lazily on
first use with a clean environment (only ``PYTHONPATH`` to this project, locale, ``TZ=UTC``, single-threaded BLAS)
in an empty private temporary directory, in its own session.  It speaks length-prefixed JSON over its
stdin/stdout pipes (:mod:`functions.sandbox.protocol`) and runs every call in a freshly forked grandchild with that
call's limits.

Failure handling: a timed-out, crashed or memory-killed *grandchild* is reported by the worker (``killed=True``)
and the worker carries on.  If the *worker* itself stops answering within ``timeout_s + backstop_grace_s``,
dies, or breaks the protocol, the caller kills its whole process group, returns an error result and starts a
fresh worker on the next call.  :func:`run_external` never raises for anything user code does.

Thread- and fork-safe: calls from several threads share the pool (one call per worker at a time, up to
``size`` workers); a process that ``fork()``s (Celery prefork) gets a fresh, empty pool in the child.

No Django imports (the lead wires config fields to the arguments: config ``timeout`` → ``timeout_s``,
``memory_limit_mb`` → ``memory_limit_mb``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.sandbox import protocol
from functions.sandbox.policy import check_function_name
from functions.sandbox.results import FunctionResult, ResultError, to_jsonable, validate_result

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MEMORY_LIMIT_MB = 128
DEFAULT_MAX_OUTPUT_BYTES = 65536
DEFAULT_POOL_SIZE = 2

MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.05, 60.0
MIN_MEMORY_LIMIT_MB, MAX_MEMORY_LIMIT_MB = 16, 4096
MAX_MAX_OUTPUT_BYTES = 16 * 1024 * 1024

BACKSTOP_GRACE_S = 2.0
"""Extra time the caller waits for a worker's answer beyond ``timeout_s`` before killing the worker."""

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class ExternalResult:
    """Outcome of one external-function call.

    Exactly one of ``result`` (a validated flat JSON object, see :func:`functions.sandbox.results.validate_result`)
    and ``error`` (a human-readable message) is set.  ``execution_time_ms`` is the wall time of the call as seen by
    the caller (request sent → answer received; excludes waiting for / starting a worker).  ``killed`` is True
    when the process running the user code had to be terminated (wall-clock timeout, CPU limit, crash, output
    overflow, unresponsive worker) rather than returning or raising.
    """

    result: FunctionResult | None
    error: str | None
    execution_time_ms: float
    killed: bool = False

    @property
    def ok(self) -> bool:
        """True when the function returned a valid result."""
        return self.error is None


def validate_limits(
    timeout: Any = DEFAULT_TIMEOUT_S,
    memory_limit_mb: Any = DEFAULT_MEMORY_LIMIT_MB,
    *,
    cpu_time_s: Any = None,
    max_output_bytes: Any = DEFAULT_MAX_OUTPUT_BYTES,
) -> list[str]:
    """Return error messages (naming the config field) for out-of-range limits; empty when all are acceptable.

    Ranges: ``timeout`` 0.05–60 s, ``memory_limit_mb`` 16–4096, ``cpu_time_s`` None or 0.05–60,
    ``max_output_bytes`` 2–16 MiB.
    """
    errors: list[str] = []

    def number(value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    t = number(timeout)
    if t is None or not MIN_TIMEOUT_S <= t <= MAX_TIMEOUT_S:
        errors.append(f"timeout must be a number of seconds between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S}")
    m = number(memory_limit_mb)
    if m is None or not MIN_MEMORY_LIMIT_MB <= m <= MAX_MEMORY_LIMIT_MB:
        errors.append(
            f"memory_limit_mb must be a number between {MIN_MEMORY_LIMIT_MB} and {MAX_MEMORY_LIMIT_MB}"
        )
    if cpu_time_s is not None:
        c = number(cpu_time_s)
        if c is None or not MIN_TIMEOUT_S <= c <= MAX_TIMEOUT_S:
            errors.append(f"cpu_time_s must be None or between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S} seconds")
    if (
        isinstance(max_output_bytes, bool)
        or not isinstance(max_output_bytes, int)
        or not (2 <= max_output_bytes <= MAX_MAX_OUTPUT_BYTES)
    ):
        errors.append(f"max_output_bytes must be an integer between 2 and {MAX_MAX_OUTPUT_BYTES}")
    return errors


class _WorkerFailed(Exception):
    """The worker process could not be started or stopped answering correctly."""


class _Worker:
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


_live_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


class SandboxPool:
    """A pool of up to ``size`` persistent sandbox worker processes, started on demand.

    ``python_executable`` must be a Python with this project's dependencies (default: ``sys.executable``; set it
    when embedding, e.g. under uWSGI).  ``start_timeout_s`` bounds worker start-up (imports numpy/pandas, ~1 s);
    ``acquire_timeout_s`` bounds waiting for a free worker when all are busy; ``backstop_grace_s`` is added to a
    call's ``timeout_s`` before an unresponsive worker is killed.
    """

    def __init__(
        self,
        size: int = DEFAULT_POOL_SIZE,
        *,
        python_executable: str | None = None,
        start_timeout_s: float = 60.0,
        acquire_timeout_s: float = 60.0,
        backstop_grace_s: float = BACKSTOP_GRACE_S,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.python_executable = python_executable or sys.executable
        self.start_timeout_s = start_timeout_s
        self.acquire_timeout_s = acquire_timeout_s
        self.backstop_grace_s = backstop_grace_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: weakref.WeakSet[_Worker] = weakref.WeakSet()  # idle and busy (for fork clean-up)
        self._count = 0  # workers alive or being started
        self._ids = itertools.count(1)
        self._pid = os.getpid()
        self._closed = False
        self._tmp: str | None = None
        self.last_info: dict[str, Any] = {}
        _live_pools.add(self)

    # -- worker management ------------------------------------------------------------------------------------

    def _tmpdir(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="signal-sandbox-")
            os.mkdir(os.path.join(self._tmp, "cwd"), 0o700)
        return self._tmp

    def _env(self) -> dict[str, str]:
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

    def _spawn(self) -> _Worker:
        tmp = self._tmpdir()
        stderr_path = os.path.join(tmp, f"worker-{next(self._ids)}.stderr")
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [self.python_executable, "-m", "functions.sandbox.child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=os.path.join(tmp, "cwd"),
                env=self._env(),
                close_fds=True,
                start_new_session=True,
            )
        worker = _Worker(proc, stderr_path)
        try:
            hello = protocol.read_frame(
                worker.out_fd, time.monotonic() + self.start_timeout_s, max_bytes=1 << 20
            )
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                raise protocol.ProtocolError(f"unexpected greeting {hello!r:.200}")
        except protocol.ProtocolError as exc:
            worker.kill()
            tail = worker.stderr_tail()
            raise _WorkerFailed(
                f"sandbox worker failed to start: {exc}" + (f"; stderr: {tail}" if tail else "")
            ) from exc
        worker.info = hello
        self.last_info = dict(hello)
        self._all.add(worker)
        return worker

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        """Forget workers inherited from the parent process (they belong to it); start afresh."""
        self._cond = threading.Condition()
        # Idle *and* busy workers: our copies of their pipes must not keep them alive.
        for worker in list(self._all):
            worker.close_pipes()
            worker.proc.returncode = 0  # not our child: never wait for it
        self._all = weakref.WeakSet()
        self._idle = []
        self._count = 0
        self._pid = os.getpid()
        self._tmp = None

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + self.acquire_timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise _WorkerFailed("sandbox pool is shut down")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._count -= 1
                    worker.kill()
                if self._count < self.size:
                    self._count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _WorkerFailed("all sandbox workers are busy")
                self._cond.wait(remaining)
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        keep = False
        with self._cond:
            if healthy and not self._closed and os.getpid() == self._pid:
                self._idle.append(worker)
                keep = True
            else:
                self._count -= 1
            self._cond.notify()
        if healthy and not keep:
            worker.stop()

    def warm_up(self) -> None:
        """Start all ``size`` workers now (e.g. in a Celery ``worker_process_init`` hook)."""
        self._check_fork()
        workers = []
        try:
            for _ in range(self.size):
                with self._cond:
                    if self._count >= self.size:
                        break
                    self._count += 1
                try:
                    workers.append(self._spawn())
                except BaseException:
                    with self._cond:
                        self._count -= 1
                    raise
        finally:
            for worker in workers:
                self._release(worker, True)

    def worker_pids(self) -> list[int]:
        """PIDs of the currently idle workers (diagnostics and tests)."""
        with self._cond:
            return [w.pid for w in self._idle]

    def shutdown(self) -> None:
        """Stop all idle workers and remove the temporary directory; later calls return errors."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        if os.getpid() == self._pid:
            for worker in idle:
                worker.stop()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- calls -------------------------------------------------------------------------------------------------

    def run(
        self,
        source: str,
        function_name: str,
        tick: Mapping[str, Any],
        bars: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        cpu_time_s: float | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> ExternalResult:
        """Run ``function_name(tick, bars, params)`` from ``source`` in a sandbox worker (see :func:`run_external`)."""
        limit_errors = validate_limits(
            timeout_s, memory_limit_mb, cpu_time_s=cpu_time_s, max_output_bytes=max_output_bytes
        )
        if limit_errors:
            raise ValueError("; ".join(limit_errors))
        name_error = check_function_name(function_name)
        if name_error:
            return ExternalResult(None, name_error, 0.0)
        if not isinstance(source, str):
            return ExternalResult(None, "source must be a string", 0.0)
        request = {
            "source": source,
            "function_name": function_name,
            "tick": tick,
            "bars": bars,
            "params": params,
            "timeout_s": float(timeout_s),
            "memory_limit_mb": int(math.ceil(memory_limit_mb)),
            "cpu_time_s": cpu_time_s,
            "max_output_bytes": int(max_output_bytes),
        }
        self._check_fork()
        request["id"] = next(self._ids)
        try:
            frame = protocol.encode_frame(request, default=to_jsonable)
        except (TypeError, ValueError) as exc:
            return ExternalResult(None, f"tick, bars and params must be JSON-serialisable: {exc}", 0.0)
        try:
            worker = self._acquire()
        except _WorkerFailed as exc:
            return ExternalResult(None, str(exc), 0.0)
        started = time.monotonic()
        deadline = started + float(timeout_s) + self.backstop_grace_s
        healthy = False
        try:
            protocol.write_frame(worker.in_fd, frame, deadline)
            reply = protocol.read_frame(worker.out_fd, deadline, max_bytes=2 * max_output_bytes + (1 << 20))
            if not isinstance(reply, dict) or reply.get("id") != request["id"]:
                raise protocol.ProtocolError("reply does not match the request")
            healthy = True
        except protocol.FrameTimeout:
            elapsed = (time.monotonic() - started) * 1000
            return ExternalResult(
                None,
                f"sandbox worker did not answer within {timeout_s:g} s (+ grace); worker killed",
                elapsed,
                True,
            )
        except protocol.ProtocolError as exc:
            elapsed = (time.monotonic() - started) * 1000
            return ExternalResult(None, f"sandbox worker failed: {exc}; worker restarted", elapsed, True)
        finally:
            self._release(worker, healthy)
        elapsed = (time.monotonic() - started) * 1000
        if not reply.get("ok"):
            return ExternalResult(
                None, str(reply.get("error") or "unknown error"), elapsed, bool(reply.get("killed"))
            )
        try:
            result = validate_result(reply.get("result"))
        except ResultError as exc:
            return ExternalResult(None, f"invalid result: {exc}", elapsed)
        return ExternalResult(result, None, elapsed)


# -- module-level default pool -----------------------------------------------------------------------------------

_default_pool: SandboxPool | None = None
_default_lock = threading.Lock()


def get_default_pool() -> SandboxPool:
    """The process-wide pool used by :func:`run_external` (created on first use, ``DEFAULT_POOL_SIZE`` workers)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool._closed:
            _default_pool = SandboxPool()
        return _default_pool


def configure_default_pool(size: int = DEFAULT_POOL_SIZE, **kwargs: Any) -> SandboxPool:
    """Replace the default pool (shutting the old one down) with ``SandboxPool(size, **kwargs)``."""
    global _default_pool
    with _default_lock:
        old, _default_pool = _default_pool, SandboxPool(size, **kwargs)
    if old is not None:
        old.shutdown()
    return _default_pool


def shutdown_default_pool() -> None:
    """Stop the default pool's workers (registered with ``atexit``)."""
    global _default_pool
    with _default_lock:
        pool, _default_pool = _default_pool, None
    if pool is not None:
        pool.shutdown()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_live_pools):
        pool._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown_default_pool)


def run_external(
    source: str,
    function_name: str,
    tick: Mapping[str, Any],
    bars: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
    cpu_time_s: float | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    pool: SandboxPool | None = None,
) -> ExternalResult:
    """Run an uploaded function ``function_name(tick, bars, params)`` defined in ``source`` in a sandbox process.

    Never executes user code in the calling process and never raises because of anything user code does: every
    failure (compile error, exception, timeout, memory/CPU limit, crash, invalid or oversized result, dead worker)
    comes back as ``ExternalResult(error=…)``.  Raises ``ValueError`` only for out-of-range limit arguments
    (programmer error; see :func:`validate_limits`).

    Limits: ``timeout_s`` wall-clock seconds (config field ``timeout``), enforced by SIGKILL;
    ``memory_limit_mb`` (config field ``memory_limit_mb``) of address space *on top of* the preloaded
    interpreter + numpy + pandas baseline (RLIMIT_AS); ``cpu_time_s`` CPU seconds (RLIMIT_CPU, whole seconds,
    rounded up; default ``ceil(timeout_s) + 1`` as a backstop); ``max_output_bytes`` the size of the result as
    compact JSON.  Inputs must be JSON-serialisable (datetimes, Decimals and numpy values are converted).
    """
    return (pool or get_default_pool()).run(
        source,
        function_name,
        tick,
        bars,
        params,
        timeout_s=timeout_s,
        memory_limit_mb=memory_limit_mb,
        cpu_time_s=cpu_time_s,
        max_output_bytes=max_output_bytes,
    )
