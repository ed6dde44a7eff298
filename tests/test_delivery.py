"""At-least-once delivery across process deaths: a worker killed mid-task loses nothing."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from feed import keys
from signals.ingest.bridge import BridgeSettings, StreamBridge
from tests.factories import create_config, fields, price_config, tick
from tests.support import TICK_WRITES, wait_for, waiting_on_locks, worker_database_url

STREAM = "tick_stream:NSE@NIFTY"
# The broker's visibility timeout as in production: the lost message must not be what brings the batch back
PRODUCTION_VISIBILITY = {"TEST_CELERY_VISIBILITY_TIMEOUT": "300"}


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_task_loses_no_tick(start_worker: Any, r: Any) -> None:
    from signals.models import ComputedSignal, Tick

    create_config(price_config())
    for i in range(20):
        r.xadd(STREAM, fields(tick(ltp=24000 + i, at=i)))
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "kill-test"}),
                          consumer="bridge")
    bridge.discover()

    # Hold the ticks table so the first worker blocks inside the task, after taking the message.
    with psycopg.connect(worker_database_url(), autocommit=False) as locker, \
            psycopg.connect(worker_database_url(), autocommit=True) as observer:
        locker.execute("LOCK TABLE signal_ticks IN EXCLUSIVE MODE")
        first = start_worker("kill-test", name="doomed", extra_env=PRODUCTION_VISIBILITY)
        assert bridge.handle(bridge.read()) == 20
        wait_for(lambda: waiting_on_locks(observer, *TICK_WRITES) == 1)
        time.sleep(0.8)  # past SIGNAL_RECLAIM_IDLE_MS: the worker's lease keeps its entries from looking idle
        assert bridge.reclaim() is False
        first.stop(kill=True)  # SIGKILL mid-task: no chance to ack or requeue
        locker.rollback()

    assert Tick.objects.count() == 0
    assert r.xpending(STREAM, "signal_service")["pending"] == 20  # only a finished batch acknowledges its entries
    start_worker("kill-test", name="survivor", extra_env=PRODUCTION_VISIBILITY)
    time.sleep(0.8)
    # Sent again from the stream at once, not after the broker's visibility timeout for the lost message.
    assert bridge.reclaim() is True
    wait_for(lambda: Tick.objects.count() == 20, timeout=40)
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0)
    wait_for(lambda: ComputedSignal.objects.count() == 20)  # written later in the same batch
    outputs = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream("NSE@NIFTY"))]
    assert sorted(o["tick_data"]["ltp"] for o in outputs) == [24000 + i for i in range(20)]


@pytest.mark.django_db(transaction=True)
def test_batch_survives_the_worker_losing_its_database_connection(start_worker: Any, r: Any) -> None:
    from django.db import connection

    from signals.models import ComputedSignal, Tick

    create_config(price_config())
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "dbloss-test"}),
                          consumer="bridge")
    worker = start_worker("dbloss-test", name="dbloss")
    r.xadd(STREAM, fields(tick(ltp=24000, at=0)))
    bridge.discover()
    assert bridge.handle(bridge.read()) == 1
    wait_for(lambda: Tick.objects.count() == 1)  # the worker now holds a database connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = cursor.fetchone()[0]
    with psycopg.connect(worker_database_url(), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND pid NOT IN (pg_backend_pid(), %s)", [own]).fetchone()[0]
    assert ended >= 1

    for i in range(1, 6):
        r.xadd(STREAM, fields(tick(ltp=24000 + i, at=i)))
    assert bridge.handle(bridge.read()) == 5
    try:
        wait_for(lambda: Tick.objects.count() == 6, timeout=30)
    except AssertionError:
        print("".join(worker.lines[-80:]))
        raise
    wait_for(lambda: ComputedSignal.objects.count() == 6)
    outputs = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream("NSE@NIFTY"))]
    assert sorted(o["tick_data"]["ltp"] for o in outputs) == [24000 + i for i in range(6)]  # each once
