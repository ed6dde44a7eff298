"""Option Greeks as a config computation (docs/REFERENCE.md §4, issue 3): one vectorised solve per config per batch.

For a config with ``option_greeks.enabled``, every option tick of the batch, for every configured price field, is
priced against the underlying's matching value (spot for black_scholes / black_scholes_merton, the same-expiry
future for black76) and INDVIX at or before the tick's own time. The lookups for the whole batch go to Redis in one
pipeline (the underlying's tick may be in this very batch: latest values and history are written before
computations run; `HistoryWindow` reads each one's history over the batch's time span in two commands), then
`signals.options.pricing.price_quotes` prices every row in one call.

Each option tick's result is keyed by price field (only the config's ``calculate`` Greeks; None, never NaN):
``{"ltp": {"iv", "delta", ..., "price", "option_price", "underlying_price", "time_to_expiry", "sigma",
"sigma_source", "status", "stale_underlying", "reason"?}, "open": {...}}``. Besides the record, the handler queues
typed rows for ``signal_greeks``, the latest-Greeks cache entry (realtime API, moneyness) and a ``greeks`` WebSocket
event per option tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from django.conf import settings

from configs.registry import ActiveConfig
from feed import keys
from feed.instruments import Instrument, parse_instrument_key
from feed.latest import HistoryWindow
from greeks import DEFAULT_MODEL, GREEK_NAMES
from signals.delivery import fanout
from signals.delivery.events import signal_event
from signals.delivery.ws_chain import chain_events
from signals.options.pricing import Priced, expiry_timestamp, price_quotes, underlying_for
from signals.pipeline.computations.results import result
from signals.pipeline.context import BatchContext
from signals.storage import ticks_before

COMPUTATION_NAME = "option_greeks"
Option = tuple[int, Instrument]  # (index of the tick in the config's ticks, its parsed option)


@lru_cache(maxsize=65536)
def option_instrument(instrument_key: str) -> Instrument | None:
    """The parsed instrument if the key is an option, else None."""
    try:
        inst = parse_instrument_key(instrument_key)
    except ValueError:
        return None
    return inst if inst.is_option else None


def cache_entry(tick: dict[str, Any], fields: dict[str, dict[str, Any]], main_field: str, *, model: str,
                underlying_key: str | None, config_id: int, config_name: str | None) -> dict[str, Any]:
    """The realtime-API shape of one option tick's Greeks (the ``main_field`` flattened, every field under
    ``fields``), cached as the instrument's latest Greeks and pushed on the ``greeks`` channel."""
    main = fields[main_field]
    return {
        "instrument_key": tick["instrument_key"],
        "timestamp": tick["timestamp"],
        "ts": tick["ts"],
        "price_field": main_field,
        "greeks": {name: main.get(name) for name in GREEK_NAMES},
        "underlying_key": underlying_key,
        "underlying_price": main["underlying_price"],
        "option_price": main["option_price"],
        "oi": tick.get("oi"),
        "model_price": main["price"],
        "sigma": main["sigma"],
        "sigma_source": main["sigma_source"],
        "status": main["status"],
        "stale_underlying": main["stale_underlying"],
        "reason": main.get("reason"),
        "time_to_expiry": main["time_to_expiry"],
        "model": model,
        "config_id": config_id,
        "config_name": config_name,
        "fields": fields,
    }


