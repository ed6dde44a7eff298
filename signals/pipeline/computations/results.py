"""What a computation handler is given and returns (the contract of `signals.pipeline.computations.COMPUTATIONS`).

A handler is called once per config and batch with the config (`configs.registry.ActiveConfig`: id, name and
document), the ticks of the batch that config matched (in tick-time order) and the batch's `BatchContext`. It
returns one entry per tick: a computation-result dict (`result`), a list of them, or None when the computation does
not apply to that tick (e.g. Greeks for a spot tick). A handler that raises fails only its own results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from configs.registry import ActiveConfig
from signals.pipeline.context import BatchContext

Result = dict[str, Any]
Handler = Callable[[ActiveConfig, list[dict[str, Any]], BatchContext], list[Result | list[Result] | None]]


def result(computation_type: str, name: str, results: Any, elapsed_ms: float, error: str | None = None) -> Result:
    return {
        "computation_type": computation_type,
        "name": name,
        "results": results,
        "execution_time_ms": round(elapsed_ms, 4),
        "success": error is None,
        "error": error,
    }
