"""Per-call limits of external functions: defaults, accepted ranges and their check.

Config fields map directly: ``external_functions[].timeout`` (seconds) → ``timeout_s``,
``external_functions[].memory_limit_mb`` → ``memory_limit_mb``.  No Django imports (imported by the config
validator and by web processes).
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MEMORY_LIMIT_MB = 128
DEFAULT_MAX_OUTPUT_BYTES = 65536

MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.05, 60.0
MIN_MEMORY_LIMIT_MB, MAX_MEMORY_LIMIT_MB = 16, 4096
MAX_MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


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
    t = _number(timeout)
    if t is None or not MIN_TIMEOUT_S <= t <= MAX_TIMEOUT_S:
        errors.append(f"timeout must be a number of seconds between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S}")
    m = _number(memory_limit_mb)
    if m is None or not MIN_MEMORY_LIMIT_MB <= m <= MAX_MEMORY_LIMIT_MB:
        errors.append(
            f"memory_limit_mb must be a number between {MIN_MEMORY_LIMIT_MB} and {MAX_MEMORY_LIMIT_MB}"
        )
    if cpu_time_s is not None:
        c = _number(cpu_time_s)
        if c is None or not MIN_TIMEOUT_S <= c <= MAX_TIMEOUT_S:
            errors.append(f"cpu_time_s must be None or between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S} seconds")
    if (
        isinstance(max_output_bytes, bool)
        or not isinstance(max_output_bytes, int)
        or not (2 <= max_output_bytes <= MAX_MAX_OUTPUT_BYTES)
    ):
        errors.append(f"max_output_bytes must be an integer between 2 and {MAX_MAX_OUTPUT_BYTES}")
    return errors
