"""Redis key and stream names, in one place (docs/REFERENCE.md §3.2, §3.5).

On a Redis Cluster (`feed.redis_client.is_cluster`) every key of one underlying carries that underlying's
``EXCHANGE@SYMBOL`` as its hash tag, written where the name holds the instrument key: ``computed_data:{NSE@NIFTY}@index``,
``signal_output_stream:{NSE@NIFTY}``. A tick batch (one underlying) then reads and writes one slot, so its scripts
run on one node; keys of no underlying (config version, locks) land anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

from feed import redis_client

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def shard(instrument_key: str) -> str:
    """The ``EXCHANGE@SYMBOL`` an instrument's (or underlying's) keys are tagged with on a cluster; "" on one
    server, where every key shares the one shard."""
    head, at, rest = instrument_key.partition("@")
    if not at or not redis_client.is_cluster():
        return ""
    return head + "@" + rest.partition("@")[0]


def key_shard(name: str) -> str:
    """The shard a key name carries as its hash tag on a cluster ("" on one server, or for a key of no underlying)."""
    if not redis_client.is_cluster():
        return ""
    start = name.find("{")
    end = name.find("}", start + 1)
    return name[start + 1:end] if start >= 0 and end > start + 1 else ""


def _tagged(instrument_key: str) -> str:
    """The instrument key as written in key names: as is on one server, its ``EXCHANGE@SYMBOL`` in braces (the hash
    tag) on a cluster."""
    tag = shard(instrument_key)
    return "{" + tag + "}" + instrument_key[len(tag):] if tag else instrument_key


def tick_stream(symbol_key: str) -> str:
    return f"tick_stream:{_tagged(symbol_key)}"


def output_stream(symbol_key: str) -> str:
    return f"signal_output_stream:{_tagged(symbol_key)}"


def output_list(instrument_key: str) -> str:
    return f"computed_data:{_tagged(instrument_key)}"


def latest_tick(instrument_key: str) -> str:
    """Hash with the newest tick by tick time: fields ``ts`` (epoch seconds) and ``data`` (JSON)."""
    return f"signal:latest:tick:{_tagged(instrument_key)}"


def price_history(instrument_key: str) -> str:
    """Sorted set of recent ticks scored by tick time, to find the value at or before a given time."""
    return f"signal:history:{_tagged(instrument_key)}"


def latest_result(kind: str, instrument_key: str, suffix: str = "") -> str:
    """Cached latest computation result for the realtime API: kind is computed/greeks/indicators/moneyness."""
    return f"signal:latest:{kind}:{_tagged(instrument_key)}" + (f":{suffix}" if suffix else "")


def tick_streams() -> str:
    """Set of the tick streams bridges read (each has the consumer group), for monitoring without a SCAN."""
    return "signal:tick_streams"


def stream_owner(stream: str) -> str:
    """The consumer name of the bridge that reads new entries of a tick stream, with a ttl it renews (its lease)."""
    return f"signal:bridge:owner:{stream}"


def live_bridges() -> str:
    """Sorted set of the bridges' consumer names, scored by when their lease ends (epoch seconds)."""
    return "signal:bridge:live"


def configs_version() -> str:
    """Counter moved by every config change: workers reload the enabled configs when it moves."""
    return "signal:configs:version"


def stream_metrics() -> str:
    """Hash of tick-stream lag and queue lengths, written by a beat task and read by `/metrics`."""
    return "signal:metrics:streams"


def emitted_once(run_id: str, tag: str = "") -> str:
    """Marker that a time-driven run's outputs were written (so a retried or repeated run of the same schedule
    period does not write them twice); ``tag``: the `shard` the outputs go to (a cluster writes each apart)."""
    return f"signal:emitted:{{{tag}}}:{run_id}" if tag else f"signal:emitted:{run_id}"


def emitted_entries(stream: str, tag: str = "") -> str:
    """Hash of a tick stream's entries whose outputs were written and which are not yet acknowledged (entry id ->
    1): a batch redelivered, or its entries reclaimed and regrouped, writes each entry's outputs once. ``tag``: the
    `shard` of the entries' underlying (on a cluster a stream may carry several)."""
    return f"signal:emitted_entries:{{{tag}}}:{stream}" if tag else f"signal:emitted_entries:{stream}"


def batch_ticket(symbol_key: str) -> str:
    """Counter of the tick batches bridges have sent for an underlying: each batch's ticket (its turn)."""
    return f"signal:turns:{_tagged(symbol_key)}:ticket"


def batch_done(symbol_key: str) -> str:
    """The newest ticket of an underlying whose batch finished: the next one may run."""
    return f"signal:turns:{_tagged(symbol_key)}:done"


def batch_holder(symbol_key: str) -> str:
    """The ticket of the underlying's batch running now (expires unless renewed: a dead worker holds nothing)."""
    return f"signal:turns:{_tagged(symbol_key)}:holder"


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


