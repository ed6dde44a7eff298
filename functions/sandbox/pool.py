"""A pool of persistent sandbox workers on the caller side, and :class:`ExternalResult`.

Each worker (:mod:`functions.sandbox.workers`) is started lazily on first use and runs every call in a freshly
forked grandchild with that call's limits (:mod:`functions.sandbox.child`).

Failure handling: a timed-out, crashed or memory-killed *grandchild* is reported by the worker (``killed=True``)
and the worker carries on.  If the *worker* itself stops answering within ``timeout_s + backstop_grace_s``,
dies, or breaks the protocol, the caller kills its whole process group, returns an error result and starts a
fresh worker on the next call.  :meth:`SandboxPool.run` never raises for anything user code does.

Thread- and fork-safe: calls from several threads share the pool (one call per worker at a time, up to
``size`` workers); a process that ``fork()``s (Celery prefork) gets a fresh, empty pool in the child.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.results import FunctionResult, ResultError, to_jsonable, validate_result
from functions.sandbox import protocol
from functions.sandbox.limits import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIMEOUT_S,
    validate_limits,
)
from functions.sandbox.policy import check_function_name
from functions.sandbox.workers import WorkerFailed, WorkerProcess, spawn_worker

DEFAULT_POOL_SIZE = 2

BACKSTOP_GRACE_S = 2.0
"""Extra time the caller waits for a worker's answer beyond ``timeout_s`` before killing the worker."""


@dataclass(frozen=True)
class ExternalResult:
    """Outcome of one external-function call.

    Exactly one of ``result`` (a validated flat JSON object, see :func:`functions.results.validate_result`)
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
        self._idle: list[WorkerProcess] = []
        self._all: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()  # idle and busy (for fork clean-up)
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

    def _spawn(self) -> WorkerProcess:
        worker = spawn_worker(self.python_executable, self._tmpdir(), next(self._ids), self.start_timeout_s)
        self.last_info = dict(worker.info)
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

    def _acquire(self) -> WorkerProcess:
        deadline = time.monotonic() + self.acquire_timeout_s
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerFailed("sandbox pool is shut down")
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
                    raise WorkerFailed("all sandbox workers are busy")
                self._cond.wait(remaining)
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: WorkerProcess, healthy: bool) -> None:
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

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._closed

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
        return self._call(frame, request["id"], timeout_s, max_output_bytes)

    def _call(self, frame: bytes, request_id: int, timeout_s: float, max_output_bytes: int) -> ExternalResult:
        """Send one encoded request to a free worker; a worker that misses the backstop deadline is killed."""
        try:
            worker = self._acquire()
        except WorkerFailed as exc:
            return ExternalResult(None, str(exc), 0.0)
        started = time.monotonic()
        deadline = started + float(timeout_s) + self.backstop_grace_s
        healthy = False
        try:
            protocol.write_frame(worker.in_fd, frame, deadline)
            reply = protocol.read_frame(worker.out_fd, deadline, max_bytes=2 * max_output_bytes + (1 << 20))
            if not isinstance(reply, dict) or reply.get("id") != request_id:
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
        return _result_from_reply(reply, (time.monotonic() - started) * 1000)


def _result_from_reply(reply: dict[str, Any], elapsed_ms: float) -> ExternalResult:
    """The worker's answer as an :class:`ExternalResult`; the result is validated again on this side."""
    if not reply.get("ok"):
        return ExternalResult(
            None, str(reply.get("error") or "unknown error"), elapsed_ms, bool(reply.get("killed"))
        )
    try:
        result = validate_result(reply.get("result"))
    except ResultError as exc:
        return ExternalResult(None, f"invalid result: {exc}", elapsed_ms)
    return ExternalResult(result, None, elapsed_ms)


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
