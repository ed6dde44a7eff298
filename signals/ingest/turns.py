"""One underlying's batches run one at a time, in the order the bridges sent them (issue 14).

Two workers holding batches of the same underlying at once would both read the latest values from before either,
so an ``every_interval`` bar close could fire twice and a price change be computed against the wrong tick. A bridge
gives each batch it sends a ticket, from a per-underlying counter in Redis (``keys.batch_ticket``); a worker runs a
batch once every earlier ticket of its underlying is done (``keys.batch_done``), and marks its own done when it
finishes, whether or not it succeeded. While it runs it holds the underlying's turn (``keys.batch_holder``, a key
with a short ttl its lease renews), so the next batch waits as long as the running one lives (up to
``SIGNAL_TURN_WAIT_S``), but only ``SIGNAL_TURN_GRACE_S`` for a ticket nobody holds: one whose worker died, whose
task was lost, or which its bridge never sent. Such a batch's entries are sent again later with a new ticket, and
their previous ticks then come from the stored ticks (`signals.pipeline.batch.previous_ticks`).

Two bridges take tickets and publish independently, so a queue can hold ticket 6 ahead of ticket 5; its one worker
would wait the grace for a ticket that sits behind it in the same queue. A batch whose earlier ticket nobody holds,
while a task waits in its queue, therefore goes back to the end of the queue (`DEFER`) instead of waiting; the
grace then counts from its first delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from feed import keys, redis_client

log = logging.getLogger(__name__)
_FINISH_LUA = redis_client.lua_source(__file__, "finish_turn.lua")
_TAKE_LUA = redis_client.lua_source(__file__, "take_turn.lua")
IDLE_TTL_S = 7 * 24 * 3600  # an underlying idle this long starts its tickets again
DEFER_AFTER_S = 0.005  # an earlier ticket unheld this long may be queued behind us (a sending bridge takes ~1 ms)

TURN, LATE, DEFER = "turn", "late", "defer"  # what `wait_turn` found: run now, run out of turn, send to the back


def take_tickets(client: redis.Redis, symbol_keys: list[str]) -> list[int]:
    """One new ticket per batch about to be sent, in one round trip (a bridge's side)."""
    pipe = client.pipeline(transaction=False)
    for symbol_key in symbol_keys:
        pipe.incr(keys.batch_ticket(symbol_key))
        pipe.expire(keys.batch_ticket(symbol_key), IDLE_TTL_S)
    return [int(n) for n in pipe.execute()[::2]]


def state_keys(symbol_keys: list[str]) -> list[str]:
    """The keys `unfinished` reads for ``symbol_keys`` (for a caller that reads them with something else)."""
    return [key for symbol_key in symbol_keys for key in (keys.batch_ticket(symbol_key), keys.batch_done(symbol_key))]


def unfinished(client: redis.Redis, symbol_keys: list[str], known: Mapping[str, Any] | None = None) -> set[str]:
    """The underlyings with a batch sent (by any bridge) and not finished yet, in one round trip; ``known``: values
    of their `state_keys` read already, for those it holds no round trip is made."""
    wanted = state_keys(symbol_keys)  # ticket, done of each
    found = dict(known or {})
    missing = [key for key in wanted if key not in found]
    if missing:
        pipe = client.pipeline(transaction=False)
        for key in missing:  # (a cluster's pipelines refuse MGET)
            pipe.get(key)
        found.update(zip(missing, pipe.execute(), strict=True))
    return {symbol_key for symbol_key, ticket, done in zip(symbol_keys, wanted[::2], wanted[1::2], strict=True)
            if int(found[ticket] or 0) > int(found[done] or 0)}


def wait_turn(client: redis.Redis, symbol_key: str, ticket: int, wait_s: float, grace_s: float,
              queued: Callable[[], bool] | None = None, hold_s: float = 0.0) -> str:
    """Block until every ticket of the underlying before ``ticket`` is done (`TURN`; with ``hold_s``, the ticket
    then holds the turn for that long, taken in the same round trip). `LATE` when it gave up waiting: after
    ``wait_s`` in all, or ``grace_s`` during which no earlier ticket held the turn. `DEFER` when no earlier ticket
    has held the turn for `DEFER_AFTER_S` while ``queued()`` says a task waits in the batch's queue (the earlier
    ticket may be that task)."""
    started = unheld_since = asked = time.monotonic()
    pause = 0.001
    take = redis_client.script(client, _TAKE_LUA)
    turn_keys = [keys.batch_done(symbol_key), keys.batch_holder(symbol_key)]
    while True:
        done, holder = (int(value) for value in take(keys=turn_keys, args=[ticket, max(0, int(hold_s * 1000))]))
        if done >= ticket - 1:
            return TURN
        now = time.monotonic()
        if done < holder < ticket:  # an earlier batch is running
            unheld_since = now
        if now - unheld_since >= grace_s or now - started >= wait_s:
            log.warning("batch runs without its turn: an earlier one never finished",
                        extra={"underlying": symbol_key, "ticket": ticket, "done": done, "holder": holder})
            return LATE
        if queued is not None and now - unheld_since >= DEFER_AFTER_S and now - asked >= DEFER_AFTER_S:
            asked = now
            if queued():
                return DEFER
        time.sleep(pause)
        pause = min(pause * 2, 0.005)  # a waiting batch starts within 5 ms of its turn


def hold_turn(client: redis.Redis, symbol_key: str, ticket: int, ttl_s: float) -> None:
    """Say that ``ticket`` is running, for ``ttl_s`` (renewed while it runs)."""
    client.set(keys.batch_holder(symbol_key), ticket, px=max(1, int(ttl_s * 1000)))


def finish_turn(client: redis.Redis, symbol_key: str, ticket: int, pipe: Any = None) -> None:
    """Mark the ticket done (never moving the mark back); with ``pipe`` (a pipeline of ``client``), queued there
    to run with its round trip."""
    redis_client.script(client, _FINISH_LUA)(keys=[keys.batch_done(symbol_key)], args=[ticket, IDLE_TTL_S],
                                              client=pipe)
