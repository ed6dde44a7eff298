"""Greeks history: computing it from stored ticks (``compute_greeks``) and reading it back (historical API).

`compute_chunk` prices one config's option ticks of one underlying over a time range the way the live pipeline
does, with the underlying's and INDVIX's stored ticks at or before each option tick (a SQL lateral join on
``signal_ticks``), and inserts the rows into ``signal_greeks``, whose primary key (instrument, time, source_id,
config, price field) makes a re-run — or a range the live pipeline already covered — add nothing.

`greeks_series` and `atm_iv_series` read ``signal_greeks`` bucketed by timeframe with ``date_bin`` aligned to the
session open (`indicators.sql_buckets.sql_bucket_expression`), keeping the last value per bucket.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection

from configs.models import SignalConfig
from feed import keys
from feed.instruments import key_matches, parse_instrument_key
from feed.redis_client import get_redis
from feed.ticks import parse_time
from greeks import DEFAULT_MODEL, GREEK_NAMES
from greeks.moneyness import atm_strike
from indicators.sql_buckets import sql_bucket_expression
from signals import storage
from signals.instrument_registry import chain_instruments, option_keys
from signals.options.levels import interpolate_atm_iv, strike_number
from signals.options.pricing import STALE_FLAG, expiry_timestamp, price_quotes, underlying_for

log = logging.getLogger(__name__)
WINDOW = timedelta(minutes=1)
_TICK_COLUMNS = "ltp, open, high, low, close"
_HISTORY_SQL = f"""
SELECT o.instrument_key, extract(epoch FROM o.time)::float8, o.source_id, o.ltp, o.open, o.high, o.low, o.close,
       extract(epoch FROM u.time)::float8, u.ltp, u.open, u.high, u.low, u.close, v.ltp
FROM unnest(%(options)s::text[], %(unders)s::text[]) AS m(option_key, under_key)
JOIN signal_ticks o ON o.instrument_key = m.option_key AND o.time >= %(start)s AND o.time < %(end)s
LEFT JOIN LATERAL (
    SELECT t.time, {_TICK_COLUMNS} FROM signal_ticks t
    WHERE t.instrument_key = m.under_key AND t.time <= o.time ORDER BY t.time DESC, t.source_id DESC LIMIT 1
) u ON true
LEFT JOIN LATERAL (
    SELECT t.ltp FROM signal_ticks t
    WHERE t.instrument_key = %(vix)s AND t.time <= o.time ORDER BY t.time DESC, t.source_id DESC LIMIT 1
) v ON true
ORDER BY o.time, o.instrument_key, o.source_id
"""
_FIELD_OFFSET = {"ltp": 0, "open": 1, "high": 2, "low": 3, "close": 4}


def greeks_configs(underlying_key: str, name: str | None = None) -> list[Any]:
    """Enabled configs with Greeks on, whose instrument pattern covers options of ``underlying_key`` (or the one
    named, enabled or not). Raises ValueError saying why none fits."""
    if name is not None:
        config = SignalConfig.objects.filter(name=name).first()
        if config is None:
            raise ValueError(f"no config named {name!r}")
        if not (config.config.get("option_greeks") or {}).get("enabled"):
            raise ValueError(f"config {name!r} does not have option_greeks enabled")
        return [config]
    options = option_keys(underlying_key)
    found = [c for c in SignalConfig.objects.filter(enabled=True).order_by("id")
             if (c.config.get("option_greeks") or {}).get("enabled")
             and any(key_matches(c.config["instrument_key"], k) for k in options)]
    if not found:
        raise ValueError(f"no enabled config with option_greeks covers the options of {underlying_key}; "
                         "pass --config NAME")
    return found


def run_chunk(run_id: str, chunk: int, underlying_key: str, config_id: int, start: str, end: str) -> dict[str, Any]:
    """`compute_chunk` for the Celery task: times as ISO-8601 text; the outcome (counts, or the error) is recorded
    in the run's progress hash for the command to report."""
    started = time.perf_counter()
    try:
        outcome: dict[str, Any] = {"ok": True, **compute_chunk(underlying_key, config_id, parse_time(start),
                                                                parse_time(end))}
    except Exception as exc:  # reported to the command; the rows stored so far stay (idempotent re-run)
        log.exception("greeks history chunk failed", extra={"run_id": run_id, "chunk": chunk})
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    record_progress(run_id, chunk, outcome)
    return outcome


