"""WebSocket channel ``indicators`` (docs/REFERENCE.md §6, issue 5).

Subscribe with ``{"type": "subscribe", "channel": "indicators", "instrument_key": "NSE@NIFTY@index",
"params": {"timeframe": "5m"}}`` (any accepted interval spelling; ``5minute`` and ``5m`` are the same topic).
Data = the latest indicator values of a config computing on that instrument and timeframe, pushed by the
technical-indicators computation (`signals.pipeline.computations.indicators`) each time it runs::

    {"instrument_key", "timeframe", "timestamp" (tick time), "bar_time" (start of the bar evaluated),
     "config_id", "config_name", "values": {output_key: number | null}, "bars", "warmup_bars"}

The snapshot (on subscribe and on request) is the newest such entry from Redis.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aredis

from feed import keys
from indicators.timeframes import parse_timeframe
from signals.delivery.channels import ChannelSpec


def indicators_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - {"timeframe"}
    if unknown:
        raise ValueError(f"unknown params {', '.join(sorted(unknown))}; the indicators channel takes timeframe")
    timeframe = params.get("timeframe")
    if timeframe is None or timeframe == "":
        raise ValueError("params.timeframe is required, e.g. {\"timeframe\": \"5m\"}")
    if not isinstance(timeframe, str):
        raise ValueError("params.timeframe must be a string such as '5m'")
    return {"timeframe": parse_timeframe(timeframe).name}


async def _indicators_snapshot(client: aredis.Redis, instrument_key: str, params: dict[str, Any]) -> Any:
    raw = await client.get(keys.latest_result("indicators", instrument_key, params["timeframe"]))
    return json.loads(raw) if raw else None


INDICATORS = ChannelSpec("indicators", _indicators_snapshot, indicators_params)
