"""Internal functions (registered in code) and external ones (uploaded, run in the sandbox) as computations.

External functions never run in this process: `functions.sandbox.run_external` sends each call to a sandbox worker
process with the config entry's limits (``timeout`` seconds, ``memory_limit_mb``). Failures, timeouts and kills
come back as the result's ``error`` and the batch carries on. A call that had to be killed (timeout, crash) is not
repeated for the rest of the batch, and a function killed ``SIGNAL_EXTERNAL_MAX_KILLS`` times in a row is suspended
for ``SIGNAL_EXTERNAL_SUSPEND_S``, so hostile code costs one timeout per batch at most, then almost nothing.

Sources are cached per process by name and source hash, and reloaded when the config registry version (bumped on
every config or function change) moves: an upload takes effect on the next batch without a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from configs.models import ExternalFunction
from configs.registry import ActiveConfig, registry
from feed.instruments import parse_instrument_key
from functions import internal as internal_functions
from functions.sandbox import configure_default_pool, get_default_pool, run_external
from signals.pipeline.computations.results import Result, result
from signals.pipeline.context import BatchContext


def _tick_view(tick: dict[str, Any], ctx: BatchContext, chain: bool = False) -> dict[str, Any]:
    previous = ctx.previous.get(tick["source_id"])
    view = dict(tick)
    view.pop("source_id", None)
    view["previous"] = {"ltp": previous["ltp"], "timestamp": previous["timestamp"]} if previous else None
    if chain:  # the underlying's options not expired at the tick's exchange date
        inst = parse_instrument_key(tick["instrument_key"])
        today = datetime.fromtimestamp(tick["ts"], ZoneInfo(settings.EXCHANGE_TIMEZONE)).date().isoformat()
        underlying = inst.underlying_key(frozenset(settings.SIGNAL_INDEX_SYMBOLS))
        view["chain"] = [entry for entry in ctx.option_chain(underlying) if entry["expiry"] >= today]
    return view


def internal(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    document = config.document
    entries = document.get("internal_functions") or []
    if not entries:
        return [None] * len(ticks)
    bound: list[tuple[str, bool, Any, bool]] = []  # (label, needs bars, call or the binding error, needs chain)
    for entry in entries:
        name = entry["name"]
        try:
            call: Any = internal_functions.bind(name, entry.get("parameters") or {})
        except Exception as exc:  # reported on every tick of the config, like any failed computation
            call = exc
        bound.append((entry.get("output_key") or name, internal_functions.needs_bars(name), call,
                      internal_functions.needs_chain(name)))
    out: list[list[Result]] = []
    for tick in ticks:
        items: list[Result] = []
        for label, needs_bars, call, needs_chain in bound:
            started = time.perf_counter()
            try:
                if isinstance(call, Exception):
                    raise call
                bars = ctx.bars(tick["instrument_key"], document["interval"], tick["ts"]) if needs_bars else []
                value = call(_tick_view(tick, ctx, needs_chain), list(bars))
                items.append(result("internal_function", label, value, (time.perf_counter() - started) * 1000))
            except Exception as exc:
                items.append(result("internal_function", label, None, (time.perf_counter() - started) * 1000,
                                    f"{type(exc).__name__}: {exc}"))
        out.append(items)
    return out


# --- external functions -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedFunction:
    name: str
    function_name: str
    source_hash: str
    source: str


class ExternalSources:
    """Uploaded sources by name, cached per (name, source hash); refreshed when the registry version moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: Any = object()
        self._current: dict[str, tuple[str, str]] = {}  # name -> (function_name, source_hash)
        self._sources: dict[tuple[str, str], str] = {}  # (name, source_hash) -> source
        self._loaded_at = 0.0

    def _reload(self, version: Any) -> None:
        rows = ExternalFunction.objects.values_list("name", "function_name", "source_hash")
        self._current = {name: (function_name, digest) for name, function_name, digest in rows}
        wanted = {(name, digest) for name, (_, digest) in self._current.items()}
        self._sources = {key: source for key, source in self._sources.items() if key in wanted}
        self._version = version
        self._loaded_at = time.monotonic()

    def get(self, name: str) -> LoadedFunction | None:
        with self._lock:
            version = registry.version
            stale = version is None or version != self._version
            if stale or (name not in self._current and time.monotonic() - self._loaded_at > 1.0):
                self._reload(version)
            found = self._current.get(name)
            if found is None:
                return None
            function_name, digest = found
            source = self._sources.get((name, digest))
            if source is None:
                source = ExternalFunction.objects.filter(name=name, source_hash=digest).values_list(
                    "source", flat=True).first()
                if source is None:  # replaced in between: next call reloads
                    self._version = object()
                    return None
                self._sources[(name, digest)] = source
            return LoadedFunction(name, function_name, digest, source)

    def clear(self) -> None:
        with self._lock:
            self._version = object()
            self._current = {}
            self._sources = {}


