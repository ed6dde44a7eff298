"""Helpers that build realistic ticks and configs for tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2025, 6, 20, 4, 0, tzinfo=UTC)  # 09:30 IST


def tick(key: str = "NSE@NIFTY@index", ltp: float = 24000.0, at: datetime | float = 0.0, **extra: Any) -> dict:
    when = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    return {"instrument_key": key, "ltp": ltp, "ltt": when.isoformat(), **extra}


def fields(body: dict) -> dict[str, str]:
    return {"data": json.dumps(body)}


def price_config(name: str = "nifty-price", pattern: str = "NSE@NIFTY@*", **overrides: Any) -> dict:
    return {
        "name": name, "version": "1.0", "instrument_key": pattern, "interval": "1m", "frequency": "every_tick",
        "internal_functions": [{"name": "price", "parameters": {}}], **overrides,
    }


def create_config(document: dict) -> Any:
    from configs.models import SignalConfig

    config = SignalConfig(name=document["name"], config=document)
    config.save(changed_by="test")
    return config


def normalised(body: dict, source_id: str) -> dict:
    from feed.ticks import parse_tick

    out = parse_tick(body)
    out["source_id"] = source_id
    return out