def option_greeks(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    section = config.document.get("option_greeks") or {}
    if not section.get("enabled"):
        return [None] * len(ticks)
    started = time.perf_counter()
    options = [(i, inst) for i, tick in enumerate(ticks) if (inst := option_instrument(tick["instrument_key"]))]
    if not options:
        return [None] * len(ticks)
    model = section.get("model") or DEFAULT_MODEL
    fields = list(section.get("price_fields") or ["ltp"])
    calculate = list(section.get("calculate") or GREEK_NAMES)
    output = config.document.get("output") or {}
    vix_key = settings.SIGNAL_VIX_KEY
    under_keys = [underlying_for(inst, model, frozenset(settings.SIGNAL_INDEX_SYMBOLS)) for _, inst in options]
    window = _read_window(ctx, ticks, options, under_keys, vix_key)
    priced, rows = _price(ticks, options, under_keys, fields, window, vix_key, section, model)

    per_tick: list[dict[str, dict[str, Any]]] = [{} for _ in options]
    store = output.get("store_to_database", True) and not ctx.outbox.offline
    for r, ((slot, field), row) in enumerate(zip(rows, priced.rows(calculate), strict=True)):
        per_tick[slot][field] = row
        if store:
            tick = ticks[options[slot][0]]
            ctx.outbox.greeks_rows.append({"instrument_key": tick["instrument_key"], "ts": tick["ts"],
                                           "source_id": tick["source_id"], "config_id": config.id,
                                           "price_field": field, **priced.db_row(r, calculate)})

    elapsed = (time.perf_counter() - started) * 1000 / len(options)
    out: list[Any] = [None] * len(ticks)
    for slot, (i, _) in enumerate(options):
        out[i] = result("greeks", COMPUTATION_NAME, per_tick[slot], elapsed)
    main_field = "ltp" if "ltp" in fields else fields[0]

    def entry(slot: int) -> dict[str, Any]:
        return cache_entry(ticks[options[slot][0]], per_tick[slot], main_field, model=model,
                           underlying_key=under_keys[slot], config_id=config.id, config_name=config.name)

    _deliver(ctx, ticks, options, entry, output)
    return out


def _read_window(ctx: BatchContext, ticks: list[dict[str, Any]], options: list[Option],
                 under_keys: list[str | None], vix_key: str) -> HistoryWindow:
    """One Redis round trip: the underlyings' and INDVIX's history over the batch's tick times."""
    window = HistoryWindow()
    for (i, _), under in zip(options, under_keys, strict=True):
        ts = ticks[i]["ts"]
        if under is not None:
            window.want(under, ts)
        window.want(vix_key, ts)
    pipe = ctx.client.pipeline(transaction=False)
    window.queue(pipe)
    window.load(pipe.execute())
    missing = window.missing()
    if missing:  # Redis lost the history (a restart without AOF): the stored ticks still have it
        window.fill(ticks_before(missing, inclusive=True))
    return window


def _deliver(ctx: BatchContext, ticks: list[dict[str, Any]], options: list[Option],
             entry: Callable[[int], dict[str, Any]], output: dict[str, Any]) -> None:
    """Queue each option tick's ``greeks`` event, and each option's newest entry as its latest Greeks (cached, and
    left in ``ctx.fresh_greeks`` for moneyness) unless a newer tick of it was in before this batch. ``entry(slot)``
    builds an option tick's entry: only for the ticks something reads (without WebSocket, the newest per option)."""
    websocket = output.get("websocket", True) and not ctx.outbox.offline
    entries = [entry(slot) for slot in range(len(options))] if websocket else None
    newest: dict[str, tuple[float, int]] = {}  # option -> (tick time, slot) of its newest tick in the batch
    for slot, (i, _) in enumerate(options):
        tick = ticks[i]
        key = tick["instrument_key"]
        if entries is not None:
            group = keys.topic_group("greeks", key)
            if not fanout.nobody_listens(group, ctx.outbox.listened):
                ctx.outbox.events.append((group, signal_event("greeks", key, entries[slot], tick["timestamp"])))
        held = newest.get(key)
        if held is None or tick["ts"] >= held[0]:
            newest[key] = (tick["ts"], slot)
    if entries is not None:
        ctx.outbox.events.extend(chain_events([(inst, e) for (_, inst), e in zip(options, entries, strict=True)],
                                              ctx.outbox.listened))
    ttl = int(output.get("cache_ttl_seconds", 300))
    for key, (ts, slot) in newest.items():
        latest_ts = ctx.held_ts.get(key)
        if latest_ts is not None and latest_ts > ts:
            continue  # a newer tick of this option was in before this batch; keep its Greeks
        found = entries[slot] if entries is not None else entry(slot)
        ctx.outbox.guarded_cache_writes.append((keys.latest_result("greeks", key), orjson.dumps(found), ttl, key, ts))
        ctx.fresh_greeks[key] = found


def _price(ticks: list[dict[str, Any]], options: list[Option], under_keys: list[str | None],
           fields: list[str], window: HistoryWindow, vix_key: str, section: dict[str, Any],
           model: str) -> tuple[Priced, list[tuple[int, str]]]:
    """Gather options × price fields into arrays and price them in one call; rows are (option slot, field)."""
    nan = float("nan")
    option_price: list[float] = []
    under_price: list[float] = []
    under_ts: list[float] = []
    tick_ts: list[float] = []
    strike: list[float] = []
    expiry_ts: list[float] = []
    is_call: list[bool] = []
    vix: list[float] = []
    rows: list[tuple[int, str]] = []
    for slot, ((i, inst), under) in enumerate(zip(options, under_keys, strict=True)):
        tick = ticks[i]
        ts = tick["ts"]
        u = window.at_or_before(under, ts) if under is not None else None
        v = window.at_or_before(vix_key, ts)
        k = float(inst.strike)  # type: ignore[arg-type]
        e = expiry_timestamp(inst.expiry)  # type: ignore[arg-type]
        call = inst.right == "call"
        vix_value = v.get("ltp") if v else None
        vix_value = nan if vix_value is None else vix_value
        for field in fields:
            rows.append((slot, field))
            value = tick.get(field)
            option_price.append(nan if value is None else value)
            under_value = u.get(field) if u is not None else None
            if under_value is None:
                under_price.append(nan)
                under_ts.append(nan)
            else:
                under_price.append(under_value)
                under_ts.append(u["ts"])  # type: ignore[index]
            tick_ts.append(ts)
            strike.append(k)
            expiry_ts.append(e)
            is_call.append(call)
            vix.append(vix_value)
    f8 = np.float64
    priced = price_quotes(np.array(option_price, f8), np.array(under_price, f8), np.array(under_ts, f8),
                          np.array(tick_ts, f8), np.array(strike, f8), np.array(expiry_ts, f8),
                          np.array(is_call, np.bool_), np.array(vix, f8), model=model, r=float(section.get("risk_free_rate", 0.065)),
                          q=float(section.get("dividend_yield", 0.0)), use_indvix=bool(section.get("use_indvix")),
                          staleness_s=float(settings.SIGNAL_UNDERLYING_STALENESS_S))
    return priced, rows
