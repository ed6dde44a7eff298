"""The WebSocket events workers send and the frames the consumer forwards them as (docs/REFERENCE.md §6), in one
schema: every producer builds its events with `signal_event`, the consumer reads them by this schema and builds its
``data`` and ``snapshot`` frames here, and the tests check what a real batch sends with `check_event`.

A worker publishes a `SignalEvent` to a topic's Channels group (`signals.delivery.fanout`); the layer calls the
consumer's ``signal_event`` (the event's ``type`` with the dot made an underscore), which forwards the event to each
matching subscription as a `DataFrame` with the subscription's next ``seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict

import orjson

SIGNAL_EVENT: Literal["signal.event"] = "signal.event"

# The params each channel's topics carry (already normalised by the channel, see `signals.delivery.channels`).
CHANNEL_PARAMS: dict[str, frozenset[str]] = {
    "computed": frozenset(),
    "greeks": frozenset(),
    "indicators": frozenset({"timeframe"}),
    "moneyness": frozenset({"expiry_date", "level"}),
    "chain": frozenset({"expiry_date"}),
}


class SignalEvent(TypedDict):
    type: Literal["signal.event"]
    channel: str  # one of CHANNEL_PARAMS
    instrument_key: str  # the topic's instrument (the underlying for moneyness)
    params: dict[str, Any]  # the topic's params ({} for channels without any)
    data: Any  # the channel's value: what its snapshot returns too
    timestamp: str  # ISO-8601 time of the tick the value was computed at


class DataFrame(TypedDict):
    type: Literal["data"]
    subscription_key: str
    channel: str
    instrument_key: str
    data: Any
    timestamp: str
    seq: int  # per subscription; a gap means frames were lost


class ChainData(TypedDict):
    """The ``chain`` channel's data: a batch's changed strikes of one underlying and expiry (a snapshot: all)."""

    underlying: str
    expiry_date: str
    spot: float | None  # the underlying price the newest option was priced with
    timestamp: str | None
    strikes: list[dict[str, Any]]  # {strike, call?, put?}: only the sides that changed (both in a snapshot)


class SnapshotFrame(TypedDict):
    type: Literal["snapshot"]
    subscription_key: str
    channel: str
    instrument_key: str
    data: Any  # None when nothing is cached yet
    seq: int  # the seq of the last data frame sent, so data frames continue from it


def signal_event(channel: str, instrument_key: str, data: Any, timestamp: str,
                 params: dict[str, Any] | None = None) -> SignalEvent:
    return {"type": SIGNAL_EVENT, "channel": channel, "instrument_key": instrument_key,
            "params": {} if params is None else params, "data": data, "timestamp": timestamp}


def data_frame(subscription_key: str, channel: str, instrument_key: str, event: SignalEvent, seq: int,
               coalesced: int = 0) -> DataFrame:
    """``coalesced``: how many older events of this subscription the frame replaces (a slow reader's queue keeps
    the latest per topic); the key is only present when some were."""
    frame: DataFrame = {"type": "data", "subscription_key": subscription_key, "channel": channel,
                        "instrument_key": instrument_key, "data": event["data"], "timestamp": event["timestamp"],
                        "seq": seq}
    if coalesced:
        frame["coalesced"] = coalesced  # type: ignore[typeddict-unknown-key]
    return frame


def frame_prefix(subscription_key: str, event: SignalEvent) -> bytes:
    """`data_frame`'s JSON without its closing brace, ``seq`` and ``coalesced``: what every subscription of a topic
    shares (each appends its own ``seq``, `SharedEvent.frame`), so an event is serialised once per
    process, not once per socket."""
    body = orjson.dumps({"type": "data", "subscription_key": subscription_key, "channel": event["channel"],
                         "instrument_key": event["instrument_key"], "data": event["data"],
                         "timestamp": event["timestamp"]})
    return body[:-1]


class SharedEvent:
    """One topic's event as every subscriber in a web process gets it (`signals.delivery.hub`): ``count`` events it
    stands for, and its data frame serialised once (without ``seq``, which each subscription numbers itself) on
    first use."""

    __slots__ = ("group", "event", "count", "_prefix")

    def __init__(self, group: str, event: SignalEvent, count: int = 1):
        self.group, self.event, self.count = group, event, count
        self._prefix: bytes | None = None

    def frame(self, seq: int, coalesced: int) -> str:
        """The same JSON as `data_frame` (text: WebSocket text frames carry str in ASGI)."""
        if self._prefix is None:
            self._prefix = frame_prefix(self.group, self.event)
        tail = b',"seq":%d,"coalesced":%d}' % (seq, coalesced) if coalesced else b',"seq":%d}' % seq
        return (self._prefix + tail).decode()


def coalesce(older: SignalEvent, newer: SignalEvent) -> SignalEvent:
    """One event standing for two of the same topic: the newer value, except that a ``chain`` event keeps the
    older event's strikes (and sides) the newer one did not change."""
    if newer["channel"] != "chain":
        return newer
    rows = {row["strike"]: dict(row) for row in older["data"]["strikes"]}
    for row in newer["data"]["strikes"]:
        rows[row["strike"]] = {**rows.get(row["strike"], {}), **row}
    data = {**newer["data"], "strikes": [rows[strike] for strike in sorted(rows)]}
    return {**newer, "data": data}


