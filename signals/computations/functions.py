"""Internal functions (registered in code) and external ones (uploaded, run in the sandbox) as computations."""

from __future__ import annotations

import time
from typing import Any

from configs import functions
from signals.computations import BatchContext, Result, handler, result


def _tick_view(tick: dict[str, Any], ctx: BatchContext) -> dict[str, Any]:
    previous = ctx.previous.get(tick["source_id"])
    view = dict(tick)
    view["previous"] = {"ltp": previous["ltp"], "timestamp": previous["timestamp"]} if previous else None
    return view


@handler("internal_function")
def internal(document: dict[str, Any], ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    entries = document.get("internal_functions") or []
    if not entries:
        return [None] * len(ticks)
    out: list[list[Result]] = []
    for tick in ticks:
        view = _tick_view(tick, ctx)
        items: list[Result] = []
        for entry in entries:
            name = entry["name"]
            bars = ctx.bars(tick["instrument_key"], document["interval"], tick["ts"]) if functions.needs_bars(name) else []
            started = time.perf_counter()
            try:
                value = functions.call_internal(name, view, bars, entry.get("parameters") or {})
                items.append(result("internal_function", entry.get("output_key") or name, value,
                                    (time.perf_counter() - started) * 1000))
            except Exception as exc:
                items.append(result("internal_function", entry.get("output_key") or name, None,
                                    (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"))
        out.append(items)
    return out
