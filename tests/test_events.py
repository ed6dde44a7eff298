"""The WebSocket event schema (`signals.delivery.events`): every event a real batch sends follows it, the consumer
forwards each as a data frame, and `check_event` refuses events that break it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from feed import keys
from signal_project.asgi import application
from signals.delivery import fanout
from signals.delivery.events import (
    CHANNEL_PARAMS,
    DataFrame,
    EventError,
    SignalEvent,
    check_event,
    coalesce,
    signal_event,
)
from signals.delivery.subscriptions import CHANNELS
from signals.pipeline.batch import process_batch
from tests.factories import create_config, price_config
from tests.greeks_helpers import (
    EXPIRY,
    SPOT,
    batch,
    chain_ticks,
    close_thread_connections,
    greeks_config,
    option_key,
)

OPTION = option_key("call", 24000)
TOPICS = [  # one subscription per channel
    ("computed", SPOT, {}),
    ("greeks", OPTION, {}),
    ("moneyness", SPOT, {"expiry_date": EXPIRY, "level": "ATM"}),
    ("indicators", SPOT, {"timeframe": "1m"}),
    ("chain", SPOT, {"expiry_date": EXPIRY}),
]


def test_every_channel_a_client_can_subscribe_to_has_an_event_schema() -> None:
    assert set(CHANNELS) == set(CHANNEL_PARAMS)


def test_check_event_refuses_events_that_break_the_schema() -> None:
    record = {"instrument_key": SPOT, "computations": []}
    good = signal_event("computed", SPOT, record, "2025-06-20T04:00:00+00:00")
    check_event(good)
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "params"},
        {**good, "extra": 1},
        {**good, "type": "data"},
        {**good, "channel": "weather"},
        {**good, "instrument_key": ""},
        {**good, "params": {"timeframe": "1m"}},
        {**good, "timestamp": "yesterday"},
        {**good, "data": [record]},
        {**good, "data": {**record, "instrument_key": "NSE@BANKNIFTY@index"}},
        signal_event("indicators", SPOT, {"instrument_key": SPOT, "timeframe": "5m"}, good["timestamp"],
                     {"timeframe": "1m"}),
        signal_event("moneyness", SPOT, {"underlying": SPOT, "expiry_date": EXPIRY, "level": "ATM"},
                     good["timestamp"], {"expiry_date": EXPIRY, "level": "ATM"}),  # no atm_iv
        _chain_event({"strike": 24000}),  # a row without a side
        _chain_event({"strike": 24000, "call": {"strike": 24100}}),  # a side of another strike
        _chain_event({"strike": 24000, "straddle": {"strike": 24000}}),
        {**_chain_event({"strike": 24000, "put": {"strike": 24000}}), "params": {"expiry_date": EXPIRY, "x": 1}},
    ]
    for event in broken:
        with pytest.raises(EventError):
            check_event(event)


def _chain_event(*rows: dict[str, Any]) -> SignalEvent:
    data = {"underlying": SPOT, "expiry_date": EXPIRY, "spot": 24010.0, "timestamp": "2025-06-20T04:00:00+00:00",
            "strikes": list(rows)}
    return signal_event("chain", SPOT, data, data["timestamp"], {"expiry_date": EXPIRY})


def test_a_chain_event_passes_and_coalescing_keeps_every_changed_side() -> None:
    older = _chain_event({"strike": 24000, "call": {"strike": 24000, "iv": 0.1}},
                         {"strike": 24050, "put": {"strike": 24050, "iv": 0.2}})
    newer = _chain_event({"strike": 24000, "put": {"strike": 24000, "iv": 0.3}},
                         {"strike": 24050, "put": {"strike": 24050, "iv": 0.25}})
    check_event(older)
    merged = coalesce(older, newer)
    check_event(merged)
    assert merged["data"]["strikes"] == [
        {"strike": 24000, "call": {"strike": 24000, "iv": 0.1}, "put": {"strike": 24000, "iv": 0.3}},
        {"strike": 24050, "put": {"strike": 24050, "iv": 0.25}}]
    plain = signal_event("computed", SPOT, {"instrument_key": SPOT}, "2025-06-20T04:00:00+00:00")
    assert coalesce(plain, {**plain, "timestamp": "2025-06-20T04:00:01+00:00"})["timestamp"].endswith("01+00:00")


async def _subscribe(ws: WebsocketCommunicator, channel: str, key: str, params: dict[str, Any]) -> None:
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": channel, "instrument_key": key,
                                           "params": params}))
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert json.loads(await ws.receive_from())["type"] == "snapshot"


async def _data_frames_of_every_channel(ws: WebsocketCommunicator, timeout: float = 20) -> dict[str, Any]:
    """The first data frame of each channel, reading frames until every channel has sent one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: dict[str, Any] = {}
    while set(found) != set(CHANNEL_PARAMS):
        frame = json.loads(await ws.receive_from(timeout=max(deadline - loop.time(), 0.1)))
        found.setdefault(frame["channel"], frame)
    return found


@pytest.mark.django_db(transaction=True)
async def test_every_event_a_batch_sends_follows_the_schema(make_token: Any, r: Any, monkeypatch: Any) -> None:
    sent: list[tuple[str, SignalEvent]] = []
    targets = fanout.targets

    def recording_targets(events: list[tuple[str, SignalEvent]], known: Any = None) -> Any:
        sent.extend(events)
        return targets(events, known)

    monkeypatch.setattr(fanout, "targets", recording_targets)
    document = greeks_config("events-chain")
    document["moneyness"] = {"underlying": SPOT, "expiry": EXPIRY, "levels": ["ATM"]}
    await sync_to_async(create_config)(document)
    await sync_to_async(create_config)(price_config(
        "events-spot", SPOT, technical_indicators=[{"name": "sma", "parameters": {"length": 3}}]))
    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    await ws.receive_from()
    for channel, key, params in TOPICS:
        await _subscribe(ws, channel, key, params)

    await sync_to_async(process_batch)(batch(*chain_ticks()))
    frames = await _data_frames_of_every_channel(ws)

    assert {event["channel"] for _, event in sent} == set(CHANNEL_PARAMS)  # every producer is covered
    for group, event in sent:
        check_event(event)
        assert group == keys.topic_group(event["channel"], event["instrument_key"], event["params"] or None)
    for channel, key, _ in TOPICS:
        frame = frames[channel]
        assert set(frame) == DataFrame.__required_keys__
        assert (frame["type"], frame["instrument_key"], frame["seq"]) == ("data", key, 1)
        assert any(frame["data"] == event["data"] and frame["timestamp"] == event["timestamp"]
                   for _, event in sent if event["channel"] == channel)
    await ws.disconnect()
    await close_thread_connections()
