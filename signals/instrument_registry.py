"""The instrument registry (`signals.models.InstrumentRecord`, docs/REFERENCE.md §4): every instrument seen on a
stream (`register_instruments`, called by the pipeline and the history import) or loaded from a CSV
(`load_instruments_csv`), and the questions asked of it: one underlying's option chain and expiries, whether a key
or an underlying is known.

Three per-process caches spare the database: the keys this process has registered already, and the chains and
expiries read in the last ``SIGNAL_GREEKS_CHAIN_CACHE_S`` seconds. `clear_caches` empties them (tests, whose
rollbacks remove the rows behind them).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import date

from django.conf import settings
from django.db.models import Q

from feed.instruments import Instrument, InstrumentKeyError, parse_instrument_key
from signals.models import InstrumentRecord

CSV_KEY_COLUMNS = ("instrument_key", "key")
_RECORD_FIELDS = ["exchange", "symbol", "product", "underlying_key", "expiry", "right", "strike"]
_seen_instruments: set[str] = set()
_chain_cache: dict[tuple[str, date], tuple[float, list[tuple[str, str, float]], frozenset[str]]] = {}
_expiry_cache: dict[str, tuple[float, list[date]]] = {}


def clear_caches() -> None:
    """Forget every per-process cache: registered keys, chains and expiries."""
    _seen_instruments.clear()
    _clear_chain_caches()


def _clear_chain_caches() -> None:
    _chain_cache.clear()
    _expiry_cache.clear()


def _record(key: str, inst: Instrument, index_symbols: frozenset[str]) -> InstrumentRecord:
    return InstrumentRecord(key=key, exchange=inst.exchange, symbol=inst.symbol, product=inst.product,
                            underlying_key=inst.underlying_key(index_symbols), expiry=inst.expiry,
                            right=inst.right or "", strike=inst.strike)


# --- writing ----------------------------------------------------------------------------------------------------
def register_instruments(instrument_keys: list[str]) -> None:
    """Add instruments not seen before by this process to the registry (one statement, conflicts ignored)."""
    new = [k for k in instrument_keys if k not in _seen_instruments]
    if not new:
        return
    index_symbols = frozenset(settings.SIGNAL_INDEX_SYMBOLS)
    rows = [_record(key, parse_instrument_key(key), index_symbols) for key in new]
    InstrumentRecord.objects.bulk_create(rows, ignore_conflicts=True)
    _seen_instruments.update(new)


def parse_csv_instruments(text_or_file: str | io.TextIOBase) -> tuple[dict[str, Instrument], list[str]]:
    """Instruments of a CSV (key -> `Instrument`) and its bad lines as ``"line N: message"``.

    Columns (header required, any case): ``instrument_key`` (any accepted spelling, docs/REFERENCE.md §3.1), or
    ``exchange``, ``symbol``, ``product`` and for derivatives ``expiry`` (+ ``right``/``option_type`` and ``strike``).
    """
    handle = io.StringIO(text_or_file) if isinstance(text_or_file, str) else text_or_file
    reader = csv.DictReader(handle)
    if not reader.fieldnames:
        return {}, ["line 1: the CSV has no header row"]
    columns = {name.strip().lower(): name for name in reader.fieldnames}
    found: dict[str, Instrument] = {}
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
    found, errors = parse_csv_instruments(text_or_file)
    index_symbols = frozenset(settings.SIGNAL_INDEX_SYMBOLS)
    records = [_record(key, inst, index_symbols) for key, inst in found.items()]
    if records:
        InstrumentRecord.objects.bulk_create(records, update_conflicts=True, unique_fields=["key"],
                                             update_fields=_RECORD_FIELDS)
        _clear_chain_caches()
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


# --- reading ----------------------------------------------------------------------------------------------------
def chain_instruments(underlying_key: str, expiry: date, max_age_s: float | None = None,
                      expect: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, str, float]]:
    """(key, right, strike) of every option of ``underlying_key`` expiring on ``expiry``, by strike.

    Cached per process for ``max_age_s`` (default ``SIGNAL_GREEKS_CHAIN_CACHE_S``); read again at once when the
    cached list lacks one of the ``expect`` keys (options just seen in a batch) or is empty."""
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


def expiries(underlying_key: str, max_age_s: float = 0.0, expect: frozenset[date] | set[date] = frozenset()
             ) -> list[date]:
    """Listed option expiries of an underlying, ascending (cached like `chain_instruments` when max_age_s > 0)."""
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


def option_keys(underlying_key: str) -> list[str]:
    """Every registered option of ``underlying_key``, any expiry."""
    return list(InstrumentRecord.objects.filter(underlying_key=underlying_key, product="options")
                .values_list("key", flat=True))


def live_keys(pattern: str, today: date) -> list[str]:
    """Registered keys a config's instrument pattern (``*``, ``PREFIX@*`` or one key) matches, derivatives that
    expired before ``today`` (an exchange date) left out."""
    live = InstrumentRecord.objects.filter(Q(expiry__isnull=True) | Q(expiry__gte=today))
    if pattern == "*":
        query = live
    elif pattern.endswith("@*"):
        query = live.filter(key__startswith=pattern[:-1])
    else:
        query = live.filter(key=pattern)
    return list(query.values_list("key", flat=True))


def instrument_known(key: str) -> bool:
    return InstrumentRecord.objects.filter(key=key).exists()


def underlying_known(underlying_key: str) -> bool:
    return InstrumentRecord.objects.filter(underlying_key=underlying_key).exists()

