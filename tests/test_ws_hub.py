"""The web process's topic hub (signals/delivery/hub.py) on the real Redis: one Pub/Sub subscription per topic
however many local sockets watch it, left when the last one goes; every event handed out in order while the
process keeps up, the latest per topic (counted) when it is behind; the frame serialised once is the protocol's;
the topics subscribed again when Redis restarts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from faults.services import RedisServer
from feed import keys
from feed.redis_client import get_redis
from signal_project.asgi import application
from signals.delivery import fanout
from signals.delivery.events import SharedEvent, data_frame, signal_event
from signals.delivery.hub import BEHIND_S, TopicHub

KEY = "NSE@NIFTY@index"
GROUP = keys.topic_group("computed", KEY)


def listeners() -> int:
    name = fanout.group_channel(GROUP)
    return fanout.listeners(get_redis(settings.CHANNEL_LAYER_URL).pubsub_numsub(name)).get(name, 0)


def event(n: int) -> dict[str, Any]:
    return signal_event("computed", KEY, {"instrument_key": KEY, "n": n}, "2025-06-20T04:00:00+00:00")


async def connect(token: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={token}")
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["type"] == "authenticated"
    await ws.send_json_to({"type": "subscribe", "channel": "computed", "instrument_key": KEY})
    assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    return ws


async def test_one_subscription_per_topic_per_process_left_with_its_last_socket(make_token: Any) -> None:
    first, second = await connect(make_token(sub="a")), await connect(make_token(sub="b"))
    assert await sync_to_async(listeners)() == 1  # both sockets share the process's one subscription
    assert await sync_to_async(fanout.publish)([(GROUP, event(1))]) == 1
    for ws in (first, second):
        frame = await ws.receive_json_from(timeout=3)
        assert (frame["seq"], frame["data"]["n"]) == (1, 1)
    await first.disconnect()
    assert await sync_to_async(listeners)() == 1  # the other socket still watches the topic
    await sync_to_async(fanout.publish)([(GROUP, event(2))])
    frame = await second.receive_json_from(timeout=3)
    assert (frame["seq"], frame["data"]["n"]) == (2, 2)
    await second.disconnect()
    for _ in range(60):
        if not await sync_to_async(listeners)():
            break
        await asyncio.sleep(0.05)
    assert await sync_to_async(listeners)() == 0


async def test_every_event_goes_out_while_keeping_up_and_the_latest_per_topic_when_behind() -> None:
    hub = TopicHub(settings.CHANNEL_LAYER_URL)
    got: list[tuple[int, int]] = []

    class Member:
        def deliver(self, shared: SharedEvent) -> None:
            got.append((shared.event["data"]["n"], shared.count))
            if shared.event["data"]["n"] == 0:
                # the process is busy for longer than BEHIND_S while three more events arrive
                fanout.publish([(GROUP, event(n)) for n in (1, 2, 3)])
                time.sleep(BEHIND_S * 2)

    await hub.join(GROUP, Member())
    try:
        await sync_to_async(fanout.publish)([(GROUP, event(0))])
        await wait_for(lambda: len(got) >= 2)
        await sync_to_async(fanout.publish)([(GROUP, event(4)), (GROUP, event(5))])  # keeping up again
        await wait_for(lambda: len(got) >= 4)
        assert got == [(0, 1), (3, 3), (4, 1), (5, 1)]
    finally:
        await hub.close()


async def wait_for(condition: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


def test_the_shared_frame_is_the_protocols_data_frame() -> None:
    chain = signal_event("chain", KEY, {"underlying": KEY, "expiry_date": "2025-06-26", "spot": float("nan"),
                                        "timestamp": "2025-06-20T04:00:00+00:00", "strikes": [{"strike": 24000}]},
                         "2025-06-20T04:00:00+00:00", {"expiry_date": "2025-06-26"})
    for shared_event, seq, coalesced in ((event(7), 1, 0), (chain, 12, 4)):
        shared = SharedEvent("the-group", shared_event)
        expected = data_frame("the-group", shared_event["channel"], KEY, shared_event, seq, coalesced)
        assert shared.frame(seq, coalesced) == orjson.dumps(expected).decode()
        assert json.loads(shared.frame(seq, coalesced)) == json.loads(orjson.dumps(expected))


async def test_a_join_racing_the_last_leave_keeps_the_topic_subscribed() -> None:
    hub = TopicHub(settings.CHANNEL_LAYER_URL)
    got: list[int] = []

    class Member:
        def deliver(self, shared: SharedEvent) -> None:
            got.append(shared.event["data"]["n"])

    leaving, joining = Member(), Member()
    await hub.join(GROUP, leaving)
    try:
        # the leave's UNSUBSCRIBE is on its way when the join comes in: the join must subscribe again
        await asyncio.gather(hub.leave(GROUP, leaving), hub.join(GROUP, joining))
        assert await sync_to_async(listeners)() == 1
        await sync_to_async(fanout.publish)([(GROUP, event(1))])
        await wait_for(lambda: got)
        assert got == [1]
    finally:
        await hub.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A password-protected redis-server of the test's own, to kill and start again on the same port."""
    server = RedisServer(tmp_path, password="s3cret")
    server.start()
    yield server
    server.kill()


