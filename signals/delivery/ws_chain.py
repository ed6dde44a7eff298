"""WebSocket channel ``chain`` (docs/REFERENCE.md §6, issue 13): a whole option chain in one subscription.

Subscribe with ``{"type": "subscribe", "channel": "chain", "instrument_key": "NSE@NIFTY@index",
"params": {"expiry_date": "2025-06-26"}}``. The snapshot is the REST option chain (`option-chain/{underlying}`);
then each batch that priced options of that underlying and expiry sends one frame with the strikes it changed,
each side in the option chain's shape (`signals.options.levels.option_view`). A client keeps the snapshot's rows
and overwrites the sides a frame carries.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis.asyncio as aredis
from channels.db import database_sync_to_async
from django.conf import settings

from feed import keys
from feed.instruments import Instrument, parse_expiry, parse_instrument_key
from feed.redis_client import get_redis
from signals.delivery import fanout
from signals.delivery.channels import ChannelSpec
from signals.delivery.events import signal_event
from signals.delivery.ws_greeks import underlying_instrument
from signals.options.chains import load_chain
from signals.options.levels import chain_view, option_view, strike_number


def chain_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - {"expiry_date"}
    if unknown:
        raise ValueError(f"unknown params {', '.join(sorted(unknown))}; the chain channel takes expiry_date")
    expiry = params.get("expiry_date")
    if not expiry or not isinstance(expiry, str):
        raise ValueError("params.expiry_date is required (e.g. 2025-06-26)")
    return {"expiry_date": parse_expiry(expiry).isoformat()}


def chain_payload(underlying_key: str, expiry_date: str) -> dict[str, Any]:
    """The snapshot: the REST option chain (sync: registry and Redis)."""
    return chain_view(load_chain(get_redis(), underlying_key, parse_expiry(expiry_date)))


async def _chain_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    return await database_sync_to_async(chain_payload)(instrument_key, params["expiry_date"])


def chain_groups(instrument_keys: list[str]) -> set[str]:
    """The ``chain`` topics a batch of these instruments may send to (asked for listeners with the batch's reads,
    so a chain nobody watches costs nothing)."""
    index_symbols = frozenset(settings.SIGNAL_INDEX_SYMBOLS)
    return {_chain_group(key, index_symbols) for key in instrument_keys if "@options@" in key}


@lru_cache(maxsize=65536)
def _chain_group(option_key: str, index_symbols: frozenset[str]) -> str:
    inst = parse_instrument_key(option_key)
    return keys.topic_group("chain", inst.underlying_key(index_symbols),
                            {"expiry_date": inst.expiry.isoformat()})  # type: ignore[union-attr]


def chain_events(priced: list[tuple[Instrument, dict[str, Any]]], listened: dict[str, int]) -> list[fanout.Event]:
    """One ``chain`` event per underlying and expiry a batch priced options of (and someone listens to): the newest
    entry of each option, grouped into strike rows."""
    index_symbols = frozenset(settings.SIGNAL_INDEX_SYMBOLS)
    topics: dict[tuple[str, str], dict[str, tuple[Instrument, dict[str, Any]]]] = {}
    for inst, entry in priced:
        topic = (inst.underlying_key(index_symbols), inst.expiry.isoformat())  # type: ignore[union-attr]
        held = topics.setdefault(topic, {}).get(inst.key)
        if held is None or entry["ts"] >= held[1]["ts"]:
            topics[topic][inst.key] = (inst, entry)
    events: list[fanout.Event] = []
    for (underlying, expiry), options in topics.items():
        params = {"expiry_date": expiry}
        group = keys.topic_group("chain", underlying, params)
        if fanout.nobody_listens(group, listened):
            continue
        rows: dict[float, dict[str, Any]] = {}
        for inst, entry in options.values():
            strike = float(inst.strike)  # type: ignore[arg-type]
            row = rows.setdefault(strike, {"strike": strike_number(strike)})
            row[inst.right] = option_view(inst.key, strike, entry)  # type: ignore[index]
        newest = max((entry for _, entry in options.values()), key=lambda e: e["ts"])
        data = {"underlying": underlying, "expiry_date": expiry, "spot": newest.get("underlying_price"),
                "timestamp": newest["timestamp"], "strikes": [rows[k] for k in sorted(rows)]}
        events.append((group, signal_event("chain", underlying, data, newest["timestamp"], params)))
    return events


CHAIN = ChannelSpec("chain", _chain_snapshot, chain_params, underlying_instrument)
