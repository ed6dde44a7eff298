"""Computations run for each config over a batch of ticks, in the order `COMPUTATIONS` declares.

Each computation is a handler (its contract: `signals.pipeline.computations.results`) turned on by a section of the
config document. The declared order is the order handlers run in and the order of a record's computations; a
computation that reads what another one left on the `BatchContext` for this batch declares it with ``after``, which
is checked when the tuple is built.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from configs.registry import ActiveConfig
from functions import internal as internal_functions
from signals.monitoring import metrics
from signals.pipeline.computations.functions import external, internal
from signals.pipeline.computations.greeks import option_greeks
from signals.pipeline.computations.indicators import technical_indicators
from signals.pipeline.computations.moneyness import moneyness
from signals.pipeline.computations.results import Handler, Result, result
from signals.pipeline.context import BatchContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Computation:
    type: str  # the ``computation_type`` of its results
    section: str  # the config-document section that turns it on
    run: Handler
    after: tuple[str, ...] = ()  # computations whose outputs of the same batch it reads


def ordered(*computations: Computation) -> tuple[Computation, ...]:
    """The computations in run order, after checking each runs after the ones it declares it reads."""
    seen: set[str] = set()
    for computation in computations:
        missing = [name for name in computation.after if name not in seen]
        if missing:
            raise ValueError(f"computation {computation.type!r} reads {missing} but runs before them")
        seen.add(computation.type)
    return computations


COMPUTATIONS = ordered(
    Computation("greeks", "option_greeks", option_greeks),
    Computation("technical_indicators", "technical_indicators", technical_indicators),
    Computation("internal_function", "internal_functions", internal),
    Computation("external_function", "external_functions", external),
    # joins the chain with the Greeks this batch just computed (`BatchContext.fresh_greeks`)
    Computation("moneyness", "moneyness", moneyness, after=("greeks",)),
)
_SECTIONS = {computation.type: computation.section for computation in COMPUTATIONS}


def run_config(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[list[Result]]:
    """Every applicable computation of one config for each tick, in tick order."""
    per_tick: list[list[Result]] = [[] for _ in ticks]
    for computation in COMPUTATIONS:
        computation_type = computation.type
        started = time.perf_counter()
        try:
            outputs = computation.run(config, ticks, ctx)
        except Exception as exc:  # one failing computation never stops the others or the batch
            log.exception("computation failed", extra={"computation_type": computation_type})
            metrics.COMPUTATION_ERRORS.labels(computation_type).inc()
            elapsed = (time.perf_counter() - started) * 1000 / max(len(ticks), 1)
            outputs = [result(computation_type, computation_type, None, elapsed, f"{type(exc).__name__}: {exc}")
                       for _ in ticks] if _applies(computation_type, config.document) else [None] * len(ticks)
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
    value = document.get(_SECTIONS.get(computation_type, computation_type))
    return bool(value.get("enabled", True) if isinstance(value, dict) else value)


def reads_stored_ticks(document: dict[str, Any]) -> bool:
    """Whether a config's computations read bars, which come from the stored ticks: a batch such a config runs on
    must be in the database before its computations start."""
    if _applies("technical_indicators", document) or document.get("external_functions"):
        return True
    return any(internal_functions.needs_bars(entry.get("name", ""))
               for entry in document.get("internal_functions") or [])
