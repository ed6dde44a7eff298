"""Latest values per instrument in Redis, last-write-wins by tick time, and each non-option instrument's recent
history by tick time. Every read of them in Python goes through `LatestStore` (or `HistoryWindow`, its batch form);
only the tick batch's own Lua scripts read the latest-tick hashes inside Redis, to save round trips.

Two workers can hold batches of the same instrument at once, and a re-delivered old batch can arrive after a
newer one; the compare-and-set runs inside Redis so neither can move a latest value backwards in tick time.
"""

from __future__ import annotations

import bisect
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
        shards: dict[str, dict[str, dict[str, Any]]] = {}  # one script call per shard (all of them on one server)
        for key, tick in newest.items():
            shards.setdefault(keys.shard(key), {})[key] = tick
        for part in shards.values():  # one script call for every instrument: per-call costs dominate small batches
            script_keys, args = latest_write_args(part)
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
        return [int(x) for written in results[:len(shards)] for x in written]

    def at_or_before(self, instrument_key: str, ts: float) -> dict[str, Any] | None:
        """The instrument's tick at or before tick time ``ts`` (epoch seconds) from the recent history, or None."""
        return self.found(self.client.zrevrangebyscore(keys.price_history(instrument_key), _bound(ts), "-inf",
                                                       start=0, num=1))

    def get(self, instrument_key: str) -> dict[str, Any] | None:
        """The instrument's newest tick by tick time, or None."""
        return self.decode(self.client.hget(keys.latest_tick(instrument_key), "data"))

    def get_many(self, instrument_keys: list[str]) -> list[dict[str, Any] | None]:
        """`get` of every instrument, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key in instrument_keys:
            self.queue_get(pipe, key)
        return [self.decode(raw) for raw in pipe.execute()]

    def before_each(self, ticks: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """For each tick, its instrument's history entry strictly before the tick's time, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for tick in ticks:
            self.queue_at_or_before(pipe, tick["instrument_key"], tick["ts"], strictly=True)
        return [self.found(reply) for reply in pipe.execute()]

    # Reads queued on a caller's pipeline, for callers that gather other reads into the same round trip: queue,
    # execute, then decode the reply with `decode` (for `queue_get`) or `found` (for `queue_at_or_before`).
    @staticmethod
    def queue_get(pipe: Any, instrument_key: str) -> None:
        pipe.hget(keys.latest_tick(instrument_key), "data")

    @staticmethod
    def queue_time(pipe: Any, instrument_key: str) -> None:
        """The newest tick's time (epoch seconds, as bytes, or None) as the reply."""
        pipe.hget(keys.latest_tick(instrument_key), "ts")

    @staticmethod
    def queue_at_or_before(pipe: Any, instrument_key: str, ts: float, strictly: bool = False) -> None:
        pipe.zrevrangebyscore(keys.price_history(instrument_key), _bound(ts, strictly), "-inf", start=0, num=1)

    @staticmethod
    def decode(raw: bytes | None) -> dict[str, Any] | None:
        return json.loads(raw) if raw else None

    @staticmethod
    def found(reply: list[bytes]) -> dict[str, Any] | None:
        return json.loads(reply[0]) if reply else None


def _bound(ts: float, strictly: bool = False) -> str:
    """A sorted-set score bound at tick time ``ts``, exact (``repr``), exclusive when ``strictly``."""
    return f"({ts!r}" if strictly else repr(ts)


class HistoryWindow:
    """`LatestStore.at_or_before` for a whole batch: per instrument, two range reads cover every tick time of the
    batch (the history inside [first, last] tick time, and the newest entry before it), queued on one pipeline;
    each lookup is then a bisection in memory."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = {}
        self.times: dict[str, list[float]] = {}
        self.entries: dict[str, list[dict[str, Any]]] = {}

    def want(self, instrument_key: str, ts: float) -> None:
        span = self.spans.get(instrument_key)
        if span is None:
            self.spans[instrument_key] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts

    def queue(self, pipe: Any) -> int:
        """Queue the reads on ``pipe``; returns how many replies `load` will take."""
        for key, (lo, hi) in self.spans.items():
            name = keys.price_history(key)
            pipe.zrevrangebyscore(name, _bound(lo, strictly=True), "-inf", start=0, num=1)
            pipe.zrangebyscore(name, _bound(lo), _bound(hi))
        return 2 * len(self.spans)

    def load(self, replies: list[Any]) -> None:
        for i, key in enumerate(self.spans):
            before, inside = replies[2 * i], replies[2 * i + 1]
            entries = [orjson.loads(member) for member in (*before, *inside)]
            self.entries[key] = entries
            self.times[key] = [entry["ts"] for entry in entries]

    def missing(self) -> dict[str, float]:
        """Instrument key -> the batch's first tick time, for each instrument with no history at or before it
        (Redis lost it, or the instrument never ticked): the caller may `fill` them from elsewhere."""
        return {key: lo for key, (lo, _) in self.spans.items() if self.at_or_before(key, lo) is None}

    def fill(self, found: dict[str, dict[str, Any]]) -> None:
        """Add one older entry (a tick dict with ``ts`` and the price fields) per instrument, before its history."""
        for key, tick in found.items():
            entry = {field: tick.get(field) for field in ("ts", "ltp", "open", "high", "low", "close")}
            self.entries[key] = [entry, *self.entries.get(key, [])]
            self.times[key] = [entry["ts"], *self.times.get(key, [])]

    def at_or_before(self, instrument_key: str, ts: float) -> dict[str, Any] | None:
        times = self.times.get(instrument_key)
        if not times:
            return None
        i = bisect.bisect_right(times, ts) - 1
        return self.entries[instrument_key][i] if i >= 0 else None

