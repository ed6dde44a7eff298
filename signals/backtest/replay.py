"""One chunk of a backtest: stored ticks of one underlying replayed through the live computations, in the order the
live pipeline took them, each tick as the batch it is when the live service keeps up with its feed (idle, a tick
goes out alone), against the run's own state (`signals.backtest.state`) instead of the live Redis.

The steps are the live batch's (`signals.pipeline.batch.process_batch`): the tick before (the held latest, or for
a late tick the one before it in tick time), the latest values and history, the every_tick configs and the
every_interval ones on a bar close (`configs.frequency.bar_close_crossings`), the computations
(`signals.pipeline.batch.run_grouped`: the same handlers), then the cached latest results. Time-driven frequencies
fire at their exchange times in tick time (`configs.scheduling`), between the last tick at or before that time and
the next one, on the latest tick of each matching instrument held then, as `signals.schedule.timed` does live.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from django.conf import settings

from configs.frequency import Frequency, FrequencyError, bar_close_crossings, parse_frequency
from configs.registry import ActiveConfig
from configs.scheduling import exchange_tz, next_cron_time, schedule_period
from feed import keys
from feed.instruments import key_matches, parse_instrument_key
from signals.backtest.state import RunState, StateReads
from signals.delivery.outputs import Outbox
from signals.pipeline.batch import Matched, previous_ticks, run_grouped
from signals.pipeline.computations import reads_stored_ticks
from signals.pipeline.context import BatchContext
from signals.storage import ticks_before


@dataclass
class ChunkOutcome:
    records: list[dict[str, Any]] = field(default_factory=list)
    ticks: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # config name -> failed computations


def next_fire(frequency: Frequency, after: float) -> float:
    """The first exchange time strictly after tick time ``after`` at which a time-driven frequency fires: an
    interval schedule on its own slices of epoch time (the periods `configs.scheduling.schedule_period` names), a
    crontab by `configs.scheduling.next_cron_time` in exchange time."""
    if frequency.kind == "interval":
        seconds = float(frequency.seconds or 1)
        return (after // seconds + 1) * seconds
    return next_cron_time(frequency, datetime.fromtimestamp(after, UTC)).timestamp()


class Replay:
    """Replays ticks of one underlying against ``state``; ``configs`` are the run's, in record order."""

    def __init__(self, underlying: str, configs: list[ActiveConfig], state: RunState):
        self.underlying = underlying
        self.state = state
        self.reads = StateReads(state)
        self.bars = state.bars()
        self.by_frequency: dict[str, list[ActiveConfig]] = {}
        self.timed: dict[str, tuple[Frequency, list[ActiveConfig]]] = {}  # schedule key -> its configs
        for config in configs:
            try:
                frequency = parse_frequency(config.frequency)
            except FrequencyError:
                continue
            if frequency.is_time_driven:
                self.timed.setdefault(frequency.schedule_key, (frequency, []))[1].append(config)
            else:
                self.by_frequency.setdefault(frequency.kind, []).append(config)
        # bars are read only of the instruments a bar-reading config runs on: only their ticks are kept for bars
        # (they stay in the run's state for the whole run)
        self.bar_patterns = [c.pattern for c in configs if reads_stored_ticks(c.document)]
        self._keeps_bars: dict[str, bool] = {}  # instrument key -> whether its ticks are kept for bars
        self.seen: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}  # this chunk's ticks per instrument
        self.outcome = ChunkOutcome()
        self._next_due: float | None = None  # the next time-driven firing (None: not known yet)

    # -- ticks ---------------------------------------------------------------------------------------------------
    def run(self, ticks: Iterable[dict[str, Any]], batch_ticks: int = 1,
            alive: Callable[[], None] | None = None) -> ChunkOutcome:
        """Replay ``ticks`` (in the order live took them) in batches of up to ``batch_ticks`` ticks of this
        underlying, as the bridge groups them: 1 is the live service keeping up with its feed; larger batches are
        the live service under load (Greeks solved per batch, indicators and moneyness once per batch).
        ``alive`` is called after each batch (the chunk's heartbeat)."""
        batch: list[dict[str, Any]] = []
        own = 0
        for tick in ticks:
            if self._due(tick["ts"]):
                self.batch(batch)
                batch, own = [], 0
                self.fire_until(tick["ts"], inclusive=False)
            batch.append(tick)
            own += not tick.get("context")
            if own >= batch_ticks:
                self.batch(batch)
                batch, own = [], 0
                if alive is not None:
                    alive()
        self.batch(batch)
        return self.outcome

    def batch(self, ticks: list[dict[str, Any]]) -> None:
        """One batch, as `signals.pipeline.batch.process_batch` runs it (context ticks, INDVIX's for this
        underlying, only update latest values and history)."""
        if not ticks:
            return
        own = [t for t in ticks if not t.get("context")]
        self.state.now = max(self.state.now, max(t["ts"] for t in ticks))
        held = {t["instrument_key"]: self.state.latest[t["instrument_key"]] for t in own
                if t["instrument_key"] in self.state.latest}
        previous = previous_ticks(own, held, self._befores)
        for tick in ticks:
            self.state.update_latest(tick)
        for tick in own:
            bisect.insort(self.seen.setdefault(tick["instrument_key"], []), (tick["ts"], tick["source_id"], tick),
                          key=_order)
            if self.keeps_bars(tick["instrument_key"]):
                self.bars.add(tick)
        self.outcome.ticks += len(own)
        ordered = sorted(own, key=lambda t: t["ts"])
        matched: Matched = {}
        for config in self.by_frequency.get("every_tick", []):
            found = [t for t in ordered if key_matches(config.pattern, t["instrument_key"])]
            if found:
                matched[config.id] = (config, found)
        closes: Matched = {}
        for config in self.by_frequency.get("every_interval", []):
            found = [t for t in ordered if key_matches(config.pattern, t["instrument_key"])]
            before = [previous.get(t["source_id"]) for t in found]
            crossed = bar_close_crossings([t["ts"] for t in found], [p["ts"] if p else None for p in before],
                                          config.document.get("interval", "1m"), settings.SESSION_OPEN,
                                          settings.EXCHANGE_TIMEZONE)
            found = [t for t, hit in zip(found, crossed, strict=True) if hit]
            if found:
                closes[config.id] = (config, found)
        if not matched and not closes:
            return
        ctx = self._context(previous, {key: tick["ts"] for key, tick in held.items()})
        self._keep(run_grouped(matched, ctx) + run_grouped(closes, ctx), ctx)

    def keeps_bars(self, key: str) -> bool:
        found = self._keeps_bars.get(key)
        if found is None:
            found = self._keeps_bars[key] = any(key_matches(pattern, key) for pattern in self.bar_patterns)
        return found

    def _befores(self, times: dict[str, float]) -> dict[str, dict[str, Any]]:
        found = {key: self._before(key, ts) for key, ts in times.items()}
        return {key: tick for key, tick in found.items() if tick is not None}

    def _before(self, key: str, ts: float) -> dict[str, Any] | None:
        """A late tick's previous tick: the instrument's newest tick before it in tick time, among the ticks
        replayed so far (this chunk's, else the stored ticks, as the live batch reads them)."""
        seen = self.seen.get(key) or []
        i = bisect.bisect_left(seen, ts, key=lambda t: t[0])
        if i > 0:
            return seen[i - 1][2]
        return ticks_before({key: ts}).get(key)

    def _context(self, previous: dict[str, dict[str, Any] | None], held_ts: dict[str, float]) -> BatchContext:
        ctx = BatchContext(client=self.reads, latest=None, previous=previous, outbox=Outbox(offline=True),  # type: ignore[arg-type]
                           held_ts=held_ts)
        ctx.__dict__["bars_service"] = self.bars  # the run's bars, never the live bars service
        return ctx

    def _keep(self, records: list[Any], ctx: BatchContext) -> None:
        self.state.write_cached(ctx.outbox)
        for record, _, _ in records:
            self.outcome.records.append(record)
            for item in record["computations"]:
                if not item["success"]:
                    name = record["config_name"]
                    self.outcome.errors[name] = self.outcome.errors.get(name, 0) + 1

    # -- time-driven frequencies ---------------------------------------------------------------------------------
    def _due(self, ts: float) -> bool:
        """Whether a time-driven schedule fires before tick time ``ts``."""
        if self._next_due is None:
            start = self.state.fired_until
            self._next_due = min((next_fire(freq, start) for freq, _ in self.timed.values()),
                                 default=float("inf")) if start is not None else float("inf")
        return self._next_due < ts

    def fire_until(self, until: float, inclusive: bool) -> None:
        """Fire every time-driven schedule due after the last firing and before ``until`` (at it too with
        ``inclusive``), in time order."""
        if not self.timed:
            return
        start = self.state.fired_until
        if start is None:
            return
        while True:
            due = min(((next_fire(freq, start), key) for key, (freq, _) in self.timed.items()), default=None)
            if due is None or due[0] > until or (due[0] == until and not inclusive):
                break
            at = due[0]
            for frequency, configs in self.timed.values():
                if next_fire(frequency, start) == at:
                    self.fire(frequency, configs, at)
            start = at
            self.state.fired_until = at
            self._next_due = None

    def fire(self, frequency: Frequency, configs: list[ActiveConfig], at: float) -> None:
        self.state.now = max(self.state.now, at)
        today = datetime.fromtimestamp(at, UTC).astimezone(exchange_tz()).date()
        ticks = [tick for key, tick in sorted(self.state.latest.items())
                 if key.startswith(self.underlying + "@") and _listed(key, today)]
        by_config: Matched = {}
        previous: dict[str, dict[str, Any] | None] = {}
        for config in configs:
            matched = sorted((t for t in ticks if key_matches(config.pattern, t["instrument_key"])),
                             key=lambda t: t["ts"])
            if matched:
                by_config[config.id] = (config, matched)
        if not by_config:
            return
        for tick in ticks:
            previous[tick["source_id"]] = self._history_before(tick)
        ctx = self._context(previous, {})
        period = schedule_period(frequency, datetime.fromtimestamp(at, UTC))
        self._keep(run_grouped(by_config, ctx, period), ctx)

    def _history_before(self, tick: dict[str, Any]) -> dict[str, Any] | None:
        """As `signals.schedule.timed.latest_ticks`: the history entry strictly before the tick (none for options,
        which keep no history)."""
        pipe = self.reads.pipeline()
        pipe.zrevrangebyscore(keys.price_history(tick["instrument_key"]), f"({tick['ts']!r}", "-inf", start=0, num=1)
        found = pipe.execute()[0]
        if not found:
            return None
        before = orjson.loads(found[0])
        return {"ltp": before["ltp"], "ts": before["ts"],
                "timestamp": datetime.fromtimestamp(before["ts"], UTC).isoformat()}


def _order(item: tuple[float, str, dict[str, Any]]) -> tuple[float, str]:
    return item[0], item[1]


def _listed(key: str, today: date) -> bool:
    """Derivatives past expiry are left out of time-driven runs, as the live registry lookup leaves them out."""
    try:
        expiry = parse_instrument_key(key).expiry
    except ValueError:
        return False
    return expiry is None or expiry >= today
