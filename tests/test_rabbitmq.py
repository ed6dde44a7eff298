"""RabbitMQ as the Celery broker (issue 14): quorum queues, the bridge's queue-length check, and a worker killed
mid-batch whose batch comes back at once (the machine's RabbitMQ on 127.0.0.1:5672)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import amqp
import psycopg
import pytest
from django.test import override_settings

from feed import keys
from signals.monitoring.broker import amqp_channel as broker_channel
from signals.monitoring.broker import queue_lengths
from tests.factories import create_config, fields, price_config, tick
from tests.support import (
    ROOT,
    TICK_WRITES,
    WorkerProcess,
    stop_process,
    wait_for,
    waiting_on_locks,
    worker_database_url,
)

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
STREAM = "tick_stream:NSE@NIFTY"


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"rabbit-test-{uuid.uuid4().hex[:8]}"
    yield name
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        connection.channel().queue_delete(name)


def test_queue_lengths_count_the_messages_waiting_on_rabbitmq(queue: str) -> None:
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        for n in range(2):
            channel.basic_publish(amqp.Message(f"task {n}"), routing_key=queue)
    with override_settings(CELERY_BROKER_URL=RABBIT):
        assert wait_for(lambda: queue_lengths([queue, f"{queue}-never-declared"]) == [2, 0], timeout=10)
        # asked on most of a bridge's steps: one channel kept open, replaced after a missing queue closed it
        assert queue_lengths([f"{queue}-never-declared", queue, queue]) == [0, 2, 2]
        connection = broker_channel(RABBIT).connection
        for _ in range(3):
            assert queue_lengths([queue]) == [2]
        assert broker_channel(RABBIT).connection is connection and len(connection.channels) <= 3


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_on_rabbitmq_has_its_batch_redone_at_once(r: Any, queue: str) -> None:
    from signals.models import ComputedSignal, Tick

    create_config(price_config())
    # Routed to a queue of the test's own; the bridge would resend idle entries only after ten minutes, so it is
    # RabbitMQ that must hand the lost message to the next worker.
    env = {"TEST_CELERY_BROKER_URL": RABBIT, "SIGNAL_QUEUE_ROUTES": f"NSE@NIFTY={queue}",
           "TEST_SIGNAL_RECLAIM_IDLE_MS": "600000"}
    bridge = subprocess.Popen(
        [sys.executable, "manage.py", "stream_bridge", "--consumer", "rabbit-bridge"], cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
             "DATABASE_URL": worker_database_url(), **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[WorkerProcess] = []
    try:
        with psycopg.connect(worker_database_url(), autocommit=False) as locker, \
                psycopg.connect(worker_database_url(), autocommit=True) as observer:
            locker.execute("LOCK TABLE signal_ticks IN EXCLUSIVE MODE")
            workers.append(WorkerProcess(queue, name="doomed", extra_env=env))
            workers[0].wait_ready()
            for i in range(20):
                r.xadd(STREAM, fields(tick(ltp=24000 + i, at=i)))
            wait_for(lambda: waiting_on_locks(observer, *TICK_WRITES) == 1, timeout=60)
            workers[0].stop(kill=True)  # SIGKILL mid-batch
            locker.rollback()
        workers.append(WorkerProcess(queue, name="survivor", extra_env=env))
        workers[1].wait_ready()
        wait_for(lambda: Tick.objects.count() == 20 and r.xpending(STREAM, "signal_service")["pending"] == 0,
                 timeout=60)
    finally:
        for worker in workers:
            worker.stop()
        stop_process(bridge)

    assert ComputedSignal.objects.count() == 20
    outputs = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream("NSE@NIFTY"))]
    assert sorted(o["tick_data"]["ltp"] for o in outputs) == [24000 + i for i in range(20)]
    assert len({o["record_id"] for o in outputs}) == 20
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        channel = connection.channel()
        with pytest.raises(amqp.exceptions.PreconditionFailed):  # it is a quorum queue, not a classic one
            channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "classic"})
