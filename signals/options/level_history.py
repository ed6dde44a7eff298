"""A moneyness level's Greeks over time (``historical/moneyness/{underlying}/greeks/{level}``, docs/REFERENCE.md §6).

Per bucket of the timeframe (aligned like every bar, `indicators.sql_buckets`), each option of the chain takes its
last stored Greeks row in the bucket (``signal_greeks``, price field ``ltp``), the reference price is the
underlying price of the bucket's newest row, and the level is chosen from them exactly as the realtime view chooses
it (`signals.options.levels.level_view`). Where nothing was stored for the chain in the range, the Greeks are first
computed from the stored ticks (`signals.options.history.compute_chunk`, idempotent) by the configs that price
that underlying's options, for ranges up to ``SIGNAL_MONEYNESS_RECOMPUTE_MAX_HOURS``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import connection

from configs.models import SignalConfig
from greeks import DEFAULT_MODEL, GREEK_NAMES
from indicators.sql_buckets import sql_bucket_expression
from signals.instrument_registry import chain_instruments
from signals.options import history
from signals.options.chains import ChainSnapshot, reference_key
from signals.options.levels import level_view
from signals.options.pricing import STALE_FLAG

_COLUMNS = (*GREEK_NAMES, "option_price", "underlying_price", "sigma_source", "status")
_VIEW_FIELDS = ("atm_strike", "spot", "strikes", "calls", "puts", "averages", "reason")


def _rows(option_keys: list[str], tf: Any, start: datetime, end: datetime, config_id: int | None
          ) -> list[tuple[Any, ...]]:
    bucket = sql_bucket_expression(tf, "time", settings.SESSION_OPEN, settings.EXCHANGE_TIMEZONE)
    where = "instrument_key = ANY(%s) AND price_field = 'ltp' AND time >= %s AND time < %s"
    params: list[Any] = [option_keys, start, end]
    if config_id is not None:
        where += " AND config_id = %s"
        params.append(config_id)
    sql = (f"SELECT DISTINCT ON (instrument_key, bucket) instrument_key, {bucket} AS bucket, time, "
           f"{', '.join(_COLUMNS)} FROM signal_greeks WHERE {where} "
           "ORDER BY instrument_key, bucket, time DESC, config_id DESC")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _entry(key: str, tick_time: datetime, values: tuple[Any, ...]) -> dict[str, Any]:
    point = dict(zip(_COLUMNS, values, strict=True))
    status = point["status"] or ""
    return {"instrument_key": key, "greeks": {name: point[name] for name in GREEK_NAMES},
            "option_price": point["option_price"], "underlying_price": point["underlying_price"],
            "sigma_source": point["sigma_source"] or None, "status": status.split("|")[0],
            "stale_underlying": status.endswith("|" + STALE_FLAG), "timestamp": tick_time.isoformat(),
            "ts": tick_time.timestamp()}


def model_of(config_id: int | None) -> str:
    config = SignalConfig.objects.filter(pk=config_id).first() if config_id is not None else None
    return ((config.config if config else {}).get("option_greeks") or {}).get("model") or DEFAULT_MODEL


def recompute(underlying_key: str, start: datetime, end: datetime, config_id: int | None) -> bool:
    """Price the stored option ticks of ``underlying_key`` in [start, end) into ``signal_greeks`` with the configs
    that cover them (or ``config_id``); False when the range is too long or no config prices these options."""
    if (end - start).total_seconds() > 3600 * float(settings.SIGNAL_MONEYNESS_RECOMPUTE_MAX_HOURS):
        return False
    if config_id is not None:
        configs = list(SignalConfig.objects.filter(pk=config_id))
    else:
        try:
            configs = history.greeks_configs(underlying_key)
        except ValueError:
            return False
    priced = False
    for config in configs:
        if (config.config.get("option_greeks") or {}).get("enabled"):
            history.compute_chunk(underlying_key, config.id, start, end)
            priced = True
    return priced


def level_series(underlying_key: str, expiry: date, level: str, tf: Any, start: datetime, end: datetime,
                 config_id: int | None, strike_step: float | None) -> tuple[list[dict[str, Any]], str]:
    """(points oldest first, source): ``stored`` or ``recomputed`` (priced from stored ticks just now)."""
    options = chain_instruments(underlying_key, expiry, max_age_s=0)
    option_keys = [key for key, _, _ in options]
    rows = _rows(option_keys, tf, start, end, config_id) if option_keys else []
    source = "stored"
    if not rows and option_keys and recompute(underlying_key, start, end, config_id):
        rows = _rows(option_keys, tf, start, end, config_id)
        source = "recomputed"
    model = model_of(config_id)
    ref_key = reference_key(underlying_key, expiry, model)
    buckets: dict[datetime, dict[str, dict[str, Any]]] = {}
    for key, bucket, tick_time, *values in rows:
        buckets.setdefault(bucket, {})[key] = _entry(key, tick_time, tuple(values))
    out = []
    for bucket in sorted(buckets):
        entries = buckets[bucket]
        newest = max((e for e in entries.values() if e["underlying_price"] is not None),
                     key=lambda e: e["ts"], default=None)
        snapshot = ChainSnapshot(underlying_key, expiry, options, entries, model, ref_key,
                                 newest["underlying_price"] if newest else None,
                                 newest["timestamp"] if newest else None)
        view = level_view(snapshot, level, strike_step)
        point = {"time": bucket.isoformat(), "timestamp": view["timestamp"]}
        point.update({name: view[name] for name in _VIEW_FIELDS if name in view})
        out.append(point)
    return out, source
