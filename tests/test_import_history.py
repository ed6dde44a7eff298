"""``manage.py import_history``: bad rows are reported with line and reason and the rest is loaded; importing again
adds nothing; imported 1-minute bars come back as the same bars (and aggregate to larger ones)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from signals.bars.rows import bars_frame
from signals.bars.store import BarsService
from tests.bars_helpers import FUTURE, assert_same_bars, make_ticks, reference_bars

pytestmark = pytest.mark.django_db
SPOT = "NSE@NIFTY@index"


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_history", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tick_count(key: str | None = None) -> int:
    from signals.models import Tick

    return Tick.objects.filter(instrument_key=key).count() if key else Tick.objects.count()


def test_ticks_with_bad_rows_are_reported_and_the_rest_loaded(tmp_path: Path, r: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=2, mean_gap_s=60)
    rows = [[t["instrument_key"], datetime.fromtimestamp(t["ts"], UTC).isoformat(), t["ltp"],
             t["volume"] or "", t["oi"] or ""] for t in ticks]
    bad = {
        3: ([FUTURE, "2025-06-19T10:00:00+05:30", "", 10, 1], "price (ltp or last) is missing"),
        7: ([FUTURE, "2025-06-19T10:00:01+05:30", -5, 10, 1], "ltp must not be negative"),
        11: ([FUTURE, "not a time", 100, 10, 1], "is not ISO-8601"),
        12: ([FUTURE, "2025-06-19T10:00:02", 100, 10, 1], "no UTC offset"),
        15: (["NSE@NIFTY", "2025-06-19T10:00:03+05:30", 100, 10, 1], "instrument_key"),
        20: ([FUTURE, "2025-06-19T10:00:04+05:30", "abc", 10, 1], "ltp must be a number"),
        21: ([FUTURE, "2025-06-19T10:00:05+05:30", 100, 10, 1, "extra"], "more values than header columns"),
    }
    for index in sorted(bad):  # final positions
        rows.insert(index, bad[index][0])
    path = write(tmp_path / "ticks.csv", ["instrument_key", "time", "ltp", "volume", "oi"], rows)
    out, err = run(path, "--rejects", str(tmp_path / "rejects.csv"))
    assert f"{len(rows)} rows read, {len(bad)} rejected; {len(ticks)} ticks stored, 0 already present" in out
    for index, (_, reason) in bad.items():
        line = index + 2  # header is line 1, rows start at line 2
        assert any(f"line {line}: " in s and reason in s for s in out.splitlines()), (line, reason, out)
    assert tick_count(FUTURE) == len(ticks)
    assert "import_history [" in err and f"{len(rows):,}/{len(rows):,} rows (100.0%)" in err
    with (tmp_path / "rejects.csv").open() as fh:
        rejected = list(csv.DictReader(fh))
    assert [int(row["line"]) for row in rejected] == sorted(i + 2 for i in bad)
    assert_same_bars(bars_frame(BarsService(r).bars(FUTURE, "5m", 0, 2e9)), reference_bars(ticks, "5m"))

    from signals.models import InstrumentRecord

    assert InstrumentRecord.objects.filter(key=FUTURE).exists()

    again, _ = run(path, "--no-progress")  # idempotent: the same rows hash to the same source ids
    assert f"0 ticks stored, {len(ticks)} already present" in again
    assert tick_count(FUTURE) == len(ticks)


def test_aliases_instrument_option_and_cache_invalidation(tmp_path: Path, r: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], key=SPOT, seed=4, mean_gap_s=90)
    early, late = ticks[: len(ticks) // 2], ticks[len(ticks) // 2:]
    to_rows = [[int(t["ts"] * 1000), t["ltp"], t["volume"] or ""] for t in late]
    path = write(tmp_path / "late.csv", ["ltt", "last", "ttq"], to_rows)  # epoch ms, feed aliases
    out, _ = run(path, "--instrument", "nse@nifty@INDEX", "--no-progress")
    assert f"{len(late)} ticks stored" in out
    service = BarsService(r)
    rounded = [{**t, "ts": int(t["ts"] * 1000) / 1000, "oi": None} for t in ticks]
    assert_same_bars(bars_frame(service.bars(SPOT, "15m", 0, 2e9)), reference_bars(rounded[len(early):], "15m"))
    # older ticks imported afterwards: the cached bars are dropped and rebuilt with them
    path = write(tmp_path / "early.csv", ["instrument_key", "timestamp", "ltp", "volume"],
                 [[SPOT, t["ts"], t["ltp"], t["volume"] or ""] for t in early])
    run(path, "--no-progress")
    assert_same_bars(bars_frame(service.bars(SPOT, "15m", 0, 2e9)),
                     reference_bars([*[{**t, "oi": None} for t in early], *rounded[len(early):]], "15m"))
    with pytest.raises(CommandError, match="--instrument"):
        run(path, "--instrument", "NSE@NIFTY")


def one_minute_bars(seed: int = 5) -> pd.DataFrame:
    ticks = make_ticks([date(2025, 6, 19), date(2025, 6, 20)], seed=seed, mean_gap_s=10, pre_open=False)
    return reference_bars(ticks, "1m")


def test_one_minute_bars_import_as_the_same_bars(tmp_path: Path, r: Any) -> None:
    bars = one_minute_bars()
    rows = [[FUTURE, t.isoformat(), o, h, lo, c, "" if np.isnan(v) else int(v), "" if np.isnan(oi) else int(oi)]
            for t, o, h, lo, c, v, oi in bars.itertuples(index=False)]
    bad = {
        2: ([FUTURE, "2025-06-19T10:00:30+05:30", 1, 1, 1, 1, 1, 1], "not the start of a minute"),
        5: ([FUTURE, "2025-06-19T10:01:00+05:30", 10, 9, 8, 10, 1, 1], "inconsistent bar"),
        9: ([FUTURE, "2025-06-19T10:02:00+05:30", 10, 11, 8, "", 1, 1], "close is missing"),
        14: ([FUTURE, "2025-06-19T10:03:00+05:30", 10, 11, 8, 9, -4, 1], "volume must not be negative"),
        16: ([FUTURE, rows[0][1], 10, 11, 8, 9, 4, 1], "duplicate bar"),
    }
    for index in sorted(bad):  # final positions
        rows.insert(index, bad[index][0])
    path = write(tmp_path / "bars.csv", ["instrument_key", "time", "open", "high", "low", "close", "volume", "oi"],
                 rows)
    out, _ = run(path, "--kind", "bars", "--no-progress")
    assert f"{len(rows)} rows read, {len(bad)} rejected; {4 * len(bars)} ticks stored" in out
    for index, (_, reason) in bad.items():
        assert any(f"line {index + 2}: " in s and reason in s for s in out.splitlines()), (reason, out)
    service = BarsService(r)
    assert_same_bars(bars_frame(service.bars(FUTURE, "1m", 0, 2e9)), bars)
    # larger bars from the imported minutes: first/max/min/last, volumes added, last open interest
    five = bars.groupby(bars["time"].dt.floor("5min")).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", lambda s: s.sum(min_count=1)), oi=("oi", "last")).reset_index()
    assert_same_bars(bars_frame(service.bars(FUTURE, "5m", 0, 2e9)), five)

    again, _ = run(path, "--kind", "bars", "--no-progress")
    assert f"0 ticks stored, {4 * len(bars)} already present" in again
    assert tick_count(FUTURE) == 4 * len(bars)


def test_bars_of_one_day_in_two_files_keep_volumes(tmp_path: Path, r: Any) -> None:
    bars = one_minute_bars(seed=8)
    rows = [[FUTURE, t.isoformat(), o, h, lo, c, "" if np.isnan(v) else int(v), ""]
            for t, o, h, lo, c, v, _ in bars.itertuples(index=False)]
    header = ["instrument_key", "time", "open", "high", "low", "close", "volume", "oi"]
    half = len(rows) // 3
    run(write(tmp_path / "a.csv", header, rows[:half]), "--kind", "bars", "--no-progress")
    run(write(tmp_path / "b.csv", header, rows[half:]), "--kind", "bars", "--no-progress")
    got = bars_frame(BarsService(r).bars(FUTURE, "1m", 0, 2e9))
    np.testing.assert_allclose(got["volume"].to_numpy(), bars["volume"].to_numpy(), equal_nan=True)


def test_empty_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CommandError, match="no header"):
        run(tmp_path / "empty.csv")


# --- the continuous aggregates after an import (TimescaleDB; plain PostgreSQL checks the same bars) ------------
def tick_file(tmp_path: Path, ticks: list[dict[str, Any]]) -> Path:
    rows = [[t["instrument_key"], datetime.fromtimestamp(t["ts"], UTC).isoformat(), t["ltp"], t["volume"] or "",
             t["oi"] or ""] for t in ticks]
    return write(tmp_path / "ticks.csv", ["instrument_key", "time", "ltp", "volume", "oi"], rows)


def pending_ranges(key: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM signal_bars_rollup_pending WHERE instrument_key = %s", [key])
        return cursor.fetchone()[0]


def test_an_import_inside_a_transaction_reads_raw_ticks_until_refreshed(tmp_path: Path, r: Any) -> None:
    """Inside a transaction (this test's) the aggregates cannot be refreshed: the range stays pending and the bars
    service aggregates it from raw ticks, with the same bars."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from signals.bars import cagg_refresh, timescale

    ticks = make_ticks([date(2025, 6, 19)], seed=12, mean_gap_s=30)
    run(tick_file(tmp_path, ticks), "--no-progress")
    with CaptureQueriesContext(connection) as queries:
        got = bars_frame(BarsService(r).bars(FUTURE, "5m", 0, 2e9))
    assert_same_bars(got, reference_bars(ticks, "5m"))
    if cagg_refresh.in_use():
        assert pending_ranges(FUTURE) == 1
        assert not cagg_refresh.is_current(FUTURE, ticks[0]["ts"], ticks[-1]["ts"])
        assert cagg_refresh.is_current(FUTURE, ticks[-1]["ts"] + 1, ticks[-1]["ts"] + 86_400)
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        assert "FROM signal_ticks" in sql and not any(name in sql for name in timescale.CAGGS)
        with pytest.raises(RuntimeError, match="transaction block"):
            cagg_refresh.refresh_pending()


@pytest.mark.django_db(transaction=True)
def test_an_import_outside_a_transaction_refreshes_the_aggregates(tmp_path: Path, r: Any) -> None:
    """Outside a transaction the import refreshes the aggregates itself: nothing stays pending, the one-minute
    aggregate's materialisation holds every imported minute, and bars are read from the aggregates."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from signals.bars import cagg_refresh, timescale
    from signals.models import Tick

    key = "NSE@NIFTY@futures@2025-08-28"
    # a day before every other test's ticks: a refresh leaves the aggregates' watermark after what it materialised,
    # and ticks stored below a watermark stay out of an aggregate until it is refreshed over them
    ticks = make_ticks([date(2024, 1, 10)], key=key, seed=13, mean_gap_s=30)
    try:
        run(tick_file(tmp_path, ticks), "--no-progress")
        assert pending_ranges(key) == 0
        with CaptureQueriesContext(connection) as queries:
            got = bars_frame(BarsService(r).bars(key, "1m", 0, 2e9))
        expected = reference_bars(ticks, "1m")
        assert_same_bars(got, expected)
        if cagg_refresh.in_use():
            sql = " ".join(q["sql"] for q in queries.captured_queries)
            assert "FROM signal_bars_1m" in sql and "FROM signal_ticks" not in sql
            with connection.cursor() as cursor:
                cursor.execute("SELECT materialization_hypertable_schema, materialization_hypertable_name "
                               "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'signal_bars_1m'")
                table = '"{}"."{}"'.format(*cursor.fetchone())
                cursor.execute(f"SELECT count(*) FROM {table} WHERE instrument_key = %s", [key])
                assert cursor.fetchone()[0] == len(expected)
    finally:  # the flush at the end of the test empties the tables, not the aggregates' materialisation
        Tick.objects.filter(instrument_key=key).delete()
        if cagg_refresh.in_use():
            timescale.refresh_range(datetime.fromtimestamp(ticks[0]["ts"], UTC),
                                    datetime.fromtimestamp(ticks[-1]["ts"], UTC))
