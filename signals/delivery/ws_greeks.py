"""WebSocket channels ``greeks`` and ``moneyness`` (docs/REFERENCE.md §6, issue 3).

* ``greeks``: instrument_key = an option; no params. Data = the option's latest Greeks in the realtime-API shape
  (`signals.pipeline.computations.greeks.cache_entry`), pushed for every option tick a Greeks config computes.
* ``moneyness``: instrument_key = the underlying (``NSE@NIFTY@index``); params ``{"expiry_date": "2025-06-26",
  "level": "ATM"|"ITM"|"OTM"|"ITMn"|"OTMn"|"Dnn"}`` (level defaults to ATM). Data = the level view of
  `signals.options.levels.level_view` plus ``atm_iv``, pushed by the moneyness computation of any config for that
  underlying and expiry. Subscribing also registers interest in the level, so the computation pushes levels
  subscribers asked for even when no config lists them.

Snapshots are computed from the latest chain on subscribe and on request.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis
from channels.db import database_sync_to_async

from feed import keys
from feed.instruments import InstrumentKeyError, parse_expiry, parse_instrument_key
from feed.redis_client import get_redis
from signals.delivery.channels import ChannelSpec
from signals.options.chains import load_chain
from signals.options.levels import LevelError, atm_iv_view, level_view, parse_level

INTEREST_TTL_S = 3600  # how long a subscription keeps its moneyness level computed (`keys.moneyness_interest`)


def _option_key(text: str) -> str:
    inst = parse_instrument_key(text)
    if not inst.is_option:
        raise InstrumentKeyError(f"{inst.key} is not an option; the greeks channel takes option keys")
    return inst.key


def underlying_instrument(text: str) -> str:
    inst = parse_instrument_key(text)
    if inst.product not in ("index", "equities"):
        raise InstrumentKeyError(f"{inst.key} is not an underlying (index or equity)")
    return inst.key


def _greeks_params(params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise ValueError(f"the greeks channel takes no params (got {', '.join(sorted(params))})")
    return {}


def moneyness_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - {"expiry_date", "level"}
    if unknown:
        raise ValueError(f"unknown params {', '.join(sorted(unknown))}; moneyness takes expiry_date and level")
    expiry = params.get("expiry_date")
    if not expiry:
        raise ValueError("params.expiry_date is required (e.g. 2025-06-26)")
    try:
        expiry_text = parse_expiry(str(expiry)).isoformat()
    except InstrumentKeyError as exc:
        raise ValueError(f"params.expiry_date: {exc}") from None
    try:
        level = parse_level(params.get("level") or "ATM")
    except LevelError as exc:
        raise ValueError(f"params.level: {exc}") from None
    return {"expiry_date": expiry_text, "level": level}


async def _greeks_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    raw = await client.get(keys.latest_result("greeks", instrument_key))
    return json.loads(raw) if raw else None


def moneyness_payload(underlying_key: str, expiry_date: str, level: str) -> dict[str, Any]:
    """The moneyness channel's data for one topic, from the latest chain (sync: registry and Redis)."""
    snapshot = load_chain(get_redis(), underlying_key, parse_expiry(expiry_date))
    body = level_view(snapshot, level)
    body["atm_iv"] = atm_iv_view(snapshot)
    return body


async def _moneyness_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    member = json.dumps({"expiry_date": params["expiry_date"], "level": params["level"]}, sort_keys=True)
    name = keys.moneyness_interest(instrument_key)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(name, {member: now})
    pipe.zremrangebyscore(name, "-inf", now - INTEREST_TTL_S)
    pipe.expire(name, INTEREST_TTL_S)
    await pipe.execute()
    return await database_sync_to_async(moneyness_payload)(instrument_key, params["expiry_date"], params["level"])


GREEKS = ChannelSpec("greeks", _greeks_snapshot, _greeks_params, _option_key)
MONEYNESS = ChannelSpec("moneyness", _moneyness_snapshot, moneyness_params, underlying_instrument)
