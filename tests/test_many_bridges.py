"""Bridges share the streams through one consumer group: the entries a dead bridge read and never sent are sent by
another, once idle, and nothing is lost or written twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings

from feed import keys
from tests.factories import create_config, fields, price_config, tick
from tests.support import consumer_pending, start_bridge, stop_process, wait_for

STREAM = "tick_stream:NSE@NIFTY"
SPOT = "NSE@NIFTY@index"


def pending_of(r: Any, consumer: str) -> int:
    return consumer_pending(r, STREAM, consumer)


@pytest.mark.django_db(transaction=True)
def test_the_entries_a_dead_bridge_held_are_sent_by_another_once(r: Any, start_worker: Any) -> None:
    from signals.models import Tick

    create_config(price_config())
    start_worker("signals")
    # The first bridge routes NIFTY to a queue that always has a task waiting: it holds what it reads, unsent.
    redis_lib.Redis.from_url(settings.CELERY_BROKER_URL).lpush("held-queue", "a task that is never taken")
    doomed = start_bridge("doomed", SIGNAL_QUEUE_ROUTES="NSE@NIFTY=held-queue", SIGNAL_BATCH_MAX_WAIT_MS="600000")
    survivor = None
    try:
        for i in range(300):
            r.xadd(STREAM, fields(tick(SPOT, 10_000 + i, at=i * 0.01)))
        wait_for(lambda: r.exists(STREAM) and r.xinfo_groups(STREAM) and pending_of(r, "doomed") == 300, timeout=60)
        stop_process(doomed, kill=True)  # dies holding 300 entries it read and never sent
        assert Tick.objects.count() == 0

        survivor = start_bridge("survivor")
        for i in range(300, 600):
            r.xadd(STREAM, fields(tick(SPOT, 10_000 + i, at=i * 0.01)))
        wait_for(lambda: Tick.objects.count() >= 600 and r.xpending(STREAM, "signal_service")["pending"] == 0,
                 timeout=60)
    finally:
        stop_process(doomed, kill=True)
        if survivor is not None:
            stop_process(survivor)

    assert sorted(Tick.objects.values_list("ltp", flat=True)) == [10_000 + i for i in range(600)]
    records = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream("NSE@NIFTY"))]
    assert sorted(rec["tick_data"]["ltp"] for rec in records) == [10_000 + i for i in range(600)]
    assert len({rec["record_id"] for rec in records}) == 600  # none written twice
