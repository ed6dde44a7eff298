"""One underlying's batches run one at a time, in the order the bridges sent them (issue 14).

Two workers holding batches of the same underlying at once would both read the latest values from before either,
so an ``every_interval`` bar close could fire twice and a price change be computed against the wrong tick. A bridge
gives each batch it sends a ticket, from a per-underlying counter in Redis (``keys.batch_ticket``); a worker runs a
batch once every earlier ticket of its underlying is done (``keys.batch_done``), and marks its own done when it
finishes, whether or not it succeeded. A ticket that never finishes (its worker died, its task was lost) holds the
next ones for at most ``SIGNAL_TURN_WAIT_S``; its entries are then sent again, with a new ticket, and their own
previous ticks come from the stored ticks (`signals.pipeline.batch.previous_ticks`).
"""

from __future__ import annotations

import logging
import time

import redis

from feed import keys, redis_client

log = logging.getLogger(__name__)
_FINISH_LUA = redis_client.lua_source(__file__, "finish_turn.lua")
IDLE_TTL_S = 7 * 24 * 3600  # an underlying idle this long starts its tickets again


def take_tickets(client: redis.Redis, symbol_keys: list[str]) -> list[int]:
    """One new ticket per batch about to be sent, in one round trip (a bridge's side)."""
    pipe = client.pipeline(transaction=False)
    for symbol_key in symbol_keys:
        pipe.incr(keys.batch_ticket(symbol_key))
        pipe.expire(keys.batch_ticket(symbol_key), IDLE_TTL_S)
    return [int(n) for n in pipe.execute()[::2]]


def wait_turn(client: redis.Redis, symbol_key: str, ticket: int, wait_s: float) -> bool:
    """Block until every ticket of the underlying before ``ticket`` is done, or ``wait_s`` passes (False)."""
    deadline = time.monotonic() + wait_s
    pause = 0.001
    name = keys.batch_done(symbol_key)
    while True:
        done = int(client.get(name) or 0)
        if done >= ticket - 1:
            return True
        if time.monotonic() >= deadline:
            log.warning("batch runs without its turn: an earlier one never finished",
                        extra={"underlying": symbol_key, "ticket": ticket, "done": done})
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.005)  # a waiting batch starts within 5 ms of its turn


def finish_turn(client: redis.Redis, symbol_key: str, ticket: int) -> None:
    """Mark the ticket done (never moving the mark back)."""
    redis_client.script(client, _FINISH_LUA)(keys=[keys.batch_done(symbol_key)], args=[ticket, IDLE_TTL_S])
