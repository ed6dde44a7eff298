"""WebSocket protocol additions of issue 13 through the real ASGI app, Redis Pub/Sub and the topic hub: the
whole-chain channel against the REST option chain, resume by seq, token expiry on open sockets, per-connection
limits, the session-authenticated dashboard socket, and groups left clean."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from feed import keys
from signal_project.asgi import application
from signals.delivery import fanout
from signals.delivery.events import check_event, signal_event
from signals.pipeline.batch import process_batch
from tests.factories import create_config
from tests.greeks_helpers import (
    EXPIRY,
    SPOT,
    STRIKES,
    batch,
    chain_ticks,
    close_thread_connections,
    greeks_config,
    option_tick,
)

CHAIN = {"type": "subscribe", "channel": "chain", "instrument_key": SPOT, "params": {"expiry_date": EXPIRY}}
COMPUTED = {"type": "subscribe", "channel": "computed", "instrument_key": SPOT}


async def connect(token: str, path: str = "/ws/v2/signals/") -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"{path}?token={token}")
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["type"] == "authenticated"
    return ws


async def ask(ws: WebsocketCommunicator, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json_to(message)
    return await ws.receive_json_from(timeout=5)


async def closed_with(ws: WebsocketCommunicator, timeout: float = 5) -> tuple[int, list[dict[str, Any]]]:
    frames = []
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"], frames
        frames.append(json.loads(output["text"]))


def listeners_of(group: str) -> int:
    from feed.redis_client import get_redis

    name = fanout.group_channel(group)
    return fanout.listeners(get_redis(settings.CHANNEL_LAYER_URL).pubsub_numsub(name)).get(name, 0)


def rest_chain(token: str) -> dict[str, Any]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = client.get(f"/api/v2/signals/option-chain/{SPOT}", {"expiry_date": EXPIRY}).json()
    body.pop("source")
    return body


@pytest.mark.django_db(transaction=True)
async def test_the_chain_channel_matches_the_rest_option_chain(make_token: Any) -> None:
    token = make_token()
    await sync_to_async(create_config)(greeks_config("ws-chain"))
    await sync_to_async(process_batch)(batch(*chain_ticks()))
    ws = await connect(token)
    subscribed = await ask(ws, CHAIN)
    assert subscribed["type"] == "subscribed"
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 0
    assert snapshot["data"] == await sync_to_async(rest_chain)(token)
    assert [row["strike"] for row in snapshot["data"]["strikes"]] == list(STRIKES)

    # one batch moving two options: one frame, with exactly those sides, as the REST chain now shows them
    moved = [option_tick("call", 24000, 130.0, 2.0), option_tick("put", 23900, 40.0, 2.0),
             option_tick("call", 24000, 131.5, 2.5)]
    await sync_to_async(process_batch)(batch(*moved, start=100))
    frame = await ws.receive_json_from(timeout=10)
    assert frame["type"] == "data" and frame["seq"] == 1 and frame["channel"] == "chain"
    rows = {row["strike"]: row for row in frame["data"]["strikes"]}
    assert set(rows) == {23900, 24000} and set(rows[24000]) == {"strike", "call"} and set(rows[23900]) == {
        "strike", "put"}
    assert rows[24000]["call"]["option_price"] == 131.5  # the batch's newest tick of the option
    rest = {row["strike"]: row for row in (await sync_to_async(rest_chain)(token))["strikes"]}
    assert rows[24000]["call"] == rest[24000]["call"] and rows[23900]["put"] == rest[23900]["put"]
    assert "oi" in rows[24000]["call"]
    assert (await ask(ws, {"type": "ping"}))["type"] == "pong"  # one frame per batch: nothing came after it
    group = subscribed["subscription_key"]
    assert await sync_to_async(listeners_of)(group) == 1
    await ws.disconnect()
    assert await sync_to_async(listeners_of)(group) == 0  # the group is left when the socket goes
    await close_thread_connections()


async def test_resume_continues_from_the_clients_last_seq(make_token: Any) -> None:
    ws = await connect(make_token())
    subscribed = await ask(ws, {**COMPUTED, "seq": 41})
    snapshot = await ws.receive_json_from()
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 41
    group = subscribed["subscription_key"]
    event = signal_event("computed", SPOT, {"instrument_key": SPOT, "computations": []}, "2025-06-20T04:00:00+00:00")
    await sync_to_async(fanout.publish)([(group, event)])
    assert (await ws.receive_json_from(timeout=5))["seq"] == 42
    # resuming an open subscription: a fresh snapshot at the client's seq, then data frames after it
    await ws.send_json_to({**COMPUTED, "seq": 7})
    assert (await ws.receive_json_from())["type"] == "subscribed"
    assert (await ws.receive_json_from())["seq"] == 7
    await sync_to_async(fanout.publish)([(group, event)])
    assert (await ws.receive_json_from(timeout=5))["seq"] == 8
    assert (await ask(ws, {**COMPUTED, "seq": -1}))["code"] == "bad_seq"
    await ws.disconnect()


async def test_an_open_socket_is_closed_with_4401_when_its_token_expires(make_token: Any) -> None:
    ws = await connect(make_token(ttl=1))
    code, frames = await closed_with(ws, timeout=4)
    assert code == 4401 and frames[-1]["code"] == "token_expired"


async def test_a_fresh_token_before_exp_keeps_the_socket(make_token: Any) -> None:
    ws = await connect(make_token(sub="carol", ttl=1))
    assert (await ask(ws, {"type": "auth", "token": make_token(sub="carol", ttl=60)}))["type"] == "authenticated"
    await asyncio.sleep(2.2)
    assert (await ask(ws, {"type": "ping"}))["type"] == "pong"
    await ws.disconnect()


async def test_limits_on_subscriptions_message_size_and_rate(make_token: Any) -> None:
    with override_settings(SIGNAL_WS_MAX_SUBSCRIPTIONS=2, SIGNAL_WS_MAX_MESSAGE_BYTES=200,
                           SIGNAL_WS_MESSAGES_PER_S=1.0, SIGNAL_WS_MESSAGE_BURST=6):
        ws = await connect(make_token())
        for key in ("NSE@NIFTY@index", "NSE@BANKNIFTY@index"):
            assert (await ask(ws, {**COMPUTED, "instrument_key": key}))["type"] == "subscribed"
            await ws.receive_json_from()
        refused = await ask(ws, {**COMPUTED, "instrument_key": "NSE@INDVIX@index"})
        assert refused["code"] == "too_many_subscriptions" and "2" in refused["message"]
        big = await ask(ws, {"type": "ping", "pad": "x" * 300})
        assert big["code"] == "too_large" and "200" in big["message"]
        replies = [await ask(ws, {"type": "ping"}) for _ in range(4)]
        assert [r["type"] for r in replies[:2]] == ["pong", "pong"] and replies[-1]["code"] == "rate_limited"
        await asyncio.sleep(1.1)
        assert (await ask(ws, {"type": "ping"}))["type"] == "pong"  # the bucket refills
        await ws.disconnect()


def test_websocket_limits_are_checked_at_start_up() -> None:
    from webapi.checks import signal_settings

    with override_settings(SIGNAL_WS_MAX_SUBSCRIPTIONS=0, SIGNAL_WS_MESSAGES_PER_S=0.0):
        messages = [e.msg for e in signal_settings(None)]
    assert any("SIGNAL_WS_MAX_SUBSCRIPTIONS" in m for m in messages)
    assert any("SIGNAL_WS_MESSAGES_PER_S" in m for m in messages)


# --- the dashboard's session socket ---------------------------------------------------------------------------
def session_cookie(username: str, staff: bool = False, group: bool = False) -> str:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user(username, password="pw-123456", is_staff=staff)
    if group:
        user.groups.add(Group.objects.get_or_create(name="dashboard")[0])
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def dashboard_socket(cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    ws = WebsocketCommunicator(application, "/ws/v2/dashboard/", headers=headers)
    assert (await ws.connect())[0]
    return ws


@pytest.mark.django_db(transaction=True)
async def test_the_dashboard_socket_takes_staff_and_dashboard_group_sessions_only() -> None:
    for name, staff, group, allowed in (("ops", True, False, True), ("viewer", False, True, True),
                                        ("someone", False, False, False)):
        ws = await dashboard_socket(await sync_to_async(session_cookie)(name, staff, group))
        first = await ws.receive_json_from(timeout=5)
        if allowed:
            assert first == {"type": "authenticated", "user": f"session:{name}"}
            reply = await ask(ws, CHAIN)
            assert reply["type"] == "subscribed"
            await ws.disconnect()
        else:
            assert first["code"] == "unauthorized"
            assert (await closed_with(ws))[0] == 4401
    anonymous = await dashboard_socket(None)
    assert (await closed_with(anonymous))[0] == 4401
    await close_thread_connections()


async def test_a_chain_event_is_checked_like_every_event() -> None:
    data = {"underlying": SPOT, "expiry_date": EXPIRY, "spot": 1.0, "timestamp": "2025-06-20T04:00:00+00:00",
            "strikes": [{"strike": 24000, "call": {"strike": 24000}}]}
    check_event(signal_event("chain", SPOT, data, data["timestamp"], {"expiry_date": EXPIRY}))
    assert keys.topic_group("chain", SPOT, {"expiry_date": EXPIRY}) != keys.topic_group("chain", SPOT)


def test_a_batch_asks_for_chain_listeners_with_its_first_reads(r: Any) -> None:
    """A chain nobody watches costs a batch nothing: its listeners are read in the batch's first round trip and no
    chain event is built."""
    from feed.instruments import parse_instrument_key
    from signals.delivery.ws_chain import chain_events
    from signals.pipeline.batch_reads import read_batch
    from tests.greeks_helpers import option_key

    option = option_key("call", 24000)
    reads = read_batch(r, [option])
    channel = fanout.group_channel(keys.topic_group("chain", SPOT, {"expiry_date": EXPIRY}))
    assert reads.listened[channel] == 0
    entry = {"ts": 1.0, "timestamp": "2025-06-20T04:00:00+00:00", "underlying_price": 24000.0}
    assert chain_events([(parse_instrument_key(option), entry)], reads.listened) == []
    assert len(chain_events([(parse_instrument_key(option), entry)], {})) == 1  # unknown: built, NUMSUB decides
