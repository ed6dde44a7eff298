"""Technical indicators as a computation (docs/REFERENCE.md §3.3, §3.5, §5; issue 5).

For a config with ``technical_indicators``, the specs are compiled once (`indicators.compute`: a pandas_ta Study,
TA-Lib where pandas_ta supports it) and evaluated on the config's ``interval`` bars from `signals.bars.store`,
with `signals.bars.indicator_history.warmup_bars` bars of warm-up before the bar evaluated.

Once per instrument and config per batch
    Indicators depend on bars, not on single ticks: every tick of an instrument in a batch falls in the same or a
    later bar, so the values are computed once per (instrument, config) on the batch's newest tick of that
    instrument, over the bars up to that tick's time (the open bar included, as of that tick), and the result is
    attached to that tick's record only. Earlier ticks of the instrument in the batch get no indicators entry
    (their other computations still produce records). ``every_interval`` configs (run by the pipeline on the first
    tick after a bar close) are evaluated on the closed bars only, i.e. the bar that just closed is the last one.

Outputs: the computation result (``computation_type`` ``technical_indicators``, name ``technical_indicators``,
results ``{"timeframe", "bar_time", "bars", "warmup_bars", "values": {output_key: number | null}}``) goes to every
sink of docs/REFERENCE.md §3.5 with the record; the latest-indicators cache (per config and per instrument+timeframe, see
`signals.bars.indicator_history.cache_keys`) and the ``indicators`` WebSocket channel via ``ctx.outbox``. Warm-up
bars that do not exist yet give null values, not errors.

The pipeline reports every stored batch to the bars service (`BarsService.queue_record`), which keeps the open bar
in Redis and lets late ticks correct cached bars, so bars read here already include this batch.
"""

from __future__ import annotations

import time
from typing import Any

from configs.registry import ActiveConfig
from feed import keys
from indicators.compute import compile_indicators
from indicators.specs import IndicatorConfigError
from indicators.timeframes import parse_timeframe
from signals.bars.indicator_history import cache_keys, iso, json_bytes, warmup_bars
from signals.bars.rows import bars_frame
from signals.delivery.events import signal_event
from signals.pipeline.computations.results import Result, result
from signals.pipeline.context import BatchContext

NAME = "technical_indicators"


def _bars(ctx: BatchContext, key: str, timeframe: str, until: float, count: int,
          include_open: bool) -> list[list[Any]]:
    """Bars shared by the configs of one batch that evaluate the same instrument, timeframe and tick time."""
    wanted = (key, timeframe, until, include_open, count)
    bars = ctx.indicator_bars.get(wanted)
    if bars is None:
        bars = ctx.indicator_bars[wanted] = ctx.bars_service.recent(key, timeframe, until, count,
                                                                    include_open=include_open)
    return bars


def technical_indicators(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    document = config.document
    specs = document.get("technical_indicators") or []
    out: list[Result | None] = [None] * len(ticks)
    if not specs or not ticks:
        return out
    frequency = str(document.get("frequency", "every_tick"))
    newest: dict[str, int] = {}
    for i, tick in enumerate(ticks):
        held = newest.get(tick["instrument_key"])
        if held is None or tick["ts"] >= ticks[held]["ts"]:
            newest[tick["instrument_key"]] = i
    started = time.perf_counter()
    try:
        timeframe = parse_timeframe(document.get("interval") or "1m").name
        compiled = compile_indicators(specs)
    except (ValueError, IndicatorConfigError) as exc:
        elapsed = (time.perf_counter() - started) * 1000
        for i in newest.values():
            out[i] = result("technical_indicators", NAME, None, elapsed, f"{type(exc).__name__}: {exc}")
        return out
    warmup = warmup_bars(compiled)
    output = document.get("output") or {}
    ttl = int(output.get("cache_ttl_seconds", 300))
    config_id = config.id
    include_open = frequency != "every_interval"
    for key, i in newest.items():
        tick = ticks[i]
        started = time.perf_counter()
        try:
            bars = _bars(ctx, key, timeframe, tick["ts"], warmup + 1, include_open)
            if bars:
                values = compiled.compute_latest(bars_frame(bars))
            else:
                values = dict.fromkeys(compiled.output_keys)
            payload = {"timeframe": timeframe, "bar_time": iso(bars[-1][0]) if bars else None, "bars": len(bars),
                       "warmup_bars": warmup, "values": values}
            out[i] = result("technical_indicators", NAME, payload, (time.perf_counter() - started) * 1000)
        except Exception as exc:  # a failure is this computation's result, never the batch's
            out[i] = result("technical_indicators", NAME, None, (time.perf_counter() - started) * 1000,
                            f"{type(exc).__name__}: {exc}")
            continue
        entry = {"instrument_key": key, "timeframe": timeframe, "timestamp": tick["timestamp"],
                 "bar_time": payload["bar_time"], "config_id": config_id, "config_name": config.name,
                 "values": values, "bars": len(bars), "warmup_bars": warmup}
        text = json_bytes(entry)
        for cache_key in cache_keys(key, timeframe, config_id):
            ctx.outbox.cache_writes.append((cache_key, text, ttl))
        if output.get("websocket", True):
            params = {"timeframe": timeframe}
            ctx.outbox.events.append((keys.topic_group("indicators", key, params),
                                      signal_event("indicators", key, entry, tick["timestamp"], params)))
    return out
