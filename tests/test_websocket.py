"""The WebSocket protocol through the real ASGI app, real Redis Pub/Sub and the web process's topic hub."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from feed import keys
from signal_project.asgi import application
from signals.delivery import fanout
from signals.delivery.events import signal_event

KEY = "NSE@NIFTY@index"


async def connect(token: str | None = None, query: bool = True) -> WebsocketCommunicator:
    path = "/ws/v2/signals/" + (f"?token={token}" if token and query else "")
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def send(communicator: WebsocketCommunicator, message: Any) -> dict[str, Any]:
    await communicator.send_to(text_data=message if isinstance(message, str) else json.dumps(message))
    return json.loads(await communicator.receive_from(timeout=3))


async def closed_with(communicator: WebsocketCommunicator) -> int:
    while True:
        output = await communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_unauthenticated_socket_is_closed_with_4401() -> None:
    communicator = await connect()
    await communicator.send_to(text_data=json.dumps({"type": "subscribe", "channel": "computed",
                                                     "instrument_key": KEY}))
    assert await closed_with(communicator) == 4401


@pytest.mark.parametrize("token", ["not-a-jwt", "expired", "wrong-secret", "no-sub"])
async def test_bad_tokens_are_refused(token: str, make_token: Any) -> None:
    import jwt

    tokens = {
        "not-a-jwt": "abc.def.ghi",
        "expired": make_token(ttl=-10),
        "wrong-secret": jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "another-secret-entirely-0123456789abcdef", "HS256"),
        "no-sub": jwt.encode({"exp": int(time.time()) + 60}, settings.SIGNAL_JWT_SECRET, "HS256"),
    }
    communicator = await connect(tokens[token])
    error = json.loads(await communicator.receive_from(timeout=3))
    assert error["type"] == "error" and error["code"] == "unauthorized"
    assert await closed_with(communicator) == 4401


async def test_token_in_first_message_authenticates(make_token: Any) -> None:
    communicator = await connect()
    reply = await send(communicator, {"type": "auth", "token": make_token(sub="alice")})
    assert reply == {"type": "authenticated", "user": "alice"}
    assert (await send(communicator, {"type": "ping"}))["type"] == "pong"
    await communicator.disconnect()


async def test_bad_messages_get_error_frames_and_the_socket_stays_open(make_token: Any) -> None:
    communicator = await connect(make_token())
    assert (await communicator.receive_json_from())["type"] == "authenticated"
    assert (await send(communicator, "{nope"))["code"] == "bad_json"
    assert (await send(communicator, "[1,2]"))["code"] == "bad_message"
    assert (await send(communicator, {"type": "dance"}))["code"] == "unknown_type"
    reply = await send(communicator, {"type": "subscribe", "channel": "weather", "instrument_key": KEY})
    assert reply["type"] == "error" and reply["code"] == "unknown_channel" and "computed" in reply["message"]
    reply = await send(communicator, {"type": "subscribe", "channel": "computed", "instrument_key": "NSE@NIFTY"})
    assert reply["code"] == "bad_instrument_key"
    reply = await send(communicator, {"type": "unsubscribe", "channel": "computed", "instrument_key": KEY})
    assert reply["code"] == "not_subscribed"
    assert (await send(communicator, {"type": "ping"}))["type"] == "pong"
    await communicator.disconnect()


async def test_subscribe_receives_data_with_seq_and_unsubscribe_stops_it(make_token: Any, r: Any) -> None:
    communicator = await connect(make_token())
    await communicator.receive_json_from()
    ack = await send(communicator, {"type": "subscribe", "channel": "computed",
                                    "instrument_key": "nse@nifty@INDEX"})
    assert ack["type"] == "subscribed" and ack["instrument_key"] == KEY
    group = ack["subscription_key"]
    assert group == keys.topic_group("computed", KEY)
    snapshot = json.loads(await communicator.receive_from(timeout=3))
    assert snapshot["type"] == "snapshot" and snapshot["data"] is None

    event = signal_event("computed", KEY, {"value": 1}, "2025-06-20T04:00:00+00:00")
    sent = await sync_to_async(fanout.publish)([(group, event), (group, {**event, "data": {"value": 2}}),
                                                (keys.topic_group("computed", "NSE@X@index"), event)])
    assert sent == 2  # the topic nobody subscribes to is skipped
    first = json.loads(await communicator.receive_from(timeout=3))
    second = json.loads(await communicator.receive_from(timeout=3))
    assert (first["type"], first["seq"], first["data"]) == ("data", 1, {"value": 1})
    assert (second["seq"], second["data"], second["channel"]) == (2, {"value": 2}, "computed")

    reply = await send(communicator, {"type": "unsubscribe", "subscription_key": group})
    assert reply == {"type": "unsubscribed", "subscription_key": group}
    assert await sync_to_async(fanout.publish)([(group, event)]) == 0
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_snapshot_returns_the_latest_record(make_token: Any, r: Any) -> None:
    r.lpush(keys.output_list(KEY), json.dumps({"instrument_key": KEY, "n": 1}))
    communicator = await connect(make_token())
    await communicator.receive_json_from()
    ack = await send(communicator, {"type": "subscribe", "channel": "computed", "instrument_key": KEY})
    assert json.loads(await communicator.receive_from())["data"] == {"instrument_key": KEY, "n": 1}
    r.lpush(keys.output_list(KEY), json.dumps({"instrument_key": KEY, "n": 2}))
    reply = await send(communicator, {"type": "snapshot", "subscription_key": ack["subscription_key"]})
    assert reply["type"] == "snapshot" and reply["data"]["n"] == 2
    await communicator.disconnect()


async def test_groups_are_left_on_disconnect(make_token: Any, r: Any) -> None:
    communicator = await connect(make_token())
    await communicator.receive_json_from()
    ack = await send(communicator, {"type": "subscribe", "channel": "computed", "instrument_key": KEY})
    await communicator.receive_from()
    channel = fanout.group_channel(ack["subscription_key"])
    assert r.pubsub_numsub(channel)[0][1] == 1
    await communicator.disconnect()
    deadline = time.monotonic() + 3
    while r.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
        await sync_to_async(time.sleep)(0.05)
    assert r.pubsub_numsub(channel)[0][1] == 0
    assert r.zcard(keys.ws_connections("trader-1")) == 0


async def test_per_user_connection_limit(make_token: Any, settings: Any) -> None:
    settings.SIGNAL_WS_MAX_CONNECTIONS_PER_USER = 2
    token = make_token(sub="bob")
    first, second = await connect(token), await connect(token)
    for c in (first, second):
        assert (await c.receive_json_from())["type"] == "authenticated"
    third = await connect(token)
    assert (await third.receive_json_from())["code"] == "too_many_connections"
    assert await closed_with(third) == 4429
    other_user = await connect(make_token(sub="carol"))
    assert (await other_user.receive_json_from())["type"] == "authenticated"
    await first.disconnect()
    fourth = await connect(token)
    assert (await fourth.receive_json_from())["type"] == "authenticated"
    for c in (second, other_user, fourth):
        await c.disconnect()
