"""Load historical ticks or 1-minute bars from a CSV file into ``signal_ticks`` (idempotently)."""

from __future__ import annotations

import csv
import hashlib
import time
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from feed.instruments import InstrumentKeyError, normalise_key, parse_instrument_key
from feed.ticks import TickError, parse_tick, parse_time
from feed.ticks import number as tick_number
from signals import storage
from signals.bars import cagg_refresh, retention, rollup
from signals.bars.store import get_service
from signals.instrument_registry import register_instruments

HELP = """Import historical market data from a CSV file (header row required, comma-separated, UTF-8).

--kind ticks (default): one tick per row, the columns of a feed message (docs/REFERENCE.md §3.2):
  instrument_key (or --instrument), time (or ltt / timestamp / ts_exch: ISO-8601 with offset, or epoch s/ms),
  ltp (or last); optional open, high, low, close, volume (or ttq: cumulative day volume), oi, bid, ask, ltq.
  Rows are checked exactly as live ticks are (feed.ticks.parse_tick).

--kind bars: one 1-minute bar per row:
  instrument_key (or --instrument), time (bar start, a whole minute), open, high, low, close; optional volume
  (traded quantity of that minute) and oi. Each bar is stored as four ticks inside its minute (open, low/high,
  high/low, close) carrying the day's cumulative volume through that bar, so every timeframe built from them has
  the same OHLC and volume. Import the parts of one exchange day in time order.

Rows older than the tick retention (SIGNAL_TICKS_RETENTION_DAYS, default 1826 days = 5 years) are rejected
(the retention would delete them): raise that setting to import older history.

Idempotent: each stored tick's source_id is a hash of its row's content, so importing a file again (or two
overlapping files) adds nothing. Rejected rows are reported with their line number and reason (--rejects writes
them all to a CSV); the other rows are loaded. Progress goes to stderr."""

TICK_TIME_ALIASES = ("time", "ltt", "timestamp", "ts_exch")


@dataclass
class Report:
    rows: int = 0
    inserted: int = 0
    candidates: int = 0
    rejected: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    keys: dict[str, tuple[float, float]] = field(default_factory=dict)  # instrument -> (min ts, max ts)

    def note(self, key: str, ts: float) -> None:
        lo, hi = self.keys.get(key, (ts, ts))
        self.keys[key] = (min(lo, ts), max(hi, ts))


class Progress:
    """A plain-text progress line on stderr, redrawn at most every 0.2 s."""

    def __init__(self, stream: Any, total: int, enabled: bool = True):
        self.stream, self.total, self.enabled = stream, max(total, 0), enabled
        self._last = 0.0

    def update(self, report: Report, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._last < 0.2):
            return
        self._last = now
        pct = f" ({100 * report.rows / self.total:5.1f}%)" if self.total else ""
        width = 30
        filled = int(width * report.rows / self.total) if self.total else 0
        bar = "#" * min(filled, width) + "-" * max(width - filled, 0)
        self.stream.write(f"\rimport_history [{bar}] {report.rows:,}/{self.total:,} rows{pct} "
                          f"{report.inserted:,} ticks stored, {len(report.rejected):,} rejected",
                          ending="\n" if final else "")
        self.stream.flush()


def count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return max(lines - 1, 0)


