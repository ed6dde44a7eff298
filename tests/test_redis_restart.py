"""Redis killed and restarted mid-run (AOF, ``appendfsync always``): nothing acknowledged is lost or doubled.

Its own Redis server on a free port holds the tick stream, the broker and the outputs, as one Redis does in
production; a real bridge and a real worker run against it while ticks flow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from faults.services import RedisServer
from feed import keys
from tests.factories import create_config, fields, price_config, tick
from tests.support import ROOT, WorkerProcess, stop_process, wait_for, waiting_on_locks, worker_database_url

STREAM = "tick_stream:NSE@NIFTY"
SPOT = "NSE@NIFTY@index"
FUTURE = "NSE@NIFTY@futures@2025-06-26"
TICKS = 3000



class Producer(threading.Thread):
    """XADDs ``count`` ticks of distinct prices at about ``rate`` per second, riding out the Redis outage: a tick
    whose XADD failed is sent again only if the stream does not hold it already."""

    def __init__(self, url: str, count: int, rate: float):
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=2)
        self.count, self.rate = count, rate
        self.outage_seen = False

    def run(self) -> None:
        for i in range(self.count):
            body = fields(tick(ltp=10_000 + i, at=i * 0.01))
            while not self._send(body):
                self.outage_seen = True
                time.sleep(0.1)
            time.sleep(1 / self.rate)

    def _send(self, body: dict[str, str]) -> bool:
        try:
            if any(f.get(b"data") == body["data"].encode() for _, f in self.client.xrevrange(STREAM, count=20)):
                return True  # the write went through before the connection broke
            self.client.xadd(STREAM, body)
            return True
        except redis.RedisError:
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.mark.django_db(transaction=True)
def test_redis_killed_and_restarted_mid_run_loses_and_doubles_nothing(own_redis: RedisServer) -> None:
    from signals.models import Tick

    config = create_config(price_config())
    # The broker's visibility timeout as in production: nothing may depend on a lost message coming back
    env = {"TEST_REDIS_URL": own_redis.url(0), "TEST_CELERY_BROKER_URL": own_redis.url(1),
           "TEST_CELERY_VISIBILITY_TIMEOUT": "300"}
    worker = WorkerProcess("signals", name="restart", extra_env=env)
    bridge = subprocess.Popen(
        [sys.executable, "manage.py", "stream_bridge", "--consumer", "restart-bridge"], cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
             "DATABASE_URL": worker_database_url(), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = redis.Redis.from_url(own_redis.url(0))
    try:
        worker.wait_ready()
        producer = Producer(own_redis.url(0), TICKS, rate=600)
        producer.start()
        wait_for(lambda: Tick.objects.count() > TICKS // 4, timeout=60)  # ticks are flowing through
        with psycopg.connect(worker_database_url(), autocommit=False) as locker, \
                psycopg.connect(worker_database_url(), autocommit=True) as observer:
            # A batch with an instrument never seen registers it first: hold it there, before its Redis steps.
            locker.execute("LOCK TABLE signal_instruments IN EXCLUSIVE MODE")
            data.xadd(STREAM, fields(tick(FUTURE, 24100, at=0.5)))
            wait_for(lambda: waiting_on_locks(observer, 'INSERT INTO "signal_instruments"') == 1)
            own_redis.kill()
            time.sleep(0.5)
            locker.rollback()  # the batch goes on, and meets Redis gone
        time.sleep(1.5)
        own_redis.start()  # the same files: everything Redis acknowledged is back
        producer.join(timeout=60)
        assert producer.outage_seen
        try:
            wait_for(lambda: Tick.objects.count() >= TICKS + 1
                     and data.xpending(STREAM, "signal_service")["pending"] == 0, timeout=90, interval=0.5)
        except AssertionError:
            print("".join(worker.lines[-60:]))
            raise
    finally:
        worker.stop()
        stop_process(bridge)

    assert Tick.objects.filter(instrument_key=FUTURE).count() == 1
    assert sorted(Tick.objects.filter(instrument_key=SPOT).values_list("ltp", flat=True)) == [
        10_000 + i for i in range(TICKS)]
    records = [json.loads(e[1][b"data"]) for e in data.xrange(keys.output_stream("NSE@NIFTY"))]
    assert len({r["record_id"] for r in records}) == len(records), "an output was written twice"
    assert sorted(r["tick_data"]["ltp"] for r in records) == [*(10_000 + i for i in range(TICKS)), 24100]
    assert all(r["config_id"] == config.id for r in records)