def compute_chunk(underlying_key: str, config_id: int, start: datetime, end: datetime) -> dict[str, int]:
    """Price every stored option tick of the config in [start, end) and store the rows; returns counts."""
    document = SignalConfig.objects.get(pk=config_id).config
    section = document["option_greeks"]
    model = section.get("model") or DEFAULT_MODEL
    pattern = document["instrument_key"]
    options, unders = [], []
    instruments = {}
    for key in option_keys(underlying_key):
        if not key_matches(pattern, key):
            continue
        inst = parse_instrument_key(key)
        options.append(key)
        unders.append(underlying_for(inst, model, frozenset(settings.SIGNAL_INDEX_SYMBOLS)))
        instruments[key] = inst
    counts = {"ticks": 0, "rows": 0, "stored": 0}
    if not options:
        return counts
    # Fetched window by window (client-side cursors hold a whole result), each window priced in one call.
    at = start
    while at < end:
        until = min(at + WINDOW, end)
        params = {"options": options, "unders": unders, "start": at, "end": until, "vix": settings.SIGNAL_VIX_KEY}
        with connection.cursor() as cursor:
            cursor.execute(_HISTORY_SQL, params)
            block = cursor.fetchall()
        if block:
            priced_rows = _price_block(block, instruments, section, model, config_id)
            counts["ticks"] += len(block)
            counts["rows"] += len(priced_rows)
            counts["stored"] += storage.store_greeks(priced_rows)
        at = until
    return counts


def _price_block(block: list[tuple[Any, ...]], instruments: dict[str, Any], section: dict[str, Any], model: str,
                 config_id: int) -> list[dict[str, Any]]:
    fields = list(section.get("price_fields") or ["ltp"])
    calculate = list(section.get("calculate") or GREEK_NAMES)
    n = len(block) * len(fields)
    arrays = {name: np.full(n, np.nan) for name in ("option", "under", "under_ts", "ts", "strike", "expiry", "vix")}
    is_call = np.empty(n, dtype=np.bool_)
    meta: list[tuple[tuple[Any, ...], str]] = []
    r = 0
    for row in block:
        inst = instruments[row[0]]
        strike, expiry, call = float(inst.strike), expiry_timestamp(inst.expiry), inst.right == "call"
        for field in fields:
            off = _FIELD_OFFSET[field]
            option, under = row[3 + off], row[9 + off]
            if option is not None:
                arrays["option"][r] = option
            if under is not None:
                arrays["under"][r] = under
                arrays["under_ts"][r] = row[8]
            if row[14] is not None:
                arrays["vix"][r] = row[14]
            arrays["ts"][r] = row[1]
            arrays["strike"][r] = strike
            arrays["expiry"][r] = expiry
            is_call[r] = call
            meta.append((row, field))
            r += 1
    priced = price_quotes(arrays["option"], arrays["under"], arrays["under_ts"], arrays["ts"], arrays["strike"],
                          arrays["expiry"], is_call, arrays["vix"], model=model,
                          r=float(section.get("risk_free_rate", 0.065)), q=float(section.get("dividend_yield", 0.0)),
                          use_indvix=bool(section.get("use_indvix")),
                          staleness_s=float(settings.SIGNAL_UNDERLYING_STALENESS_S))
    return [{"instrument_key": row[0], "ts": row[1], "source_id": row[2], "config_id": config_id,
             "price_field": field, **priced.db_row(i, calculate)} for i, (row, field) in enumerate(meta)]


# --- reading -------------------------------------------------------------------------------------------------------
_POINT_COLUMNS = (*GREEK_NAMES, "option_price", "underlying_price", "sigma", "sigma_source", "status",
                  "time_to_expiry", "config_id")


def _bucket_sql(tf: Any) -> str:
    return sql_bucket_expression(tf, "time", settings.SESSION_OPEN, settings.EXCHANGE_TIMEZONE)