def content_id(prefix: str, values: tuple[Any, ...]) -> str:
    text = "|".join("" if v is None else repr(v) for v in values)
    return f"{prefix}:{hashlib.sha1(text.encode()).hexdigest()}"


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs["formatter_class"] = RawDescriptionHelpFormatter
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV file to import")
        parser.add_argument("--kind", choices=("ticks", "bars"), default="ticks",
                            help="ticks (default) or 1-minute bars")
        parser.add_argument("--instrument", help="instrument key for rows without an instrument_key column")
        parser.add_argument("--batch-size", type=int, default=5000, help="ticks per INSERT (default 5000)")
        parser.add_argument("--rejects", help="write every rejected row, with its line and reason, to this CSV")
        parser.add_argument("--show-rejects", type=int, default=20,
                            help="rejected rows listed in the report (default 20)")
        parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")

    def handle(self, *args: Any, **options: Any) -> None:
        days = int(settings.SIGNAL_TICKS_RETENTION_DAYS)
        oldest = retention.cutoff(days)
        self.retained_from = oldest.timestamp() if oldest else None
        self.too_old = (f"older than the tick retention: SIGNAL_TICKS_RETENTION_DAYS={days} deletes ticks before "
                        f"{oldest:%Y-%m-%d %H:%M} UTC; raise it to import this history" if oldest else "")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        default_key = None
        if options["instrument"]:
            try:
                default_key = normalise_key(options["instrument"])
            except InstrumentKeyError as exc:
                raise CommandError(f"--instrument: {exc}") from None
        report = Report()
        progress = Progress(self.stderr, count_rows(path), enabled=not options["no_progress"])
        batch_size = max(1, int(options["batch_size"]))
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise CommandError(f"{path} is empty or has no header row")
            if options["kind"] == "ticks":
                self._import_ticks(reader, default_key, report, progress, batch_size)
            else:
                self._import_bars(reader, default_key, report, progress, batch_size)
        progress.update(report, final=True)
        self._after(report)
        self._report(report, path, options)

    # --- ticks ------------------------------------------------------------------------------------------------
    def _import_ticks(self, reader: csv.DictReader, default_key: str | None, report: Report, progress: Progress,
                      batch_size: int) -> None:
        batch: list[dict[str, Any]] = []
        for row in reader:
            report.rows += 1
            line = reader.line_num
            fields = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            if None in row:
                report.rejected.append((line, "more values than header columns", row))
                continue
            if default_key and not fields.get("instrument_key"):
                fields["instrument_key"] = default_key
            if "time" in fields and not any(fields.get(a) for a in TICK_TIME_ALIASES[1:]):
                fields["timestamp"] = fields.pop("time")
            try:
                tick = parse_tick(fields)
            except TickError as exc:
                report.rejected.append((line, str(exc), row))
                continue
            if self.retained_from is not None and tick["ts"] < self.retained_from:
                report.rejected.append((line, self.too_old, row))
                continue
            tick["source_id"] = content_id("import", (
                tick["instrument_key"], tick["timestamp"], tick["ltp"], tick["open"], tick["high"], tick["low"],
                tick["close"], tick["volume"], tick["oi"], tick["bid"], tick["ask"], tick["ltq"]))
            report.note(tick["instrument_key"], tick["ts"])
            batch.append(tick)
            if len(batch) >= batch_size:
                self._store(batch, report)
                batch = []
            progress.update(report)
        self._store(batch, report)

    # --- bars -------------------------------------------------------------------------------------------------
    def _import_bars(self, reader: csv.DictReader, default_key: str | None, report: Report, progress: Progress,
                     batch_size: int) -> None:
        zone = ZoneInfo(settings.EXCHANGE_TIMEZONE)
        days: dict[tuple[str, date], list[tuple[float, tuple[Any, ...]]]] = {}
        seen: dict[tuple[str, float], int] = {}
        for row in reader:
            report.rows += 1
            line = reader.line_num
            if None in row:
                report.rejected.append((line, "more values than header columns", row))
                continue
            fields = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            try:
                key, ts, values = parse_bar(fields, default_key)
            except ValueError as exc:
                report.rejected.append((line, str(exc), row))
                continue
            if self.retained_from is not None and ts < self.retained_from:
                report.rejected.append((line, self.too_old, row))
                continue
            first = seen.get((key, ts))
            if first is not None:
                report.rejected.append((line, f"duplicate bar for {key} at {datetime.fromtimestamp(ts, UTC)} "
                                              f"(first on line {first})", row))
                continue
            seen[(key, ts)] = line
            days.setdefault((key, datetime.fromtimestamp(ts, zone).date()), []).append((ts, values))
            progress.update(report)
        batch: list[dict[str, Any]] = []
        for (key, day), bars in sorted(days.items()):
            bars.sort()
            cumulative = self._volume_before(key, day, bars[0][0], zone)
            for ts, (o, h, lo, c, v, oi) in bars:
                if v is not None:
                    cumulative = (cumulative or 0) + v
                report.note(key, ts)
                batch.extend(bar_ticks(key, ts, o, h, lo, c, v, oi, cumulative))
                if len(batch) >= batch_size:
                    self._store(batch, report)
                    batch = []
                    progress.update(report)
        self._store(batch, report)

    @staticmethod
    def _volume_before(key: str, day: date, first_ts: float, zone: ZoneInfo) -> int | None:
        """The day's cumulative volume already stored before the file's first bar of that day."""
        midnight = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(volume) FROM signal_ticks WHERE instrument_key = %s AND time >= %s "
                           "AND time < %s", [key, midnight, datetime.fromtimestamp(first_ts, UTC)])
            row = cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- shared -----------------------------------------------------------------------------------------------
    @staticmethod
    def _store(batch: list[dict[str, Any]], report: Report) -> None:
        if batch:
            report.candidates += len(batch)
            report.inserted += storage.store_ticks(batch)

    @staticmethod
    def _after(report: Report) -> None:
        """Registry, bar caches and the continuous aggregates (TimescaleDB) or the one-minute rollup (plain
        PostgreSQL) catch up with the imported ticks. The rollup's triggers recorded the imported ranges already;
        folding them in here makes the import, not the first reader, pay for aggregating them."""
        if not report.keys:
            return
        register_instruments(sorted(report.keys))
        get_service().invalidate(report.keys)
        if report.inserted:
            # TimescaleDB: the imported ranges are refreshed now, or after the caller's transaction commits
            # (until then readers aggregate those ranges from raw ticks)
            if not cagg_refresh.note(report.keys) and rollup.enabled():
                rollup.refresh_pending(budget_s=3600.0)

    def _report(self, report: Report, path: Path, options: dict[str, Any]) -> None:
        out = self.stdout
        skipped = report.candidates - report.inserted
        out.write(f"{path}: {report.rows} rows read, {len(report.rejected)} rejected; "
                  f"{report.inserted} ticks stored, {skipped} already present "
                  f"({len(report.keys)} instrument{'s' if len(report.keys) != 1 else ''})")
        shown = report.rejected[: max(0, options["show_rejects"])]
        for line, reason, _ in shown:
            out.write(f"  line {line}: {reason}")
        if len(report.rejected) > len(shown):
            out.write(f"  ... and {len(report.rejected) - len(shown)} more rejected rows"
                      + ("" if options["rejects"] else " (--rejects FILE lists them all)"))
        if options["rejects"]:
            write_rejects(Path(options["rejects"]), report.rejected)
            out.write(f"rejected rows written to {options['rejects']}")