def snapshot_frame(subscription_key: str, channel: str, instrument_key: str, data: Any, seq: int) -> SnapshotFrame:
    return {"type": "snapshot", "subscription_key": subscription_key, "channel": channel,
            "instrument_key": instrument_key, "data": data, "seq": seq}


class EventError(ValueError):
    pass


def check_event(event: Mapping[str, Any]) -> None:
    """Raise `EventError` unless ``event`` follows `SignalEvent` and its channel's data rules (below)."""
    odd = SignalEvent.__required_keys__ ^ set(event)
    if odd:
        raise EventError(f"fields {sorted(odd)} missing or unexpected in {sorted(event)}")
    if event["type"] != SIGNAL_EVENT:
        raise EventError(f"type {event['type']!r} is not {SIGNAL_EVENT!r}")
    channel = event["channel"]
    if channel not in CHANNEL_PARAMS:
        raise EventError(f"channel {channel!r} is not one of {sorted(CHANNEL_PARAMS)}")
    if not isinstance(event["instrument_key"], str) or not event["instrument_key"]:
        raise EventError("instrument_key must be a non-empty string")
    params = event["params"]
    if not isinstance(params, dict) or set(params) != CHANNEL_PARAMS[channel]:
        raise EventError(f"{channel} params must have exactly {sorted(CHANNEL_PARAMS[channel])}, got {params!r}")
    try:
        datetime.fromisoformat(event["timestamp"])
    except (TypeError, ValueError):
        raise EventError(f"timestamp {event['timestamp']!r} is not ISO-8601") from None
    _check_data(channel, event["instrument_key"], params, event["data"])


def _check_data(channel: str, instrument_key: str, params: dict[str, Any], data: Any) -> None:
    """The data is the channel's value for the topic: it names the topic's instrument (and params) itself."""
    if not isinstance(data, dict):
        raise EventError(f"{channel} data must be an object")
    if channel == "moneyness":
        topic = {"underlying": instrument_key, "expiry_date": params["expiry_date"], "level": params["level"]}
        if "atm_iv" not in data:
            raise EventError("moneyness data must carry atm_iv")
    elif channel == "chain":
        topic = {"underlying": instrument_key, "expiry_date": params["expiry_date"]}
        _check_chain_rows(data)
    else:
        topic = {"instrument_key": instrument_key, **params}
    wrong = {name: data.get(name) for name, value in topic.items() if data.get(name) != value}
    if wrong:
        raise EventError(f"{channel} data is not the topic's {topic}: {wrong}")


def _check_chain_rows(data: dict[str, Any]) -> None:
    odd = ChainData.__required_keys__ ^ set(data)
    if odd:
        raise EventError(f"chain data fields {sorted(odd)} missing or unexpected")
    rows = data["strikes"]
    if not isinstance(rows, list) or not rows:
        raise EventError("chain data must carry at least one strike")
    for row in rows:
        sides = set(row) - {"strike"}
        if "strike" not in row or not sides or sides - {"call", "put"}:
            raise EventError(f"a chain row is {{strike, call?, put?}} with at least one side, got {sorted(row)}")
        for side in sides:
            if row[side]["strike"] != row["strike"]:
                raise EventError(f"the {side} of strike {row['strike']} is priced at {row[side]['strike']}")
