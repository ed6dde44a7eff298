"""Processing of one tick batch (one underlying's ticks from one bridge read): read what it needs, update latest
values, run every matching config (every-tick, and every-interval on a bar close), write the outputs, store the
ticks and results, record open bars. Plain function, called by the Celery task and by tests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from configs.frequency import bar_close_crossings
from configs.registry import ActiveConfig, registry
from configs.runs import note_records
from feed.instruments import key_matches
from feed.latest import LatestStore
from feed.redis_client import get_redis
from signals import storage
from signals.delivery import outputs
from signals.delivery.outputs import Outbox
from signals.ingest.entries import acknowledge
from signals.instrument_registry import register_instruments
from signals.monitoring import metrics
from signals.pipeline.batch_reads import read_batch
from signals.pipeline.computations import reads_stored_ticks, run_config
from signals.pipeline.context import BatchContext
from signals.storage import ticks_before as stored_before

log = logging.getLogger(__name__)
Matched = dict[int, tuple[ActiveConfig, list[dict[str, Any]]]]  # config id -> (config, its ticks in tick order)


@dataclass
class BatchReport:
    ticks: int
    stored: int
    records: int


def process_batch(ticks: list[dict[str, Any]], frequency: str = "every_tick",
                  then: Callable[[Any], None] | None = None) -> BatchReport:
    """Process normalised ticks (each with a ``source_id``). Safe to repeat: a re-delivered batch adds no rows and
    cannot move latest values backwards. Ticks marked ``context`` (another underlying's, e.g. INDVIX, which the
    bridge sends along: `signals.ingest.waits`) only update latest values and history; their own batch does the rest.

    Order: read what the batch needs from Redis; update latest values; run the configs; send the results to the
    Redis sinks; then, in one transaction, store the raw ticks (durably) and the results; then report the stored
    ticks to the bars service; last, acknowledge the ticks' stream entries. Live consumers thus never wait for
    PostgreSQL. When a matching config reads bars (which come from the stored ticks), the ticks are stored and
    reported first instead, so its bars include them. ``then(pipe)`` queues Redis commands to run after the
    acknowledgement, in its round trip (the worker marks the underlying's turn done there).
    """
    started = time.perf_counter()
    context = [tick for tick in ticks if tick.get("context")]  # another underlying's ticks, for latest values only
    if context:
        ticks = [tick for tick in ticks if not tick.get("context")]
    if len({tick["source_id"] for tick in ticks}) < len(ticks):  # an entry twice: its outputs would be written twice
        ticks = list({tick["source_id"]: tick for tick in ticks}.values())
    client = get_redis()
    latest = LatestStore(client)
    instrument_keys = list(dict.fromkeys(t["instrument_key"] for t in ticks))
    reads = read_batch(client, instrument_keys)
    registry.refresh(reads.version)
    timeframes = reads.timeframes
    ctx = BatchContext(client=client, latest=latest, previous=previous_ticks(ticks, reads.held, stored_before),
                       outbox=Outbox(listened=reads.listened),
                       held_ts={k: tick["ts"] for k, tick in reads.held.items()})
    bars = ctx.bars_service

    matched = [match_configs(ticks, frequency)]
    if frequency == "every_tick":
        matched.append(_bar_close_ticks(match_configs(ticks, "every_interval"), ctx))
    early = any(reads_stored_ticks(config.document) for group in matched for config, _ in group.values())
    stored = storage.store_ticks(ticks) if early else None
    register_instruments(instrument_keys)
    pipe = client.pipeline(transaction=False)
    latest.update(ticks + context, pipe=pipe)
    if early:
        bars.queue_record(pipe, ticks, timeframes)  # open bars, and late ticks correcting cached bars
    pipe.execute()

    records = [record for group in matched for record in run_grouped(group, ctx)]
    rows = outputs.emit(records, client, ctx.outbox, group=settings.SIGNAL_CONSUMER_GROUP)
    if stored is None:  # one commit: the raw ticks (durable) and their results
        stored = storage.store(storage.tick_rows(ticks), *outputs.result_rows(rows, ctx.outbox))[0]
    else:  # the ticks are committed already; results can be recomputed from them
        storage.store(*outputs.result_rows(rows, ctx.outbox), durable=False)
    pipe = client.pipeline(transaction=False)
    if not early:
        # only now: a bar read between the two could otherwise cache bars that lack these ticks
        bars.queue_record(pipe, ticks, timeframes)
    # done: nothing of it is lost from here on (one round trip with the bars, and ``then``)
    acknowledge(client, settings.SIGNAL_CONSUMER_GROUP, ticks, republish=settings.SIGNAL_REPUBLISH_PROCESSED,
                pipe=pipe, then=then)
    _note_runs(records)
    _observe(ticks, started)
    return BatchReport(ticks=len(ticks), stored=stored, records=len(records))


def run_configs(configs: list[ActiveConfig], ticks: list[dict[str, Any]],
                previous: dict[str, dict[str, Any] | None] | None = None, run: str = "") -> list[outputs.Record]:
    """Run the given configs on ticks already stored and held as latest values, each config on the ticks it
    matches, and write their outputs exactly as a batch would. Used by time-driven runs, which recompute configs
    from the latest tick of every matching instrument; ``run`` names the run's schedule period: its outputs are
    written once (a retried task or an overlapping beat writes nothing more). Returns the records."""
    client = get_redis()
    ctx = BatchContext(client=client, latest=LatestStore(client), previous=previous or {})
    ordered = sorted(ticks, key=lambda t: t["ts"])
    by_config: Matched = {}
    for config in configs:
        matched = [tick for tick in ordered if key_matches(config.pattern, tick["instrument_key"])]
        if matched:
            by_config[config.id] = (config, matched)
    records = run_grouped(by_config, ctx, run)
    outputs.write(records, client, ctx.outbox, once=run or None)
    return records


def previous_ticks(ticks: list[dict[str, Any]], held: dict[str, dict[str, Any]],
                   stored: Callable[[dict[str, float]], dict[str, dict[str, Any]]] | None = None,
                   ) -> dict[str, dict[str, Any] | None]:
    """For each tick (by source_id), the same instrument's tick just before it in tick time: from this batch, or
    the latest value Redis held before the batch when that is older.

    When Redis holds a tick as new as the batch's first tick of an instrument (the batch is retried after it
    updated the latest values, or a newer batch overtook it), the tick before comes from ``stored``: instrument key
    -> time -> the newest stored tick before that time (`signals.storage.ticks_before`)."""
    last = dict(held)
    overtaken = {}
    for tick in ticks:
        key = tick["instrument_key"]
        before = held.get(key)
        if before is not None and before["ts"] >= tick["ts"]:
            overtaken[key] = min(tick["ts"], overtaken.get(key, tick["ts"]))
    if overtaken and stored is not None:
        for key in overtaken:
            last.pop(key, None)
        last.update(stored(overtaken))
    found: dict[str, dict[str, Any] | None] = {}
    for tick in sorted(ticks, key=lambda t: t["ts"]):
        before = last.get(tick["instrument_key"])
        found[tick["source_id"]] = before if before is not None and before["ts"] < tick["ts"] else None
        last[tick["instrument_key"]] = tick
    return found


def match_configs(ticks: list[dict[str, Any]], frequency: str) -> Matched:
    """The enabled configs of ``frequency`` matching any tick, each with the ticks it matches in tick-time order."""
    by_config: Matched = {}
    for tick in sorted(ticks, key=lambda t: t["ts"]):
        for config in registry.matching(tick["instrument_key"], frequency):
            by_config.setdefault(config.id, (config, []))[1].append(tick)
    return by_config


def _bar_close_ticks(by_config: Matched, ctx: BatchContext) -> Matched:
    """Keep, per every_interval config, the ticks whose bar (of the config's interval) differs from the bar of the
    same instrument's previous tick by tick time: one run per bar close and instrument, live or replayed."""
    kept: Matched = {}
    for config_id, (config, config_ticks) in by_config.items():
        before = [ctx.previous.get(t["source_id"]) for t in config_ticks]
        crossed = bar_close_crossings(
            [t["ts"] for t in config_ticks], [p["ts"] if p else None for p in before],
            config.document.get("interval", "1m"), settings.SESSION_OPEN, settings.EXCHANGE_TIMEZONE,
        )
        selected = [t for t, hit in zip(config_ticks, crossed, strict=True) if hit]
        if selected:
            kept[config_id] = (config, selected)
    return kept


def run_grouped(by_config: Matched, ctx: BatchContext, run: str = "") -> list[outputs.Record]:
    """Run each config on its ticks (as `match_configs` groups them); returns (record, tick, output settings) of
    every tick with results, not yet written anywhere."""
    records = []
    for config, config_ticks in by_config.values():
        per_tick = run_config(config, config_ticks, ctx)
        output = config.document.get("output", {})
        for tick, computations in zip(config_ticks, per_tick, strict=True):
            if computations:
                records.append((outputs.build_record(tick, config.id, config.name, computations, run), tick, output))
    return records


def _note_runs(records: list[outputs.Record]) -> None:
    """Stamp each config's last run for the admin and API (throttled per process; never fails the batch)."""
    if not records:
        return
    try:
        note_records([record for record, _, _ in records])
    except Exception:
        log.exception("could not stamp config runs")


def _observe(ticks: list[dict[str, Any]], started: float) -> None:
    metrics.TICKS_PROCESSED.inc(len(ticks))
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    now = time.time()
    for tick in ticks[-1:]:
        lag = now - tick["ts"]
        if 0 <= lag < 60:
            metrics.TICK_LATENCY.observe(lag)
