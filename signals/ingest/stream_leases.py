"""Which bridge reads which tick stream: one at a time per stream, the streams shared out among the live bridges.

Bridges in one consumer group could all read every stream, but then consecutive ticks of one underlying go out in
batches of different bridges, two per turn instead of one: each batch waits for the other's (`turns`), and the
per-batch cost is paid twice. So each stream has an owner, a lease in Redis (`keys.stream_owner`, renewed every
third of ``lease_s``), and only its owner reads new entries from it. The live bridges are a sorted set of
consumer names scored by when their lease ends (`keys.live_bridges`); each owns at most its share (the streams
divided by the live bridges, rounded up), gives back what is above it, so that a bridge that starts takes over
its part within a lease, and takes unowned streams up to it, so that a dead bridge's streams are read again once
its leases end. Entries it read and never sent are pending in the group and are sent again by any bridge's
reclaim, as before.

A lease only places reads: a bridge paused past its lease may read a stream once more after another took it,
which costs what sharing streams costs (two batches of one turn), never a lost or doubled entry.
"""

from __future__ import annotations

import math
import time
import zlib

import redis

from feed import keys, redis_client

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StreamLeases:
    """The streams one bridge (``consumer``) may read now, out of those it knows."""

    def __init__(self, client: redis.Redis, consumer: str, lease_s: float):
        self.client, self.consumer, self.lease_s = client, consumer, lease_s
        self.owned: set[str] = set()
        self.share = 0  # the most streams this bridge may own, as of the last pass
        self._next_pass = 0.0
        self._known: tuple[str, ...] = ()

    def readable(self, streams: list[str]) -> list[str]:
        """The streams of ``streams`` this bridge owns, after a lease pass when one is due (every third of the
        lease, or at once when the streams changed). Without leases (``lease_s`` 0), all of them."""
        if self.lease_s <= 0:
            return streams
        now = time.monotonic()
        if now >= self._next_pass or tuple(streams) != self._known:
            self._pass(streams)
            self._known, self._next_pass = tuple(streams), now + self.lease_s / 3
        extra = set(self.beyond_share())
        return [stream for stream in streams if stream in self.owned and stream not in extra]

    def beyond_share(self) -> list[str]:
        """The streams owned above this bridge's share (another bridge started): `release` them once what was
        read from them is sent."""
        return sorted(self.owned, key=self._rank)[self.share:] if self.lease_s > 0 else []

    def release(self, streams: list[str]) -> None:
        """Give back the leases of ``streams``."""
        release = redis_client.script(self.client, _RELEASE_LUA)
        for stream in streams:  # one key per call: on a cluster each lies on its own slot
            release(keys=[keys.stream_owner(stream)], args=[self.consumer])
        self.owned.difference_update(streams)

    def leave(self) -> None:
        """At shutdown: give back every lease and leave the live set, so the others take over at once."""
        if self.lease_s <= 0:
            return
        self.release(sorted(self.owned))
        self.client.zrem(keys.live_bridges(), self.consumer)

    # --- one pass ---------------------------------------------------------------------------------------------
    def _pass(self, streams: list[str]) -> None:
        live = self._heartbeat()
        self._renew()
        self.owned &= set(streams)
        self.share = math.ceil(len(streams) / max(live, 1))
        wanted = [s for s in sorted(streams, key=self._rank) if s not in self.owned][:max(self.share - len(self.owned), 0)]
        lease_ms = int(self.lease_s * 1000)
        for stream in wanted:
            if self.client.set(keys.stream_owner(stream), self.consumer, nx=True, px=lease_ms):
                self.owned.add(stream)

    def _heartbeat(self) -> int:
        """Say this bridge lives for another lease; the number of live bridges."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(keys.live_bridges(), {self.consumer: now + self.lease_s})
        pipe.zremrangebyscore(keys.live_bridges(), "-inf", now)
        pipe.zcard(keys.live_bridges())
        return int(pipe.execute()[-1])

    def _renew(self) -> None:
        renew = redis_client.script(self.client, _RENEW_LUA)
        lease_ms = int(self.lease_s * 1000)
        for stream in sorted(self.owned):
            if not renew(keys=[keys.stream_owner(stream)], args=[self.consumer, lease_ms]):
                self.owned.discard(stream)  # it ran out (a long pause) and another bridge may hold it now

    def _rank(self, stream: str) -> int:
        """A stable order per bridge, different between bridges, so that they reach for different streams first."""
        return zlib.crc32(f"{self.consumer}/{stream}".encode())
