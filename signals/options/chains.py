"""Option chains and moneyness views on the Django side (docs/REFERENCE.md §4): the instrument registry, the latest chain, levels.

* The registry (`signals.models.InstrumentRecord`) holds every option seen on a stream (the pipeline registers
  them) or loaded from a CSV (`load_instruments_csv`); `chain_instruments` lists one underlying's options for one
  expiry, cached per process for ``SIGNAL_GREEKS_CHAIN_CACHE_S`` seconds.
* `load_chain` joins that list with the latest Greeks cached per option (and, in a batch, the ones just computed)
  and the reference price: the spot for black_scholes(_merton), the same-expiry future for black76.
* `level_view`, `atm_iv_view` and `chain_view` are the moneyness and option-chain answers built from a
  `ChainSnapshot`; the strike arithmetic is in :mod:`greeks.moneyness` (no Django).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import orjson
import redis
from django.conf import settings

from feed import keys
from feed.instruments import InstrumentKeyError, parse_instrument_key
from greeks import GREEK_NAMES

DEFAULT_MODEL = "black_scholes_merton"
_chain_cache: dict[tuple[str, date], tuple[float, list[tuple[str, str, float]], frozenset[str]]] = {}
_expiry_cache: dict[str, tuple[float, list[date]]] = {}


class LevelError(ValueError):
    """A moneyness level that is not ATM, ITM, OTM, ITMn, OTMn or Dnn."""


def parse_level(text: str) -> str:
    """Validate a level and return its canonical spelling (``atm`` -> ``ATM``, ``d25`` -> ``D25``)."""
    from greeks.moneyness import parse_level as parse

    try:
        level = parse(text)
    except ValueError as exc:
        raise LevelError(str(exc)) from None
    if level.kind == "DELTA":
        return f"D{level.n}"
    return level.kind + (str(level.n) if level.n is not None else "")


# --- registry ---------------------------------------------------------------------------------------------------
def chain_instruments(underlying_key: str, expiry: date, max_age_s: float | None = None,
                      expect: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, str, float]]:
    """(key, right, strike) of every option of ``underlying_key`` expiring on ``expiry``, by strike.

    Cached per process for ``max_age_s`` (default ``SIGNAL_GREEKS_CHAIN_CACHE_S``); read again at once when the
    cached list lacks one of the ``expect`` keys (options just seen in a batch) or is empty."""
    from signals.models import InstrumentRecord

    ttl = settings.SIGNAL_GREEKS_CHAIN_CACHE_S if max_age_s is None else max_age_s
    now = time.monotonic()
    cached = _chain_cache.get((underlying_key, expiry))
    if cached is not None and cached[1] and now - cached[0] < ttl and expect <= cached[2]:
        return cached[1]
    rows = InstrumentRecord.objects.filter(underlying_key=underlying_key, product="options", expiry=expiry) \
        .exclude(strike=None).order_by("strike", "right").values_list("key", "right", "strike")
    found = [(key, right, float(strike)) for key, right, strike in rows if right in ("call", "put")]
    _chain_cache[(underlying_key, expiry)] = (now, found, frozenset(key for key, _, _ in found))
    return found


def clear_chain_cache() -> None:
    _chain_cache.clear()
    _expiry_cache.clear()


def expiries(underlying_key: str, max_age_s: float = 0.0, expect: frozenset[date] | set[date] = frozenset()
             ) -> list[date]:
    """Listed option expiries of an underlying, ascending (cached like `chain_instruments` when max_age_s > 0)."""
    from signals.models import InstrumentRecord

    now = time.monotonic()
    cached = _expiry_cache.get(underlying_key)
    if cached is not None and cached[1] and now - cached[0] < max_age_s and expect <= set(cached[1]):
        return cached[1]
    found = list(InstrumentRecord.objects.filter(underlying_key=underlying_key, product="options")
                 .exclude(expiry=None).order_by("expiry").values_list("expiry", flat=True).distinct())
    _expiry_cache[underlying_key] = (now, found)
    return found


def nearest_expiry(underlying_key: str, on: date, expect: frozenset[date] | set[date] = frozenset()) -> date | None:
    """The first listed expiry on or after ``on`` (the exchange date of a tick); the list is cached per process
    for ``SIGNAL_GREEKS_CHAIN_CACHE_S`` unless ``expect`` (expiries just seen) is missing from it."""
    for expiry in expiries(underlying_key, settings.SIGNAL_GREEKS_CHAIN_CACHE_S, expect):
        if expiry >= on:
            return expiry
    return None


def instrument_known(key: str) -> bool:
    from signals.models import InstrumentRecord

    return InstrumentRecord.objects.filter(key=key).exists()


def underlying_known(underlying_key: str) -> bool:
    from signals.models import InstrumentRecord

    return InstrumentRecord.objects.filter(underlying_key=underlying_key).exists()


# --- CSV loading ------------------------------------------------------------------------------------------------
CSV_KEY_COLUMNS = ("instrument_key", "key")


def parse_csv_instruments(text_or_file: str | io.TextIOBase) -> tuple[dict[str, Any], list[str]]:
    """Instruments of a CSV (key -> `Instrument`) and its bad lines as ``"line N: message"``.

    Columns (header required, any case): ``instrument_key`` (any accepted spelling, docs/REFERENCE.md §3.1), or ``exchange``,
    ``symbol``, ``product`` and for derivatives ``expiry`` (+ ``right``/``option_type`` and ``strike``).
    """
    handle = io.StringIO(text_or_file) if isinstance(text_or_file, str) else text_or_file
    reader = csv.DictReader(handle)
    if not reader.fieldnames:
        return {}, ["line 1: the CSV has no header row"]
    columns = {name.strip().lower(): name for name in reader.fieldnames}
    found: dict[str, Any] = {}
    errors: list[str] = []
    for line, row in enumerate(reader, start=2):
        values = {k: (row.get(original) or "").strip() for k, original in columns.items()}
        try:
            inst = parse_instrument_key(_csv_key(values))
        except InstrumentKeyError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        found[inst.key] = inst
    return found, errors


def load_instruments_csv(text_or_file: str | io.TextIOBase) -> tuple[int, list[str]]:
    """Load a CSV (see `parse_csv_instruments`) into the registry; returns (instruments written, bad lines).
    Existing rows are updated (same key: same instrument), so loading a file twice changes nothing."""
    from signals.models import InstrumentRecord

    found, errors = parse_csv_instruments(text_or_file)
    index_symbols = frozenset(settings.SIGNAL_INDEX_SYMBOLS)
    records = [InstrumentRecord(key=inst.key, exchange=inst.exchange, symbol=inst.symbol, product=inst.product,
                                underlying_key=inst.underlying_key(index_symbols), expiry=inst.expiry,
                                right=inst.right or "", strike=inst.strike) for inst in found.values()]
    if records:
        InstrumentRecord.objects.bulk_create(
            records, update_conflicts=True, unique_fields=["key"],
            update_fields=["exchange", "symbol", "product", "underlying_key", "expiry", "right", "strike"])
        clear_chain_cache()
    return len(records), errors


def _csv_key(values: dict[str, str]) -> str:
    for column in CSV_KEY_COLUMNS:
        if values.get(column):
            return values[column]
    parts = [values.get("exchange", ""), values.get("symbol", ""), values.get("product", "")]
    if not all(parts):
        raise InstrumentKeyError("needs an instrument_key column, or exchange, symbol and product")
    expiry = values.get("expiry") or values.get("expiry_date")
    if expiry:
        parts.append(expiry)
    right = values.get("right") or values.get("option_type")
    strike = values.get("strike") or values.get("strike_price")
    if right or strike:
        parts += [right, strike]
    return "@".join(parts)


# --- latest chain -----------------------------------------------------------------------------------------------
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
        pipe.hget(keys.latest_tick(ref_key), "data")
    else:
        pipe.zrevrangebyscore(keys.price_history(ref_key), at_ts, "-inf", start=0, num=1)
    replies = pipe.execute()
    extra_replies, values, found = replies[:extra], replies[extra:-1], replies[-1]
    for key, value in zip(stored_keys, values, strict=True):
        if value:
            entries[key] = orjson.loads(value)
    if at_ts is not None:
        found = found[0] if found else None
    ref = orjson.loads(found) if found else None
    price = ref.get("ltp") if ref else None
    stamp = (ref.get("timestamp") or _iso(ref.get("ts"))) if ref else None
    snapshot = ChainSnapshot(underlying_key, expiry, options, entries, model, ref_key, price, stamp)
    snapshot.also = extra_replies
    return snapshot


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


# --- moneyness views --------------------------------------------------------------------------------------------
def _option_view(snapshot: ChainSnapshot, right: str, strike: float) -> dict[str, Any]:
    key = (snapshot.calls if right == "call" else snapshot.puts).get(strike)
    entry = snapshot.entries.get(key) if key else None
    view: dict[str, Any] = {"instrument_key": key, "strike": _strike_out(strike)}
    if entry is None:
        view.update({name: None for name in GREEK_NAMES})
        view.update({"option_price": None, "underlying_price": None, "sigma_source": None,
                     "status": "no_greeks" if key else "not_listed", "timestamp": None})
        return view
    view.update(entry.get("greeks") or {name: None for name in GREEK_NAMES})
    view.update({"option_price": entry.get("option_price"), "underlying_price": entry.get("underlying_price"),
                 "sigma_source": entry.get("sigma_source"), "status": entry.get("status"),
                 "stale_underlying": entry.get("stale_underlying", False), "timestamp": entry.get("timestamp")})
    return view


def _strike_out(strike: float) -> float | int:
    return int(strike) if float(strike).is_integer() else float(strike)


def _average(views: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in GREEK_NAMES:
        values = [v[name] for v in views if v.get(name) is not None]
        out[name] = math.fsum(values) / len(values) if values else None
    out["count"] = sum(1 for v in views if v.get("iv") is not None or v.get("delta") is not None)
    return out


def atm_index(snapshot: ChainSnapshot) -> int | None:
    """Index in ``snapshot.strikes`` of the listed strike nearest the reference price (lower strike on a tie)."""
    from greeks.moneyness import atm_strike

    if snapshot.reference_price is None or snapshot.strikes.size == 0:
        return None
    strike = atm_strike(snapshot.strikes, float(snapshot.reference_price))
    if not math.isfinite(strike):
        return None
    return int(np.flatnonzero(snapshot.strikes == strike)[0])


def level_strikes(snapshot: ChainSnapshot, level: str, strike_step: float | None = None
                  ) -> tuple[list[float], list[float], str | None]:
    """(call strikes, put strikes, reason when both are empty) of a level (see :mod:`greeks.moneyness`).

    ITMn/OTMn count listed strikes from ATM; with ``strike_step`` they are ATM ± n·step instead (empty when that
    strike is not listed). Dnn uses the deltas of the latest Greeks."""
    from greeks import moneyness

    level = parse_level(level)
    atm = atm_index(snapshot)
    if atm is None:
        reason = "no listed strikes" if snapshot.strikes.size == 0 else \
            f"no price for {snapshot.reference_key} to find the ATM strike"
        return [], [], reason
    atm_k = float(snapshot.strikes[atm])
    sides: dict[str, list[float]] = {}
    for right in ("call", "put"):
        deltas = snapshot.greeks_array(right, "delta") if level.startswith("D") else None
        if strike_step and level[:3] in ("ITM", "OTM") and len(level) > 3:
            n = int(level[3:])
            up = (level[:3] == "OTM") == (right == "call")
            target = atm_k + (n if up else -n) * strike_step
            listed = snapshot.strikes[np.isclose(snapshot.strikes, target, rtol=0, atol=1e-6)]
            sides[right] = [float(k) for k in listed[:1]]
        else:
            sides[right] = [float(k) for k in moneyness.level_strikes(snapshot.strikes, atm_k, level, right, deltas)]
    calls, puts = sides["call"], sides["put"]
    if calls or puts:
        return calls, puts, None
    if level.startswith("D"):
        return calls, puts, "no option of this expiry has a delta yet"
    return calls, puts, f"no listed strike at {level} for this expiry"


def level_view(snapshot: ChainSnapshot, level: str, strike_step: float | None = None) -> dict[str, Any]:
    """A level's strikes and their call/put Greeks, plus averages of each side."""
    calls, puts, reason = level_strikes(snapshot, level, strike_step)
    atm = atm_index(snapshot)
    call_views = [_option_view(snapshot, "call", k) for k in calls]
    put_views = [_option_view(snapshot, "put", k) for k in puts]
    body = {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "level": level.upper(),
        "model": snapshot.model, "spot": snapshot.reference_price, "spot_key": snapshot.reference_key,
        "atm_strike": _strike_out(float(snapshot.strikes[atm])) if atm is not None else None,
        "timestamp": snapshot.timestamp,
        "strikes": sorted({_strike_out(k) for k in calls + puts}),
        "calls": call_views, "puts": put_views,
        "averages": {"call": _average(call_views), "put": _average(put_views)},
    }
    if reason:
        body["reason"] = reason
    return body


