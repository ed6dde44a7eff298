"""Ticks XADDed to the stream come out in every sink, through the bridge and a real Celery worker process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from feed import keys
from signal_project.asgi import application
from signals.ingest.bridge import BridgeSettings, StreamBridge
from tests.factories import create_config, fields, price_config, tick

STREAM = "tick_stream:NSE@NIFTY"
OPTION = "NSE@NIFTY@options@2025-06-26@call@24000"


async def wait_until(predicate: Any, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await sync_to_async(predicate)()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s")


def db_counts() -> tuple[int, int]:
    from signals.models import ComputedSignal, Tick

    return Tick.objects.count(), ComputedSignal.objects.count()


@pytest.mark.django_db(transaction=True)
async def test_tick_reaches_output_stream_list_database_and_websocket(start_worker: Any, make_token: Any,
                                                                       r: Any) -> None:
    config = await sync_to_async(create_config)(price_config())
    await sync_to_async(start_worker)("nifty-e2e")

    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    assert json.loads(await ws.receive_from())["type"] == "authenticated"
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "computed",
                                           "instrument_key": "NSE@NIFTY@index"}))
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert json.loads(await ws.receive_from())["type"] == "snapshot"

    r.xadd(STREAM, fields(tick("NSE@NIFTY@index", 24000, at=0)))
    r.xadd(STREAM, {"data": "{broken"})
    r.xadd(STREAM, fields(tick(OPTION, 120.5, at=1)))
    r.xadd(STREAM, fields(tick("NSE@NIFTY@index", 24010, at=2)))

    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "nifty-e2e"}),
                          consumer="e2e")
    await sync_to_async(bridge.discover)()
    assert await sync_to_async(bridge.handle)(await sync_to_async(bridge.read)()) == 3

    entries = await wait_until(lambda: len(r.xrange(keys.output_stream("NSE@NIFTY"))) == 3
                               and r.xrange(keys.output_stream("NSE@NIFTY")))
    records = [json.loads(e[1][b"data"]) for e in entries]
    assert [(rec["instrument_key"], rec["tick_data"]["ltp"]) for rec in records] == [
        ("NSE@NIFTY@index", 24000), (OPTION, 120.5), ("NSE@NIFTY@index", 24010)]
    assert all(rec["config_id"] == config.id for rec in records)
    assert records[2]["computations"][0]["results"]["change"] == pytest.approx(10)

    newest = json.loads(r.lindex(keys.output_list("NSE@NIFTY@index"), 0))
    assert newest["tick_data"]["ltp"] == 24010
    assert await wait_until(lambda: db_counts() == (3, 3))

    frames = [json.loads(await ws.receive_from(timeout=20)) for _ in range(2)]
    assert [(f["type"], f["seq"], f["data"]["tick_data"]["ltp"]) for f in frames] == [
        ("data", 1, 24000), ("data", 2, 24010)]
    assert frames[0]["channel"] == "computed" and frames[0]["instrument_key"] == "NSE@NIFTY@index"

    dead = r.xrange("tick_stream:dead")
    assert len(dead) == 1 and b"not valid JSON" in dead[0][1][b"error"]
    # Acknowledging is the batch's last step, after the frames went out.
    assert await wait_until(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0)
    await ws.disconnect()
    await sync_to_async(connections.close_all)()  # the helper thread's connection would block test-db teardown


@pytest.mark.django_db(transaction=True)
def test_beat_schedule_tasks_run_on_a_worker(start_worker: Any, r: Any) -> None:
    """Every entry of the beat schedule can be sent as configured and is executed by a real worker."""
    from django.conf import settings

    from signal_project.celery import app
    from signals.monitoring.streams import METRICS_KEY
    from tests.support import wait_for

    start_worker(settings.SIGNAL_DEFAULT_QUEUE)
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        app.send_task(entry["task"], **entry.get("options", {}))  # as beat does: options from the schedule
    from signals.tasks import publish_stream_metrics

    assert publish_stream_metrics.apply_async() is not None  # refused if its limits contradict each other
    assert wait_for(lambda: r.hget(METRICS_KEY, "updated|"), timeout=30)
