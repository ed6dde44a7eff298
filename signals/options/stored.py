"""The latest values as stored in PostgreSQL, for the realtime views while Redis is unreachable (docs/REFERENCE.md
§6, "source"): the newest tick of an instrument (``signal_ticks``, through `signals.storage.ticks_before`), the
newest Greeks of options (``signal_greeks``) shaped like the latest-Greeks cache entries, and an option chain built
from them.

Every read walks the tables' primary keys (instrument, time) backwards, one index probe per instrument.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from django.conf import settings
from django.db import connection

from configs.models import SignalConfig
from feed.instruments import parse_instrument_key
from greeks import DEFAULT_MODEL, GREEK_NAMES
from signals.instrument_registry import chain_instruments
from signals.options.chains import ChainSnapshot, reference_key
from signals.options.pricing import STALE_FLAG, underlying_for
from signals.storage import ticks_before

_AFTER_ANY_TICK = 253402300799.0  # 9999-12-31T23:59:59Z, the last second both Python and PostgreSQL hold
_GREEKS_VALUES = ("price_field", "config_id", *GREEK_NAMES, "option_price", "underlying_price", "sigma",
                  "sigma_source", "status", "time_to_expiry")
# every row of the newest time of each option (one per config and price field)
_GREEKS_SQL = f"""
SELECT k.key, g.time, {", ".join("g." + c for c in _GREEKS_VALUES)}
FROM unnest(%s::text[]) AS k(key)
JOIN LATERAL (SELECT max(time) AS newest FROM signal_greeks WHERE instrument_key = k.key) n ON true
JOIN signal_greeks g ON g.instrument_key = k.key AND g.time = n.newest
ORDER BY k.key, g.config_id
"""


def latest_tick(instrument_key: str) -> dict[str, Any] | None:
    """The instrument's newest stored tick (``timestamp``, ``ts`` and the quote fields), or None."""
    return ticks_before({instrument_key: _AFTER_ANY_TICK}, inclusive=True).get(instrument_key)


def latest_greeks(option_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each option's newest stored Greeks, in the latest-Greeks cache's shape (without ``model_price`` and
    ``reason``, which are not stored); options with none are left out."""
    if not option_keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_GREEKS_SQL, [list(option_keys)])
        rows = cursor.fetchall()
    by_option: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    stamps: dict[str, Any] = {}
    for key, time, *values in rows:
        point = dict(zip(_GREEKS_VALUES, values, strict=True))
        stamps[key] = time
        by_option.setdefault(key, {}).setdefault(point["config_id"], {})[point.pop("price_field")] = point
    configs = {c.id: c for c in SignalConfig.objects.filter(
        id__in={cid for per_config in by_option.values() for cid in per_config})}
    return {key: _entry(key, stamps[key], config_id, fields, configs.get(config_id))
            for key, per_config in by_option.items()
            for config_id, fields in [max(per_config.items())]}


def _field(point: dict[str, Any]) -> dict[str, Any]:
    status = point["status"] or ""
    return {**{name: point[name] for name in GREEK_NAMES}, "price": None,
            "option_price": point["option_price"], "underlying_price": point["underlying_price"],
            "time_to_expiry": point["time_to_expiry"], "sigma": point["sigma"],
            "sigma_source": point["sigma_source"] or None, "status": status.split("|")[0],
            "stale_underlying": status.endswith("|" + STALE_FLAG)}


def _entry(key: str, time: Any, config_id: int, points: dict[str, dict[str, Any]],
           config: SignalConfig | None) -> dict[str, Any]:
    fields = {name: _field(point) for name, point in points.items()}
    main_field = "ltp" if "ltp" in fields else sorted(fields)[0]
    main = fields[main_field]
    model = ((config.config if config else {}).get("option_greeks") or {}).get("model") or DEFAULT_MODEL
    inst = parse_instrument_key(key)
    return {
        "instrument_key": key, "timestamp": time.isoformat(), "ts": time.timestamp(), "price_field": main_field,
        "greeks": {name: main[name] for name in GREEK_NAMES},
        "underlying_key": underlying_for(inst, model, frozenset(settings.SIGNAL_INDEX_SYMBOLS)),
        "underlying_price": main["underlying_price"], "option_price": main["option_price"], "model_price": None,
        "sigma": main["sigma"], "sigma_source": main["sigma_source"], "status": main["status"],
        "stale_underlying": main["stale_underlying"], "reason": None, "time_to_expiry": main["time_to_expiry"],
        "model": model, "config_id": config_id, "config_name": config.name if config else None, "fields": fields,
    }


def stored_chain(underlying_key: str, expiry: date) -> ChainSnapshot:
    """`signals.options.chains.load_chain` from the stored values: the registry's options with their newest stored
    Greeks, and the newest stored tick of the reference instrument."""
    options = chain_instruments(underlying_key, expiry)
    entries = latest_greeks([key for key, _, _ in options])
    models = Counter(e["model"] for e in entries.values())
    model = models.most_common(1)[0][0] if models else DEFAULT_MODEL
    ref_key = reference_key(underlying_key, expiry, model)
    ref = latest_tick(ref_key)
    return ChainSnapshot(underlying_key, expiry, options, entries, model, ref_key,
                         ref["ltp"] if ref else None, ref["timestamp"] if ref else None)
