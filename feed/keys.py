"""Redis key and stream names, in one place (docs/REFERENCE.md §3.2, §3.5)."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def tick_stream(symbol_key: str) -> str:
    return f"tick_stream:{symbol_key}"


def output_stream(symbol_key: str) -> str:
    return f"signal_output_stream:{symbol_key}"


def output_list(instrument_key: str) -> str:
    return f"computed_data:{instrument_key}"


def latest_tick(instrument_key: str) -> str:
    """Hash with the newest tick by tick time: fields ``ts`` (epoch seconds) and ``data`` (JSON)."""
    return f"signal:latest:tick:{instrument_key}"


def price_history(instrument_key: str) -> str:
    """Sorted set of recent ticks scored by tick time, to find the value at or before a given time."""
    return f"signal:history:{instrument_key}"


def latest_result(kind: str, instrument_key: str, suffix: str = "") -> str:
    """Cached latest computation result for the realtime API: kind is computed/greeks/indicators/moneyness."""
    return f"signal:latest:{kind}:{instrument_key}" + (f":{suffix}" if suffix else "")


def tick_streams() -> str:
    """Set of the tick streams bridges read (each has the consumer group), for monitoring without a SCAN."""
    return "signal:tick_streams"


def emitted_batch(batch_id: str) -> str:
    """Marker that a tick batch's outputs were written (so a redelivered batch does not write them twice)."""
    return f"signal:emitted:{batch_id}"


def greeks_history_progress(run_id: str) -> str:
    """Hash of a ``compute_greeks`` run's finished chunks: chunk number -> JSON counts."""
    return f"signal:greeks:history:{run_id}"


def topic_group(channel: str, instrument_key: str, params: dict[str, Any] | None = None) -> str:
    if not params:
        return _plain_topic_group(channel, instrument_key)
    return _topic_group(channel, instrument_key, json.dumps(params, sort_keys=True, separators=(",", ":")))


@lru_cache(maxsize=65536)
def _plain_topic_group(channel: str, instrument_key: str) -> str:
    return _topic_group(channel, instrument_key, "")


def _topic_group(channel: str, instrument_key: str, params_json: str) -> str:
    """A Channels group name for a WebSocket topic.

    Group names allow only ASCII letters, digits, '-', '_' and '.', up to 100 characters, so the readable part is
    sanitised and a hash of the exact topic keeps distinct keys (``A@B`` vs ``A_B``) apart.
    """
    topic = channel + "|" + instrument_key
    if params_json:
        topic += "|" + params_json
    digest = hashlib.sha1(topic.encode()).hexdigest()[:16]
    readable = _UNSAFE.sub("_", instrument_key)[:60]
    return f"t.{channel[:12]}.{readable}.{digest}"


# Pipeline and delivery
def ws_connections(user: str) -> str:
    """Sorted set of one user's open WebSocket connections (channel names), scored by their last sign of life."""
    return f"signal:ws:connections:{user}"


def moneyness_interest(underlying_key: str) -> str:
    """Sorted set of ``{"expiry_date", "level"}`` topics WebSocket clients subscribed to, scored by time."""
    return f"signal:moneyness:interest:{underlying_key}"


def layer_group_channel(prefix: str, group: str) -> str:
    """The Pub/Sub channel channels-redis' PubSub layer (prefix ``prefix``) delivers a Channels group's messages on."""
    return f"{prefix}__group__{group}"