class KillBreaker:
    """Suspends a function (by name and source hash) after repeated kills, so hostile code cannot stall batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kills: dict[tuple[str, str], int] = {}
        self._until: dict[tuple[str, str], float] = {}

    def suspended(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return None
            left = until - time.monotonic()
            if left <= 0:
                del self._until[key]
                self._kills[key] = settings.SIGNAL_EXTERNAL_MAX_KILLS - 1  # one more kill suspends it again
                return None
            return (f"suspended for {left:.0f} s more: killed {settings.SIGNAL_EXTERNAL_MAX_KILLS} times in a row "
                    "(timeout or crash); fix and re-upload the function to retry at once")

    def record(self, key: tuple[str, str], killed: bool) -> None:
        with self._lock:
            if not killed:
                self._kills.pop(key, None)
                return
            self._kills[key] = self._kills.get(key, 0) + 1
            if self._kills[key] >= settings.SIGNAL_EXTERNAL_MAX_KILLS:
                self._until[key] = time.monotonic() + settings.SIGNAL_EXTERNAL_SUSPEND_S

    def clear(self) -> None:
        with self._lock:
            self._kills.clear()
            self._until.clear()


sources = ExternalSources()
breaker = KillBreaker()
_pool_lock = threading.Lock()
_pool_configured = False


def _sandbox_pool() -> Any:
    global _pool_configured
    with _pool_lock:
        if not _pool_configured:
            _pool_configured = True
            pool = get_default_pool()
            if pool.size != settings.SIGNAL_SANDBOX_POOL_SIZE:
                return configure_default_pool(settings.SIGNAL_SANDBOX_POOL_SIZE)
            return pool
    return get_default_pool()


def external(config: ActiveConfig, ticks: list[dict[str, Any]], ctx: BatchContext) -> list[Any]:
    document = config.document
    entries = document.get("external_functions") or []
    if not entries:
        return [None] * len(ticks)
    loaded = {entry["name"]: sources.get(entry["name"]) for entry in entries}
    pool = _sandbox_pool()
    skipped: dict[int, str] = {}  # entry index -> why it is not run again in this batch
    out: list[list[Result]] = []
    for tick in ticks:
        view = _tick_view(tick, ctx)
        bars: list[dict[str, Any]] | None = None
        items: list[Result] = []
        for index, entry in enumerate(entries):
            name = entry["name"]
            label = entry.get("output_key") or name
            function = loaded[name]
            if function is None:
                items.append(result("external_function", label, None, 0.0,
                                    f"external function {name!r} is not uploaded (deleted after the config was "
                                    "saved?)"))
                continue
            key = (function.name, function.source_hash)
            reason = skipped.get(index) or breaker.suspended(key)
            if reason:
                items.append(result("external_function", label, None, 0.0, reason))
                continue
            if bars is None:
                bars = ctx.bars(tick["instrument_key"], document["interval"], tick["ts"])
            outcome = run_external(
                function.source, entry.get("function_name") or function.function_name, view, bars,
                entry.get("parameters") or {}, timeout_s=float(entry.get("timeout", 2)),
                memory_limit_mb=int(entry.get("memory_limit_mb", 128)), pool=pool,
            )
            breaker.record(key, outcome.killed)
            if outcome.killed:
                skipped[index] = f"not run: an earlier call in this batch was killed ({outcome.error})"
            items.append(result("external_function", label, outcome.result, outcome.execution_time_ms,
                                outcome.error))
        out.append(items)
    return out
