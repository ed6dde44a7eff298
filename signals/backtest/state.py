"""A backtest run's own state for one underlying, held in process memory while a chunk replays and saved with the
chunk (`signals.models.BacktestState`) for the next one: the latest tick of each instrument,
each non-option instrument's recent history by tick time (what `feed.latest.LatestStore` keeps in Redis live),
the latest results the computations cache (Greeks per option, moneyness, indicators), the ticks the run's bars are
built from (`signals.backtest.bars.RunBars`), and where the replay stands. The bars' ticks are kept for the
whole run when one of its configs reads bars: a run over many days of such a config holds them all.

`StateReads` answers, from this state, the few read commands the shared computations queue on ``ctx.client`` (the
history window of the Greeks, the chain of moneyness): the computations are the live code, reading the run's state
instead of the live Redis. A command it does not know raises, so a computation that starts reading something else
fails loudly in a backtest (and its tests) instead of reading live state.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import orjson

from feed import keys
from feed.latest import HISTORY_SECONDS
from signals.backtest.bars import RunBars

HISTORY_FIELDS = ("ts", "ltp", "open", "high", "low", "close")


@dataclass
class RunState:
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # instrument -> its newest tick by tick time
    history: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)  # history key -> (score, member)
    values: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # cache key -> (value, expiry tick time)
    bar_ticks: dict[str, list[list[Any]]] = field(default_factory=dict)  # see RunBars
    cursor: tuple[float, str] | None = None  # the last stored tick read: (time, source id)
    fired_until: float | None = None  # time-driven frequencies have fired up to this tick time
    now: float = 0.0  # the tick time being replayed (expiry of cached values)

    # -- writes, as the live batch makes them -----------------------------------------------------------------------
    def update_latest(self, tick: dict[str, Any]) -> None:
        """`LatestStore.update` for one tick: last-write-wins by tick time, and the history of non-options."""
        key = tick["instrument_key"]
        held = self.latest.get(key)
        if held is None or not held["ts"] > tick["ts"]:
            self.latest[key] = tick
        if "@options@" in key:
            return
        member = orjson.dumps({name: tick[name] for name in HISTORY_FIELDS})
        entries = self.history.setdefault(keys.price_history(key), [])
        item = (tick["ts"], member)
        position = bisect.bisect_left(entries, item)
        if position == len(entries) or entries[position] != item:
            entries.insert(position, item)
        cut = bisect.bisect_right(entries, tick["ts"] - HISTORY_SECONDS, key=_first)
        if cut:
            del entries[:cut]

    def write_cached(self, outbox: Any) -> None:
        """The outbox's latest-result writes (a guarded one only while no newer tick of its instrument is held),
        expiring after their TTL in tick time."""
        for key, text, ttl in outbox.cache_writes:
            self.values[key] = (bytes(text), self.now + ttl)
        for key, text, ttl, instrument, ts in outbox.guarded_cache_writes:
            held = self.latest.get(instrument)
            if held is None or held["ts"] <= ts:
                self.values[key] = (bytes(text), self.now + ttl)

    def get_value(self, key: str) -> bytes | None:
        found = self.values.get(key)
        if found is None or found[1] <= self.now:
            return None
        return found[0]

    # -- the checkpoint -------------------------------------------------------------------------------------------
    def dump(self) -> bytes:
        live = {k: [v.decode(), expiry] for k, (v, expiry) in self.values.items() if expiry > self.now}
        return orjson.dumps({
            "latest": self.latest,
            "history": {k: [[score, member.decode()] for score, member in entries]
                        for k, entries in self.history.items()},
            "values": live, "bar_ticks": self.bar_ticks, "cursor": self.cursor, "fired_until": self.fired_until,
            "now": self.now,
        })

    @classmethod
    def load(cls, raw: bytes | memoryview | None) -> RunState:
        if not raw:
            return cls()
        data = orjson.loads(bytes(raw))
        return cls(latest=data["latest"],
                   history={k: [(score, member.encode()) for score, member in entries]
                            for k, entries in data["history"].items()},
                   values={k: (v.encode(), expiry) for k, (v, expiry) in data["values"].items()},
                   bar_ticks=data["bar_ticks"], cursor=tuple(data["cursor"]) if data["cursor"] else None,
                   fired_until=data["fired_until"], now=data["now"])

    def bars(self) -> RunBars:
        return RunBars(self.bar_ticks)


def _first(entry: tuple[float, bytes]) -> float:
    return entry[0]


def _score(bound: Any, low: bool) -> tuple[float, bool]:
    """A sorted-set bound (``"(1.5"``, ``"1.5"``, ``"-inf"``, ``"+inf"``) as (value, exclusive)."""
    text = bound.decode() if isinstance(bound, bytes) else str(bound)
    exclusive = text.startswith("(")
    text = text[1:] if exclusive else text
    if text in ("-inf", "+inf", "inf"):
        return (float("-inf") if text == "-inf" else float("inf")), False
    return float(text), exclusive


class StateReads:
    """The run's state behind the read commands the computations queue on ``ctx.client.pipeline()``."""

    def __init__(self, state: RunState):
        self.state = state

    def pipeline(self, transaction: bool = False) -> _Pipe:
        return _Pipe(self.state)


class _Pipe:
    def __init__(self, state: RunState):
        self.state = state
        self.replies: list[Any] = []

    def get(self, key: str) -> None:
        self.replies.append(self.state.get_value(key))

    def hget(self, key: str, name: str) -> None:
        raise NotImplementedError(f"a backtest does not serve HGET {key}")

    def zrangebyscore(self, key: str, low: Any, high: Any, start: int | None = None, num: int | None = None) -> None:
        entries = self.state.history.get(key, [])
        lo, lo_open = _score(low, True)
        hi, hi_open = _score(high, False)
        a = (bisect.bisect_right if lo_open else bisect.bisect_left)(entries, lo, key=_first)
        b = (bisect.bisect_left if hi_open else bisect.bisect_right)(entries, hi, key=_first)
        found = [member for _, member in entries[a:b]]
        if start is not None and num is not None:
            found = found[start:start + num]
        self.replies.append(found)

    def zrevrangebyscore(self, key: str, high: Any, low: Any, start: int | None = None,
                         num: int | None = None) -> None:
        self.zrangebyscore(key, low, high)
        found = self.replies.pop()[::-1]
        if start is not None and num is not None:
            found = found[start:start + num]
        self.replies.append(found)

    def pubsub_numsub(self, *channels: str) -> None:
        self.replies.append([(channel, 0) for channel in channels])  # nobody listens to a backtest

    def execute(self) -> list[Any]:
        replies, self.replies = self.replies, []
        return replies
