"""Moneyness as a config computation (docs/REFERENCE.md §4, issue 3): ``moneyness: {underlying, expiry?, levels, strike_step?}``.

Moneyness is a view of the whole chain, so it is computed once per batch for each config, at the batch's newest
tick of that config (that tick's record carries it; the config's other ticks in the batch get no moneyness entry):
the chain of ``underlying`` for ``expiry`` (the nearest listed expiry on or after the tick's date when absent) is
read from the registry, joined with the latest Greeks cached per option — including the ones this batch has just
computed — and measured against the underlying (the same-expiry future for black76) at or before the tick time.

Results are keyed by level (``{"ATM": {...level view...}, "OTM1": {...}, "atm_iv": {...}}``). Each level (with
``atm_iv`` in it) is cached and pushed on the ``moneyness`` WebSocket channel (params ``{expiry_date, level}``),
together with the levels WebSocket clients subscribed to for this underlying and expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.conf import settings

from configs.registry import ActiveConfig
from feed import keys
from feed.instruments import parse_instrument_key
from signals.delivery import fanout
from signals.delivery.events import signal_event
from signals.delivery.ws_greeks import INTEREST_TTL_S
from signals.instrument_registry import nearest_expiry
from signals.options.chains import ChainSnapshot, load_chain
from signals.options.levels import atm_iv_view, level_view
from signals.pipeline.computations.results import result
from signals.pipeline.context import BatchContext

COMPUTATION_NAME = "moneyness"


def moneyness_cache_key(underlying_key: str, expiry: str, level: str) -> str:
    return keys.latest_result("moneyness", underlying_key, f"{expiry}:{level}")


def exchange_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(settings.EXCHANGE_TIMEZONE)).date()


def _queue_interest(underlying_key: str, config_levels: list[str], expiry: str,
                    websocket: bool) -> Callable[[Any], int]:
    """Reads for `load_chain`'s round trip: the levels WebSocket clients subscribed to for this underlying, and
    (when the channel layer shares the data server) the listener counts of the config's own level topics, so
    that neither costs a round trip of its own."""
    channels = [fanout.group_channel(level_group(underlying_key, expiry, level)) for level in config_levels]
    count_listeners = websocket and bool(channels) and fanout.shares_data_server()

    def queue(pipe: Any) -> int:
        pipe.zrangebyscore(keys.moneyness_interest(underlying_key), time.time() - INTEREST_TTL_S, "+inf")
        if count_listeners:
            pipe.pubsub_numsub(*channels)
        return 2 if count_listeners else 1

    return queue


def _subscribed_levels(members: list[bytes], expiry: str) -> list[str]:
    levels = []
    for member in members:
        topic = orjson.loads(member)
        if topic.get("expiry_date") == expiry:
            levels.append(topic["level"])
    return levels


def level_group(underlying_key: str, expiry: str, level: str) -> str:
    return keys.topic_group("moneyness", underlying_key, {"expiry_date": expiry, "level": level})


def moneyness(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    document = config.document
    section = document.get("moneyness")
    out: list[Any] = [None] * len(ticks)
    if not section or not ticks:
        return out
    started = time.perf_counter()
    newest = max(range(len(ticks)), key=lambda i: (ticks[i]["ts"], i))
    tick = ticks[newest]
    underlying = section["underlying"]
    inst = parse_instrument_key(underlying)
    chain_prefix = f"{inst.exchange}@{inst.symbol}@options@"
    seen = {t["instrument_key"] for t in ticks if t["instrument_key"].startswith(chain_prefix)}
    expiry_text = section.get("expiry")
    if expiry_text:
        expiry: date | None = date.fromisoformat(str(expiry_text))
    else:
        seen_expiries = {date.fromisoformat(key.split("@")[3]) for key in seen}
        expiry = nearest_expiry(underlying, exchange_date(tick["ts"]), seen_expiries)
    if expiry is None:
        out[newest] = result("moneyness", COMPUTATION_NAME, None, (time.perf_counter() - started) * 1000,
                             f"no listed option expiry of {underlying} on or after the tick's date")
        return out
    greeks_section = document.get("option_greeks") or {}
    model = greeks_section.get("model") if greeks_section.get("enabled") else None
    prefix = f"{chain_prefix}{expiry.isoformat()}@"
    expiry_iso = expiry.isoformat()
    config_levels = list(section.get("levels") or ["ATM"])
    output = document.get("output") or {}
    websocket = output.get("websocket", True) and not ctx.outbox.offline
    snapshot = load_chain(ctx.client, underlying, expiry, model=model, at_ts=tick["ts"], fresh=ctx.fresh_greeks,
                          expect={key for key in seen if key.startswith(prefix)},
                          also=_queue_interest(underlying, config_levels, expiry_iso, websocket))
    if len(snapshot.also) > 1:
        ctx.outbox.listened.update(fanout.listeners(snapshot.also[1]))
    results, errors = _level_views(ctx, snapshot, section, config_levels, tick["timestamp"],
                                   int(output.get("cache_ttl_seconds", 300)), websocket)
    out[newest] = result("moneyness", COMPUTATION_NAME, results, (time.perf_counter() - started) * 1000,
                         "; ".join(errors) or None)
    return out


def _level_views(ctx: BatchContext, snapshot: ChainSnapshot, section: dict[str, Any], config_levels: list[str],
                 timestamp: str, ttl: int, websocket: bool) -> tuple[dict[str, Any], list[str]]:
    """The config's levels and ``atm_iv`` (the result), and errors of levels that failed. Every level computed (the
    config's and the ones WebSocket clients subscribed to) is cached and pushed to its listeners."""
    underlying, expiry_iso = snapshot.underlying_key, snapshot.expiry.isoformat()
    step = section.get("strike_step")
    atm_iv = atm_iv_view(snapshot)
    results: dict[str, Any] = {}
    errors: list[str] = []
    levels = list(dict.fromkeys(config_levels + _subscribed_levels(snapshot.also[0], expiry_iso)))
    for level in levels:
        try:
            view = level_view(snapshot, level, float(step) if step else None)
        except Exception as exc:  # one bad level never hides the others
            errors.append(f"{level}: {type(exc).__name__}: {exc}")
            continue
        if level in config_levels:
            results[level] = view
        view = {**view, "atm_iv": atm_iv}
        ctx.outbox.cache_writes.append((moneyness_cache_key(underlying, expiry_iso, level), orjson.dumps(view), ttl))
        group = level_group(underlying, expiry_iso, level)
        if websocket and not fanout.nobody_listens(group, ctx.outbox.listened):
            ctx.outbox.events.append((group, signal_event("moneyness", underlying, view, timestamp,
                                                          {"expiry_date": expiry_iso, "level": level})))
    results["atm_iv"] = atm_iv
    ctx.outbox.cache_writes.append((moneyness_cache_key(underlying, expiry_iso, "atm_iv"), orjson.dumps(atm_iv), ttl))
    return results, errors
