"""A tick batch processed until it is done: the worker's side of "nothing acknowledged is lost".

A batch that meets a PostgreSQL or Redis connection failure is tried again here, in the same process, backing off,
for up to ``SIGNAL_TASK_RETRY_BUDGET_S``; it is never retried through the broker, which is Redis too and may be
the thing that is down. Its stream entries stay pending until the batch is done and stored, and are leased
meanwhile (`signals.ingest.entries.EntryLease`). A batch that still fails (the budget ran out, or an error that is
no outage) raises: its entries stay pending, a bridge sends them again once they are idle, and after
``SIGNAL_MAX_DELIVERIES`` deliveries they go to the dead-letter stream with the reason. Retrying is safe: rows
conflict, latest values are last-write-wins and each entry's Redis outputs are written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from redis.exceptions import NoScriptError

from feed.redis_client import get_redis
from signals.ingest import codec, turns
from signals.ingest.entries import EntryLease
from signals.monitoring import broker, metrics
from signals.pipeline.batch import BatchReport, process_batch

log = logging.getLogger(__name__)

# Failures of a dependency that pass by themselves: PostgreSQL or Redis gone, restarting or refusing connections
# (NoScriptError: a restarted Redis has forgotten the scripts).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, NoScriptError,
                    redis.exceptions.BusyLoadingError)


def process_until_done(ticks: list[dict[str, Any]], ticket: int | None = None, queue: str | None = None,
                       first_delivered: float | None = None) -> BatchReport:
    """`process_batch` the ticks in their underlying's turn (with a bridge's ``ticket``: `signals.ingest.turns`),
    retrying through outages within the budget; raises what is left. A batch out of turn whose earlier ticket may
    wait behind it in ``queue`` is sent to the back of it (an empty report); ``first_delivered`` (epoch seconds)
    is when such a batch was first delivered, from which its grace counts."""
    client = get_redis()
    every_s = settings.SIGNAL_RECLAIM_IDLE_MS / 3000
    symbol_key = ticks[0]["symbol_key"] if ticks and ticket is not None else None
    if symbol_key is None:
        with EntryLease(client, settings.SIGNAL_CONSUMER_GROUP, ticks, every_s=every_s):
            return _attempts(ticks)
    first_delivered = time.time() if first_delivered is None else first_delivered
    turn = Turn(client, symbol_key, ticket, 3 * every_s)
    with EntryLease(client, settings.SIGNAL_CONSUMER_GROUP, ticks, every_s=every_s, also=turn.renew):
        try:
            found = _wait_turn(client, symbol_key, ticket, queue, first_delivered, hold_s=turn.ttl_s)
            if found == turns.DEFER and _send_back(ticks, queue, ticket, first_delivered):
                return BatchReport(ticks=0, stored=0, records=0)
            turn.take(already=found == turns.TURN)
        except redis.RedisError:  # Redis is down: the attempts below wait for it anyway
            log.warning("could not wait for a batch's turn", exc_info=True)
        report = None
        try:  # the batch's last round trip marks the turn done; if it never ran, it is marked here
            report = _attempts(ticks, then=lambda pipe: turns.finish_turn(client, symbol_key, ticket, pipe))
            return report
        finally:
            if report is None:
                _finish(client, symbol_key, ticket)


def _wait_turn(client: redis.Redis, symbol_key: str, ticket: int, queue: str | None, first_delivered: float,
               hold_s: float) -> str:
    waited = time.time() - first_delivered
    queued = (lambda: broker.queue_lengths([queue])[0] > 0) if queue else None
    return turns.wait_turn(client, symbol_key, ticket, float(settings.SIGNAL_TURN_WAIT_S) - waited,
                           float(settings.SIGNAL_TURN_GRACE_S) - waited, queued, hold_s=hold_s)


def _send_back(ticks: list[dict[str, Any]], queue: str | None, ticket: int, first_delivered: float) -> bool:
    """Send the batch to the back of its queue; False if the broker refused it (the batch then runs now)."""
    try:
        codec.celery_send(ticks, queue, ticket, first_delivered=first_delivered)
    except Exception:
        log.warning("could not send a batch to the back of its queue; it runs out of turn", exc_info=True)
        return False
    metrics.BATCHES_DEFERRED.inc()
    return True


class Turn:
    """The batch's hold on its underlying's turn: renewed with its lease, but only once taken (a batch still waiting
    must not look like the one running)."""

    def __init__(self, client: redis.Redis, symbol_key: str, ticket: int, ttl_s: float):
        self.client, self.symbol_key, self.ticket, self.ttl_s = client, symbol_key, ticket, ttl_s
        self.taken = False

    def take(self, already: bool = False) -> None:
        """Hold the turn from now on; ``already``: `turns.wait_turn` took it when it found the turn ours."""
        self.taken = True
        if not already:
            self.renew()

    def renew(self) -> None:
        if self.taken:
            turns.hold_turn(self.client, self.symbol_key, self.ticket, self.ttl_s)


def _finish(client: redis.Redis, symbol_key: str, ticket: int) -> None:
    try:
        turns.finish_turn(client, symbol_key, ticket)
    except redis.RedisError:  # the next batch then waits SIGNAL_TURN_WAIT_S at most
        log.warning("could not mark a batch's turn done", exc_info=True)


def _attempts(ticks: list[dict[str, Any]], then: Callable[[Any], None] | None = None) -> BatchReport:
    deadline = time.monotonic() + float(settings.SIGNAL_TASK_RETRY_BUDGET_S)
    delay = 0.2
    while True:
        try:
            return process_batch(ticks, then=then)
        except TRANSIENT_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("batch waits for its dependencies", extra={"error": f"{type(exc).__name__}: {exc}",
                                                                    "ticks": len(ticks), "retry_in_s": delay})
            if isinstance(exc, OperationalError | InterfaceError) and not connection.in_atomic_block:
                connection.close()  # a broken connection is not reused; the next query opens a new one
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
