"""The data Redis as a three-node Redis Cluster (collected only under ``REDIS_CLUSTER``: `make test-cluster`, which
`make test` runs after the suite). Ticks of two underlyings whose keys lie on different nodes travel from their
own streams and from one shared (sharded) stream through bridges and a real worker to every sink, the REST API
and a WebSocket, with Redis and with RabbitMQ as the broker; the entries a killed bridge held are sent by another;
nothing is lost or written twice. The
cluster client itself refuses any command or script whose keys span slots, so every path here proves it uses none.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import amqp
import pytest
import redis as redis_lib
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections

from feed import keys
from signal_project.asgi import application
from tests.factories import create_config, fields, price_config, tick
from tests.support import consumer_pending, start_bridge, stop_process, wait_for

SPOTS = {"NSE@NIFTY": "NSE@NIFTY@index", "NSE@RELIANCE": "NSE@RELIANCE@equities"}
SHARED = "tick_stream:shard:1"  # a producer's sharded stream: both underlyings, a name with no hash tag
PER_STREAM = 60
RABBIT = "amqp://guest:guest@127.0.0.1:5672//"


def node_of(r: Any, key: str) -> str:
    return r.get_node_from_key(key).name


def streams() -> list[str]:
    return [keys.tick_stream(symbol) for symbol in SPOTS] + [SHARED]


def publish(r: Any, start: int) -> dict[str, list[float]]:
    """PER_STREAM ticks per underlying on its own stream and as many on the shared one; the prices sent, by spot."""
    sent: dict[str, list[float]] = {spot: [] for spot in SPOTS.values()}
    for i in range(start, start + PER_STREAM):
        for n, (symbol, spot) in enumerate(SPOTS.items()):
            for stream, price in ((keys.tick_stream(symbol), 10_000 + n * 5_000 + i),
                                  (SHARED, 10_000 + n * 5_000 + 1_000 + i)):
                r.xadd(stream, fields(tick(spot, price, at=i * 0.01 + (0.005 if stream == SHARED else 0))))
                sent[spot].append(price)
    return sent


def test_every_key_of_an_underlying_shares_its_node_and_the_two_underlyings_do_not(r: Any) -> None:
    for symbol, spot in SPOTS.items():
        own = {keys.tick_stream(symbol), keys.output_stream(symbol), keys.output_list(spot), keys.latest_tick(spot),
               keys.price_history(spot), keys.latest_result("computed", spot, "1"), keys.bars_open("1m", spot),
               keys.bars_timeframes(spot), keys.batch_ticket(symbol), keys.batch_done(symbol),
               keys.emitted_entries(SHARED, keys.shard(spot)), keys.emitted_once("run", keys.shard(spot)),
               keys.output_list(f"{symbol}@options@2025-06-26@call@24000")}
        assert len({r.keyslot(key) for key in own}) == 1, own
    assert node_of(r, keys.output_stream("NSE@NIFTY")) != node_of(r, keys.output_stream("NSE@RELIANCE"))


def hold_a_queue(broker: str) -> tuple[str, dict[str, str]]:
    """A queue that always has a task waiting (a bridge routing to it holds what it reads), and the processes'
    environment for the broker."""
    queue = f"held-{uuid.uuid4().hex[:8]}"
    if broker == "redis":
        redis_lib.Redis.from_url(settings.CELERY_BROKER_URL).lpush(queue, "a task that is never taken")
        return queue, {}
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        channel.basic_publish(amqp.Message("a task that is never taken"), routing_key=queue)
    return queue, {"TEST_CELERY_BROKER_URL": RABBIT}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
async def test_two_underlyings_on_two_nodes_reach_every_sink_through_a_killed_bridge(
        broker: str, start_worker: Any, make_token: Any, auth_client: Any, r: Any) -> None:
    from signals.models import Tick

    for symbol in SPOTS:
        name = "price-" + symbol.split("@")[1].lower()
        await sync_to_async(create_config)(price_config(name=name, pattern=f"{symbol}@*"))
    held, env = await sync_to_async(hold_a_queue)(broker)
    r.config_resetstat(target_nodes=r.PRIMARIES)
    await sync_to_async(start_worker)("signals", extra_env=env)
    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    assert json.loads(await ws.receive_from())["type"] == "authenticated"
    for spot in SPOTS.values():
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "computed", "instrument_key": spot}))
        assert [json.loads(await ws.receive_from())["type"] for _ in range(2)] == ["subscribed", "snapshot"]

    # The first bridge routes both underlyings to a queue that always has a task waiting: it holds what it reads.
    doomed = start_bridge("doomed", SIGNAL_QUEUE_ROUTES=f"NSE@NIFTY={held},NSE@RELIANCE={held}",
                          SIGNAL_BATCH_MAX_WAIT_MS="600000", **env)
    survivor = None
    try:
        sent = publish(r, 0)
        await sync_to_async(wait_for)(
            lambda: all(r.exists(s) and r.xinfo_groups(s) for s in streams())
            and sum(consumer_pending(r, s, "doomed") for s in streams()) == 4 * PER_STREAM, timeout=60)
        stop_process(doomed, kill=True)
        survivor = start_bridge("survivor", **env)
        for spot, prices in publish(r, PER_STREAM).items():
            sent[spot] += prices
        total = sum(len(prices) for prices in sent.values())
        await sync_to_async(wait_for)(
            lambda: Tick.objects.count() >= total
            and sum(r.xpending(s, "signal_service")["pending"] for s in streams()) == 0, timeout=90)
    finally:
        stop_process(doomed, kill=True)
        if survivor is not None:
            stop_process(survivor)
        if broker == "rabbitmq":
            with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
                connection.channel().queue_delete(held)

    assert await sync_to_async(Tick.objects.count)() == total
    frames = [json.loads(await ws.receive_from(timeout=20)) for _ in range(total)]
    for symbol, spot in SPOTS.items():
        records = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream(symbol))]
        assert sorted(rec["tick_data"]["ltp"] for rec in records) == sorted(sent[spot])
        assert len({rec["record_id"] for rec in records}) == len(records)  # none written twice
        assert r.llen(keys.output_list(spot)) == len(sent[spot])
        newest = max(records, key=lambda rec: rec["tick_data"]["timestamp"])
        response = await sync_to_async(auth_client.get)(f"/api/v2/signals/realtime/price/{spot}")
        assert response.status_code == 200 and response.json()["ltp"] == newest["tick_data"]["ltp"]
        own = [f for f in frames if f["instrument_key"] == spot]
        assert sorted(f["data"]["tick_data"]["ltp"] for f in own) == sorted(sent[spot])
        assert [f["seq"] for f in own] == list(range(1, len(sent[spot]) + 1))
    assert await ws.receive_nothing(timeout=0.5)  # no frame twice
    # redis-py asks a node for the keys of a command it cannot parse (a round trip per command): none was left
    stats = r.info("commandstats", target_nodes=r.PRIMARIES)
    assert [node for node, found in stats.items() if "cmdstat_command|getkeys" in found] == []
    assert sum(found.get("cmdstat_evalsha", {}).get("calls", 0) for found in stats.values()) > 0
    await ws.disconnect()
    await sync_to_async(connections.close_all)()