# Bars
# Every bars key of one instrument carries a hash tag (on one server the instrument key, ``{NSE@NIFTY@index}``; on a
# cluster its underlying's, as every key), so the scripts that touch several of them stay on one slot.


def _bars_tag(instrument_key: str) -> str:
    return _tagged(instrument_key) if redis_client.is_cluster() else "{" + instrument_key + "}"


def bars_chunks(timeframe: str, instrument_key: str) -> str:
    """Hash: chunk id (ISO date of the chunk's first day) -> JSON ``{"u", "r", "b": [bars]}``
    (`signals.bars.chunk_cache`)."""
    return f"signal:bars:chunks:{timeframe}:{_bars_tag(instrument_key)}"


def bars_upto(timeframe: str, instrument_key: str) -> str:
    """Hash: chunk id -> covered-until instant (epoch seconds) of the cached chunk (checked by late ticks)."""
    return f"signal:bars:upto:{timeframe}:{_bars_tag(instrument_key)}"


def bars_open(timeframe: str, instrument_key: str) -> str:
    """Hash: the still-open bar (fields in `signals.bars.open_bar`)."""
    return f"signal:bars:open:{timeframe}:{_bars_tag(instrument_key)}"


def bars_timeframes(instrument_key: str) -> str:
    """Set of the timeframes with cached chunks or an open bar for the instrument."""
    return f"signal:bars:tfs:{_bars_tag(instrument_key)}"


def bars_hwm(instrument_key: str) -> str:
    """Largest tick time the pipeline reported to the bars (expires when ticks stop being reported)."""
    return f"signal:bars:hwm:{_bars_tag(instrument_key)}"


def bars_generation(instrument_key: str) -> str:
    """Counter moved by late ticks and imports: bars computed before it moved are not cached."""
    return f"signal:bars:gen:{_bars_tag(instrument_key)}"


def bars_first_tick(instrument_key: str) -> str:
    """Time of the instrument's oldest stored tick (bounds look-backs; dropped by imports)."""
    return f"signal:bars:first:{_bars_tag(instrument_key)}"


# Options, schedules and configs
def schedule_running(schedule_key: str) -> str:
    """Lock held (a token with a TTL) while one beat schedule's configs run, so runs of a schedule never overlap."""
    return f"signal:schedule:running:{schedule_key}"


def beat_lock() -> str:
    """The single-beat lock's default name (``SIGNAL_BEAT_LOCK_KEY``): held by the one active celery-beat."""
    return "signal:beat:lock"


def config_cache_pattern(config_id: int) -> str:
    """SCAN pattern of every cached latest result of one config: `latest_result` keys whose suffix is its id."""
    return f"signal:latest:*:{int(config_id)}"


def tick_stream_pattern() -> str:
    """Default pattern of the tick streams the bridges read (``SIGNAL_STREAM_PATTERNS``): every `tick_stream`."""
    return "tick_stream:*"


def tick_dead_letters() -> str:
    """Default stream of tick entries that could not be processed (``SIGNAL_DEAD_LETTER_STREAM``)."""
    return "tick_stream:dead"


def config_stream() -> str:
    """Default stream of config changes (``SIGNAL_CONFIG_STREAM``, docs/REFERENCE.md §3.3)."""
    return "signal_config_updates"


def dead_letters(stream: str) -> str:
    """Stream of the entries of ``stream`` that were rejected, with the reason."""
    return f"{stream}:dead"


# Pipeline and delivery
def ws_connections(user: str) -> str:
    """Sorted set of one user's open WebSocket connections (channel names), scored by their last sign of life."""
    return f"signal:ws:connections:{user}"


def moneyness_interest(underlying_key: str) -> str:
    """Sorted set of ``{"expiry_date", "level"}`` topics WebSocket clients subscribed to, scored by time."""
    return f"signal:moneyness:interest:{_tagged(underlying_key)}"


def layer_group_channel(prefix: str, group: str) -> str:
    """The Pub/Sub channel channels-redis' PubSub layer (prefix ``prefix``) delivers a Channels group's messages on."""
    return f"{prefix}__group__{group}"


# API limits (webapi/quotas.py): one key per user and window or day, both counted by one script (one slot)
def rate_window(user: str, kind: str, period_s: int, window: int) -> str:
    """Counter of one user's REST requests of one kind (realtime, historical, writes, other) in one fixed window."""
    return f"signal:rate:{{{_user_tag(user)}}}:{kind}:{period_s}:{window}"


def usage(user: str, day: str) -> str:
    """Hash of one user's REST requests on one exchange date: ``total``, one field per kind, ``throttled``."""
    return f"signal:usage:{{{_user_tag(user)}}}:{day}"


def _user_tag(user: str) -> str:
    """The user, or for a name with a ``}`` (which would end the hash tag early, or leave it empty and the user's
    keys on different slots) a digest of it."""
    return user if "}" not in user else "sha1:" + hashlib.sha1(user.encode()).hexdigest()
