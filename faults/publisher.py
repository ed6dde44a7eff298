"""Ticks at a bounded rate, each with a known identity, through every fault.

A pacer thread makes rounds of the simulated NIFTY session (`feed.simulator`: spot, INDVIX, a future and an option
chain) at the wall-clock rate, each tick stamped with the time it was made, so every instrument's ticks have
distinct times. A sender thread XADDs them in order with explicit entry ids chosen once per tick: when Redis is
down it waits and sends again, and a tick whose XADD landed but whose reply was lost is recognised on the retry by
the stream refusing its id again. So every tick is on its stream exactly once, and the suite knows each one's
stream entry (its ``source_id``), instrument and time.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from feed.simulator import NiftySession, encode


@dataclass(frozen=True)
class SentTick:
    stream: str
    entry_id: str
    instrument_key: str
    ts_ms: int  # tick time, epoch milliseconds (the feed's ``ltt`` has millisecond precision)

    @property
    def source_id(self) -> str:
        return f"{self.stream}/{self.entry_id}"


class Publisher:
    def __init__(self, url: str, rate: float, strikes_each_side: int = 5):
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.session = NiftySession(start=datetime.now(UTC), strikes_each_side=strikes_each_side, expiries=1)
        self.per_round = len(self.session.round_ticks())
        self.round_s = self.per_round / rate
        self.sent: list[SentTick] = []
        self.failed_sends = 0
        self._rounds: queue.Queue[list[tuple[str, dict]] | None] = queue.Queue()
        self._pacing = threading.Event()
        self._stop = threading.Event()
        self._last_ms: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._pace, daemon=True, name="pacer"),
                         threading.Thread(target=self._send, daemon=True, name="sender")]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def flow(self, on: bool) -> None:
        (self._pacing.set if on else self._pacing.clear)()

    def backlog(self) -> int:
        return self._rounds.qsize()

    def sent_since(self, mark: int) -> list[SentTick]:
        with self._lock:
            return self.sent[mark:]

    def mark(self) -> int:
        with self._lock:
            return len(self.sent)

    def close(self) -> None:
        self._stop.set()
        self._pacing.set()
        self._rounds.put(None)

    def _pace(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._pacing.wait(0.2):
                next_at = time.monotonic()
                continue
            # a round behind schedule still gets its own millisecond: tick times stay distinct per instrument
            now = max(datetime.now(UTC), self.session.now + timedelta(milliseconds=2))
            self.session.advance(max((now - self.session.now).total_seconds(), 0.001))
            self.session.now = now
            self._rounds.put(self.session.round_ticks())
            next_at += self.round_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _entry_id(self, stream: str) -> str:
        ms, seq = self._last_ms.get(stream, (0, -1))
        now_ms = int(time.time() * 1000)
        ms, seq = (now_ms, 0) if now_ms > ms else (ms, seq + 1)
        self._last_ms[stream] = (ms, seq)
        return f"{ms}-{seq}"

    def _send(self) -> None:
        while True:
            batch = self._rounds.get()
            if batch is None:
                return
            entries = [(stream, self._entry_id(stream), tick) for stream, tick in batch]
            while not self._deliver(entries):
                self.failed_sends += 1
                time.sleep(0.2)
            ticks = [SentTick(stream, entry_id, tick["instrument_key"], _ms(tick["ltt"]))
                     for stream, entry_id, tick in entries]
            with self._lock:
                self.sent.extend(ticks)

    def _deliver(self, entries: list[tuple[str, str, dict]]) -> bool:
        """XADD every entry; True once each is on its stream (now, or by an earlier attempt)."""
        pipe = self.client.pipeline(transaction=False)
        for stream, entry_id, tick in entries:
            pipe.xadd(stream, encode(tick), id=entry_id)
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError:
            return False
        for reply in replies:
            if isinstance(reply, redis.ResponseError) and "equal or smaller" in str(reply):
                continue  # landed on an earlier attempt whose reply was lost
            if isinstance(reply, Exception):
                return False
        return True


def _ms(ltt: str) -> int:
    return round(datetime.fromisoformat(ltt).timestamp() * 1000)
