"""The process-wide default sandbox pool and :func:`run_external`, the call the pipeline makes.

No Django imports (the lead wires config fields to the arguments: config ``timeout`` → ``timeout_s``,
``memory_limit_mb`` → ``memory_limit_mb``).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from functions.sandbox.limits import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIMEOUT_S
from functions.sandbox.pool import DEFAULT_POOL_SIZE, ExternalResult, SandboxPool

_default_pool: SandboxPool | None = None
_default_lock = threading.Lock()


def get_default_pool() -> SandboxPool:
    """The process-wide pool used by :func:`run_external` (created on first use, ``DEFAULT_POOL_SIZE`` workers)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool.closed:
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