def _number(fields: dict[str, Any], name: str, required: bool = True) -> float | None:
    """A non-negative finite number, checked as live ticks' numbers are (`feed.ticks`); None when empty."""
    text = fields.get(name)
    if text is None or text == "":
        if required:
            raise ValueError(f"{name} is missing")
        return None
    return tick_number(text, name)  # TickError is a ValueError


def parse_bar(fields: dict[str, Any], default_key: str | None) -> tuple[str, float, tuple[Any, ...]]:
    """Validate one bar row: (instrument key, start epoch seconds, (open, high, low, close, volume, oi))."""
    raw_key = fields.get("instrument_key") or default_key
    if not raw_key:
        raise ValueError("instrument_key is missing (add the column or pass --instrument)")
    try:
        key = normalise_key(raw_key)
    except InstrumentKeyError as exc:
        raise ValueError(f"instrument_key: {exc}") from None
    raw_time = next((fields[a] for a in TICK_TIME_ALIASES if fields.get(a)), None)
    if raw_time is None:
        raise ValueError("time (bar start) is missing")
    try:
        when = parse_time(raw_time)
    except TickError as exc:
        raise ValueError(str(exc)) from None
    if when.second or when.microsecond:
        raise ValueError(f"time {raw_time!r} is not the start of a minute (1-minute bars)")
    o, h, lo, c = (_number(fields, n) for n in ("open", "high", "low", "close"))
    assert o is not None and h is not None and lo is not None and c is not None
    if lo > min(o, c) or h < max(o, c) or lo > h:
        raise ValueError(f"inconsistent bar: low {lo:g} / high {h:g} do not bracket open {o:g} and close {c:g}")
    volume = _number(fields, "volume", required=False)
    if volume is not None and not volume.is_integer():
        raise ValueError(f"volume must be a whole number, got {fields.get('volume')!r}")
    oi = _number(fields, "oi", required=False)
    return key, when.timestamp(), (o, h, lo, c, None if volume is None else int(volume),
                                   None if oi is None else int(oi))


def bar_ticks(key: str, ts: float, o: float, h: float, lo: float, c: float, volume: int | None, oi: int | None,
              cumulative: int | None) -> list[dict[str, Any]]:
    """Four ticks inside the bar's minute whose 1-minute bar is exactly (o, h, lo, c, volume, oi)."""
    digest = content_id("bar", (key, ts, o, h, lo, c, volume, oi))
    middle = (lo, h) if c >= o else (h, lo)
    symbol_key = parse_instrument_key(key).symbol_key
    out = []
    for n, (offset, price) in enumerate(((0, o), (15, middle[0]), (30, middle[1]), (45, c))):
        when = datetime.fromtimestamp(ts, UTC) + timedelta(seconds=offset)
        out.append({"instrument_key": key, "symbol_key": symbol_key, "ts": when.timestamp(),
                    "timestamp": when.isoformat(), "ltp": price, "open": None, "high": None, "low": None,
                    "close": None, "volume": cumulative, "oi": oi, "bid": None, "ask": None, "ltq": None,
                    "source_id": f"{digest}:{n}"})
    return out


def write_rejects(path: Path, rejected: list[tuple[int, str, dict[str, Any]]]) -> None:
    columns: list[str] = []
    for _, _, row in rejected:
        for name in row:
            if name is not None and name not in columns:
                columns.append(name)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "reason", *columns])
        for line, reason, row in rejected:
            writer.writerow([line, reason, *(row.get(c, "") for c in columns)])