def listeners_on(server: RedisServer, group: str) -> int:
    channel = fanout.group_channel(group)
    return int(dict(server.client().pubsub_numsub(channel)).get(channel.encode(), 0))


def publish_on(server: RedisServer, group: str, n: int) -> int:
    return int(server.client().publish(fanout.group_channel(group), get_channel_layer().serialize(event(n))))


class Collector:
    def __init__(self) -> None:
        self.got: list[int] = []

    def deliver(self, shared: SharedEvent) -> None:
        self.got.append(shared.event["data"]["n"])


async def test_the_topics_are_subscribed_again_after_redis_restarts(own_redis: RedisServer) -> None:
    hub = TopicHub(own_redis.url(0))
    member = Collector()
    await hub.join(GROUP, member)  # on a password-protected server: the connection authenticates first
    try:
        assert await sync_to_async(publish_on)(own_redis, GROUP, 1) == 1  # subscribed once join returned
        await wait_for(lambda: member.got)
        await sync_to_async(own_redis.kill)()
        await sync_to_async(own_redis.start)()  # the hub's connection is gone
        for _ in range(100):
            if await sync_to_async(publish_on)(own_redis, GROUP, 2):
                break
            await asyncio.sleep(0.05)
        await wait_for(lambda: len(member.got) >= 2)
        assert member.got == [1, 2]
    finally:
        await hub.close()
    await asyncio.sleep(0.1)
    assert await sync_to_async(listeners_on)(own_redis, GROUP) == 0  # closing left the topic


async def test_joins_and_leaves_while_redis_is_down_take_effect_when_it_is_back(own_redis: RedisServer) -> None:
    hub = TopicHub(own_redis.url(0))
    leaving, joining = Collector(), Collector()
    other = keys.topic_group("computed", "NSE@BANKNIFTY@index")
    await hub.join(GROUP, leaving)
    try:
        await sync_to_async(own_redis.kill)()
        await asyncio.sleep(0.1)
        # neither raises nor waits for Redis: the hub records them and the reconnection applies them
        await asyncio.wait_for(hub.join(other, joining), 2)
        await asyncio.wait_for(hub.leave(GROUP, leaving), 2)
        await sync_to_async(own_redis.start)()
        for _ in range(100):
            if await sync_to_async(listeners_on)(own_redis, other) == 1:
                break
            await asyncio.sleep(0.05)
        assert await sync_to_async(listeners_on)(own_redis, other) == 1
        assert await sync_to_async(listeners_on)(own_redis, GROUP) == 0  # the left topic is not subscribed again
        await sync_to_async(publish_on)(own_redis, other, 7)
        await wait_for(lambda: joining.got)
        assert joining.got == [7] and leaving.got == []
        # and the hub's own record agrees: joining the left topic again subscribes it
        await hub.join(GROUP, leaving)
        assert await sync_to_async(listeners_on)(own_redis, GROUP) == 1
    finally:
        await hub.close()
