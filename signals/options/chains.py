"""The latest option chain of one underlying and expiry (docs/REFERENCE.md §4), read for the moneyness views.

`load_chain` joins the registry's options (`signals.instrument_registry.chain_instruments`) with the latest Greeks
cached per option (and, in a batch, the ones just computed) and the reference price: the spot for
black_scholes(_merton), the same-expiry future for black76. The views built from the `ChainSnapshot` are in
:mod:`signals.options.levels`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import orjson
import redis

from feed import keys
from feed.instruments import parse_instrument_key
from feed.latest import LatestStore
from greeks import DEFAULT_MODEL
from signals.instrument_registry import chain_instruments


@dataclass
class ChainSnapshot:
    """One underlying's options for one expiry with their latest Greeks (``entries``: key -> cached entry)."""

    underlying_key: str
    expiry: date
    options: list[tuple[str, str, float]]
    entries: dict[str, dict[str, Any]]
    model: str
    reference_key: str
    reference_price: float | None
    reference_timestamp: str | None
    strikes: np.ndarray = field(init=False)
    calls: dict[float, str] = field(init=False)
    puts: dict[float, str] = field(init=False)
    also: list[Any] = field(init=False, default_factory=list)  # replies to a caller's reads (`load_chain`)

    def __post_init__(self) -> None:
        self.strikes = np.array(sorted({strike for _, _, strike in self.options}), dtype=np.float64)
        self.calls = {strike: key for key, right, strike in self.options if right == "call"}
        self.puts = {strike: key for key, right, strike in self.options if right == "put"}
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    @property
    def timestamp(self) -> str | None:
        """Tick time of the newest value the snapshot uses."""
        if "_timestamp" not in self.__dict__:
            stamps = [(e["ts"], e["timestamp"]) for e in self.entries.values() if e.get("ts") is not None]
            self.__dict__["_timestamp"] = max(stamps)[1] if stamps else self.reference_timestamp
        return self.__dict__["_timestamp"]

    def entry(self, right: str, strike: float) -> dict[str, Any] | None:
        key = (self.calls if right == "call" else self.puts).get(strike)
        return self.entries.get(key) if key is not None else None

    def greeks_array(self, right: str, name: str) -> np.ndarray:
        """The ``name`` Greek of every listed strike for ``right`` (NaN where unknown)."""
        cached = self._arrays.get((right, name))
        if cached is not None:
            return cached
        out = np.full(self.strikes.shape, np.nan)
        for j, strike in enumerate(self.strikes):
            e = self.entry(right, float(strike))
            value = (e or {}).get("greeks", {}).get(name)
            if value is not None:
                out[j] = value
        self._arrays[(right, name)] = out
        return out


def reference_key(underlying_key: str, expiry: date, model: str) -> str:
    """The price moneyness is measured against: the same-expiry future for black76, else the underlying."""
    if model == "black76":
        return replace(parse_instrument_key(underlying_key), expiry=expiry).future_key()  # type: ignore[return-value]
    return underlying_key


def load_chain(client: redis.Redis, underlying_key: str, expiry: date, *, model: str | None = None,
               at_ts: float | None = None, fresh: dict[str, dict[str, Any]] | None = None,
               expect: frozenset[str] | set[str] = frozenset(),
               also: Callable[[Any], int] | None = None) -> ChainSnapshot:
    """The latest chain: registry options (see `chain_instruments` for ``expect``), their cached Greeks
    (overlaid with ``fresh`` ones from this batch) and the reference price (latest, or at or before ``at_ts``).

    ``also`` queues a caller's own reads on the pipeline of the last round trip and returns how many it queued;
    their replies are the snapshot's ``also``."""
    options = chain_instruments(underlying_key, expiry, expect=expect)
    fresh = fresh or {}
    stored_keys = [key for key, _, _ in options if key not in fresh]
    entries: dict[str, dict[str, Any]] = {key: fresh[key] for key, _, _ in options if key in fresh}
    if model is None:
        # the model decides the reference price; without a config, the one the cached Greeks were computed with
        pipe = client.pipeline(transaction=False)
        for key in stored_keys:
            pipe.get(keys.latest_result("greeks", key))
        for key, value in zip(stored_keys, pipe.execute() if stored_keys else [], strict=True):
            if value:
                entries[key] = orjson.loads(value)
        stored_keys = []
        models = Counter(e.get("model") for e in entries.values() if e.get("model"))
        model = models.most_common(1)[0][0] if models else DEFAULT_MODEL
    ref_key = reference_key(underlying_key, expiry, model)
    pipe = client.pipeline(transaction=False)
    extra = also(pipe) if also is not None else 0
    for key in stored_keys:
        pipe.get(keys.latest_result("greeks", key))
    if at_ts is None:
        LatestStore.queue_get(pipe, ref_key)
    else:
        LatestStore.queue_at_or_before(pipe, ref_key, at_ts)
    replies = pipe.execute()
    extra_replies, values, found = replies[:extra], replies[extra:-1], replies[-1]
    for key, value in zip(stored_keys, values, strict=True):
        if value:
            entries[key] = orjson.loads(value)
    ref = LatestStore.decode(found) if at_ts is None else LatestStore.found(found)
    price = ref.get("ltp") if ref else None
    stamp = (ref.get("timestamp") or _iso(ref.get("ts"))) if ref else None
    snapshot = ChainSnapshot(underlying_key, expiry, options, entries, model, ref_key, price, stamp)
    snapshot.also = extra_replies
    return snapshot


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()
