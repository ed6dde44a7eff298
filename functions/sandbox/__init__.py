"""Sandbox for uploaded ("external") user functions — docs/REFERENCE.md §3.4.  No Django imports.

Public API:

* :func:`check_source` — upload-time check (syntax, sandbox policy, ``function_name``); returns error messages.
* :func:`run_external` — run ``function_name(tick, bars, params)`` from ``source`` in a separate sandbox process,
  returning an :class:`ExternalResult` (``result`` | ``error``, ``execution_time_ms``, ``killed``).
* :func:`validate_limits` — range check of ``timeout`` / ``memory_limit_mb`` config fields.
* :class:`SandboxPool`, :func:`get_default_pool`, :func:`configure_default_pool`, :func:`shutdown_default_pool`.
* :func:`validate_result`, :class:`ResultError`, :class:`FunctionError` — the result convention shared with
  internal functions (NaN/±inf → ``None``; only flat JSON scalars).

Layers of defence: RestrictedPython compile policy (:mod:`.policy`, :mod:`.rules`), run-time guards and
allow-listed module views (:mod:`.guards`, :mod:`.module_views`, :mod:`.user_globals`), and OS isolation of the
worker process (:mod:`.child`, :mod:`.isolation`: separate process, fork per call, rlimits, wall-clock kill,
best-effort privilege drop and network namespace).
"""

from functions.results import FunctionError, FunctionResult, JSONScalar, ResultError, validate_result
from functions.sandbox.limits import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIMEOUT_S,
    validate_limits,
)
from functions.sandbox.policy import check_function_name, check_source, compile_source
from functions.sandbox.pool import ExternalResult, SandboxPool
from functions.sandbox.rules import ALLOWED_MODULES
from functions.sandbox.runner import (
    configure_default_pool,
    get_default_pool,
    run_external,
    shutdown_default_pool,
)

__all__ = [
    "ALLOWED_MODULES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "ExternalResult",
    "FunctionError",
    "FunctionResult",
    "JSONScalar",
    "ResultError",
    "SandboxPool",
    "check_function_name",
    "check_source",
    "compile_source",
    "configure_default_pool",
    "get_default_pool",
    "run_external",
    "shutdown_default_pool",
    "validate_limits",
    "validate_result",
]
