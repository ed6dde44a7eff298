"""Computations run for each config over a batch of ticks.

A handler takes ``(config document, ticks, context)`` and returns one entry per tick: a computation-result dict,
a list of them, or None when the computation does not apply to that tick (e.g. Greeks for a spot tick). Handlers
are registered per config section in `HANDLERS`; a handler that raises fails only its own results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from signals.monitoring import metrics
from signals.pipeline.context import BatchContext

log = logging.getLogger(__name__)

Result = dict[str, Any]
Handler = Callable[[dict[str, Any], list[dict[str, Any]], BatchContext], list[Result | list[Result] | None]]
HANDLERS: list[tuple[str, Handler]] = []


def handler(computation_type: str) -> Callable[[Handler], Handler]:
    def decorate(fn: Handler) -> Handler:
        HANDLERS.append((computation_type, fn))
        return fn

    return decorate


def result(computation_type: str, name: str, results: Any, elapsed_ms: float, error: str | None = None) -> Result:
    return {
        "computation_type": computation_type,
        "name": name,
        "results": results,
        "execution_time_ms": round(elapsed_ms, 4),
        "success": error is None,
        "error": error,
    }


def run_config(document: dict[str, Any], ticks: list[dict[str, Any]], ctx: BatchContext) -> list[list[Result]]:
    """Every applicable computation of one config for each tick, in tick order."""
    load_handlers()
    per_tick: list[list[Result]] = [[] for _ in ticks]
    for computation_type, fn in HANDLERS:
        started = time.perf_counter()
        try:
            outputs = fn(document, ticks, ctx)
        except Exception as exc:  # one failing computation never stops the others or the batch
            log.exception("computation failed", extra={"computation_type": computation_type})
            metrics.COMPUTATION_ERRORS.labels(computation_type).inc()
            elapsed = (time.perf_counter() - started) * 1000 / max(len(ticks), 1)
            outputs = [result(computation_type, computation_type, None, elapsed, f"{type(exc).__name__}: {exc}")
                       for _ in ticks] if _applies(computation_type, document) else [None] * len(ticks)
        metrics.COMPUTATION_SECONDS.labels(computation_type).observe(time.perf_counter() - started)
        for slot, output in zip(per_tick, outputs, strict=True):
            if output is None:
                continue
            items = output if isinstance(output, list) else [output]
            for item in items:
                if not item["success"]:
                    metrics.COMPUTATION_ERRORS.labels(computation_type).inc()
            slot.extend(items)
    return per_tick


def _applies(computation_type: str, document: dict[str, Any]) -> bool:
    section = {
        "greeks": "option_greeks", "technical_indicators": "technical_indicators",
        "internal_function": "internal_functions", "external_function": "external_functions",
        "moneyness": "moneyness",
    }.get(computation_type, computation_type)
    value = document.get(section)
    return bool(value.get("enabled", True) if isinstance(value, dict) else value)


def reads_stored_ticks(document: dict[str, Any]) -> bool:
    """Whether a config's computations read bars, which come from the stored ticks: a batch such a config runs on
    must be in the database before its computations start."""
    if _applies("technical_indicators", document) or document.get("external_functions"):
        return True
    from functions import internal as functions

    return any(functions.needs_bars(entry.get("name", "")) for entry in document.get("internal_functions") or [])


_loaded = False


def load_handlers() -> None:
    """Import the handler modules once (they register themselves), in output order."""
    global _loaded
    if _loaded:
        return
    import importlib

    for module in ("greeks", "indicators", "functions", "moneyness"):
        try:
            importlib.import_module(f"signals.pipeline.computations.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"signals.pipeline.computations.{module}":
                raise
    _loaded = True
