"""Latest values per instrument in Redis, last-write-wins by tick time.

Two workers can hold batches of the same instrument at once, and a re-delivered old batch can arrive after a
newer one; the compare-and-set runs inside Redis so neither can move a latest value backwards in tick time.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import redis

from feed import keys, redis_client

HISTORY_SECONDS = 6 * 3600
_WRITE_LUA = redis_client.lua_source(__file__, "latest_write.lua")


def latest_write_args(newest: dict[str, dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """(KEYS, ARGV) of ``latest_write.lua`` for the newest tick of each instrument (instrument key -> tick).

    KEYS: the instruments' latest-tick hashes; ARGV: per key, the tick time (``repr``, exact) and the tick JSON. The
    script returns 1 per key written, 0 per key that already held a newer tick."""
    args: list[Any] = []
    for tick in newest.values():
        args += (repr(tick["ts"]), orjson.dumps(tick))
    return [keys.latest_tick(key) for key in newest], args


class LatestStore:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._script = redis_client.script(client, _WRITE_LUA)

    def update(self, ticks: list[dict[str, Any]], history: bool = True, pipe: Any | None = None) -> list[int]:
        """Write the newest tick of each instrument in ``ticks`` unless Redis already holds a newer one.

        With ``history``, every tick of a non-option instrument (spot, future, INDVIX) also goes into its
        time-scored history (kept for HISTORY_SECONDS of tick time), which is how an option is priced against the
        underlying *at or before* its own time. Options themselves are never looked up that way.
        With ``pipe``, the commands are queued there for the caller to execute, and nothing is returned.
        """
        newest: dict[str, dict[str, Any]] = {}
        for tick in ticks:
            held = newest.get(tick["instrument_key"])
            if held is None or tick["ts"] >= held["ts"]:
                newest[tick["instrument_key"]] = tick
        own = pipe is None
        if pipe is None:
            pipe = self.client.pipeline(transaction=False)
        if newest:  # one script call for every instrument: per-call costs dominate small batches
            script_keys, args = latest_write_args(newest)
            self._script(keys=script_keys, args=args, client=pipe)
        if history:
            by_key: dict[str, dict[bytes, float]] = {}
            for tick in ticks:
                if "@options@" in tick["instrument_key"]:
                    continue
                member = orjson.dumps({"ts": tick["ts"], "ltp": tick["ltp"], "open": tick["open"],
                                       "high": tick["high"], "low": tick["low"], "close": tick["close"]})
                by_key.setdefault(tick["instrument_key"], {})[member] = tick["ts"]
            for key, members in by_key.items():
                name = keys.price_history(key)
                pipe.zadd(name, members)
                pipe.zremrangebyscore(name, "-inf", newest[key]["ts"] - HISTORY_SECONDS)
        if not own:
            return []  # queued on the caller's pipeline
        results = pipe.execute()
        return [int(x) for x in results[0]] if newest else []

    def at_or_before(self, instrument_key: str, ts: float) -> dict[str, Any] | None:
        """The instrument's tick at or before tick time ``ts`` from the recent history, or None."""
        found = self.client.zrevrangebyscore(keys.price_history(instrument_key), ts, "-inf", start=0, num=1)
        return json.loads(found[0]) if found else None

    def get(self, instrument_key: str) -> dict[str, Any] | None:
        raw = self.client.hget(keys.latest_tick(instrument_key), "data")
        return json.loads(raw) if raw else None