def greeks_series(instrument_key: str, tf: Any, start: datetime, end: datetime, price_field: str,
                  config_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Greeks rows of one option, oldest first: every row, or the last one per ``tf`` bucket."""
    columns = ", ".join(_POINT_COLUMNS)
    where = "instrument_key = %s AND price_field = %s AND time >= %s AND time < %s"
    params: list[Any] = [instrument_key, price_field, start, end]
    if config_id is not None:
        where += " AND config_id = %s"
        params.append(config_id)
    if tf is None:
        sql = f"SELECT time, time, {columns} FROM signal_greeks WHERE {where} ORDER BY time, config_id LIMIT %s"
    else:
        bucket = _bucket_sql(tf)
        sql = (f"SELECT * FROM (SELECT DISTINCT ON (bucket) {bucket} AS bucket, time, {columns} FROM signal_greeks "
               f"WHERE {where} ORDER BY bucket, time DESC, config_id DESC) last ORDER BY bucket LIMIT %s")
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for bucket, tick_time, *values in rows:
        point = {"time": bucket.isoformat()}
        if tf is not None:
            point["tick_time"] = tick_time.isoformat()
        point.update(zip(_POINT_COLUMNS, values, strict=True))
        status = point["status"] or ""
        point["stale_underlying"] = status.endswith("|" + STALE_FLAG)
        point["status"] = status.split("|")[0]
        point["sigma_source"] = point["sigma_source"] or None
        out.append(point)
    return out


def atm_iv_series(underlying_key: str, expiry: date, tf: Any, start: datetime, end: datetime,
                  config_id: int | None) -> list[dict[str, Any]]:
    """Per bucket: each option's last IV (ltp), interpolated at the bucket's last underlying price."""
    chain = chain_instruments(underlying_key, expiry, max_age_s=0)
    if not chain:
        return []
    strikes = np.array(sorted({k for _, _, k in chain}), dtype=np.float64)
    position = {key: (right, int(np.searchsorted(strikes, strike))) for key, right, strike in chain}
    where = "instrument_key = ANY(%s) AND price_field = 'ltp' AND time >= %s AND time < %s"
    params: list[Any] = [list(position), start, end]
    if config_id is not None:
        where += " AND config_id = %s"
        params.append(config_id)
    bucket = _bucket_sql(tf)
    sql = (f"SELECT DISTINCT ON (instrument_key, bucket) instrument_key, {bucket} AS bucket, iv, underlying_price, "
           f"time FROM signal_greeks WHERE {where} ORDER BY instrument_key, bucket, time DESC, config_id DESC")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    buckets: dict[datetime, dict[str, Any]] = {}
    for key, when, iv, under, tick_time in rows:
        b = buckets.setdefault(when, {"call": np.full(strikes.shape, np.nan), "put": np.full(strikes.shape, np.nan),
                                      "spot": None, "spot_time": None})
        right, j = position[key]
        if iv is not None:
            b[right][j] = iv
        if under is not None and (b["spot_time"] is None or tick_time > b["spot_time"]):
            b["spot"], b["spot_time"] = under, tick_time
    out = []
    for when in sorted(buckets):
        b = buckets[when]
        point: dict[str, Any] = {"time": when.isoformat(), "iv": None, "call_iv": None, "put_iv": None,
                                 "atm_strike": None, "spot": b["spot"]}
        if b["spot"] is not None:
            point["atm_strike"] = strike_number(float(atm_strike(strikes, b["spot"])))
            point.update(interpolate_atm_iv(strikes, b["call"], b["put"], float(b["spot"])))
        out.append(point)
    return out


PROGRESS_TTL_S = 7 * 86400


def record_progress(run_id: str, chunk: int, outcome: dict[str, Any]) -> None:
    """Set one chunk's counts under the run's progress hash, which the ``compute_greeks`` command polls."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.hset(keys.greeks_history_progress(run_id), str(chunk), json.dumps(outcome))
    pipe.expire(keys.greeks_history_progress(run_id), PROGRESS_TTL_S)
    pipe.execute()