def atm_iv_view(snapshot: ChainSnapshot) -> dict[str, Any]:
    """IV at the reference price, interpolated between the bracketing strikes (call and put averaged where both
    solve): ``{iv, call_iv, put_iv, atm_strike, spot, timestamp, ...}``."""
    atm = atm_index(snapshot)
    body: dict[str, Any] = {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "model": snapshot.model,
        "iv": None, "call_iv": None, "put_iv": None,
        "atm_strike": _strike_out(float(snapshot.strikes[atm])) if atm is not None else None,
        "spot": snapshot.reference_price, "spot_key": snapshot.reference_key, "timestamp": snapshot.timestamp,
    }
    if atm is None:
        body["reason"] = "no listed strikes" if snapshot.strikes.size == 0 else \
            f"no price for {snapshot.reference_key}"
        return body
    body.update(interpolate_atm_iv(snapshot.strikes, snapshot.greeks_array("call", "iv"),
                                   snapshot.greeks_array("put", "iv"), float(snapshot.reference_price)))
    if body["iv"] is None:
        body["reason"] = "no implied volatility on both sides of the spot (no extrapolation)"
    return body


def interpolate_atm_iv(strikes: np.ndarray, call_iv: np.ndarray, put_iv: np.ndarray, spot: float
                       ) -> dict[str, float | None]:
    """``{iv, call_iv, put_iv}`` at ``spot``: call and put averaged per strike where both solve, and each side
    alone (:func:`greeks.moneyness.atm_iv`); None where the spot is not bracketed."""
    from greeks.moneyness import atm_iv

    none = np.full(strikes.shape, np.nan)
    found = {"iv": atm_iv(strikes, call_iv, put_iv, spot), "call_iv": atm_iv(strikes, call_iv, none, spot),
             "put_iv": atm_iv(strikes, none, put_iv, spot)}
    return {name: (float(v) if math.isfinite(v) else None) for name, v in found.items()}


def chain_view(snapshot: ChainSnapshot) -> dict[str, Any]:
    """Every listed strike with its call and put Greeks, the spot and the ATM strike."""
    atm = atm_index(snapshot)
    rows = [{"strike": _strike_out(float(k)), "call": _option_view(snapshot, "call", float(k)) if float(k) in
             snapshot.calls else None, "put": _option_view(snapshot, "put", float(k)) if float(k) in
             snapshot.puts else None} for k in snapshot.strikes]
    return {
        "underlying": snapshot.underlying_key, "expiry_date": snapshot.expiry.isoformat(), "model": snapshot.model,
        "spot": snapshot.reference_price, "spot_key": snapshot.reference_key,
        "atm_strike": _strike_out(float(snapshot.strikes[atm])) if atm is not None else None,
        "timestamp": snapshot.timestamp, "strikes": rows,
    }


