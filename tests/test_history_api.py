"""History API (JWT): bars equal an independent pandas resample of imported ticks; indicators equal TA-Lib's own
functions on those bars, with warm-up; bad parameters answer 400 naming the field, unknown instruments 404."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
import talib
from django.core.management import call_command

from tests.bars_helpers import (
    FUTURE,
    SPECS,
    as_frame,
    assert_same_bars,
    make_ticks,
    reference_bars,
    session_days,
    talib_columns,
)

pytestmark = pytest.mark.django_db
API = "/api/v2/signals"


def import_ticks(ticks: list[dict[str, Any]], tmp_path: Path) -> str:
    path = tmp_path / "ticks.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["instrument_key", "time", "ltp", "volume", "oi"])
        for t in ticks:
            writer.writerow([t["instrument_key"], datetime.fromtimestamp(t["ts"], UTC).isoformat(), t["ltp"],
                             "" if t["volume"] is None else t["volume"], "" if t["oi"] is None else t["oi"]])
    out = StringIO()
    call_command("import_history", str(path), "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def url(kind: str, key: str = FUTURE, **params: Any) -> str:
    return f"{API}/{kind}/{key}" + (f"?{urlencode(params)}" if params else "")


@pytest.fixture
def twelve_days(tmp_path: Path) -> list[dict[str, Any]]:
    ticks = make_ticks(session_days(date(2025, 6, 2), 12), seed=31, mean_gap_s=25)
    report = import_ticks(ticks, tmp_path)
    assert f"{len(ticks)} ticks stored" in report
    return ticks


def test_historical_bars_equal_a_pandas_resample(auth_client: Any, twelve_days: list[dict[str, Any]]) -> None:
    start, end = "2025-06-12T09:15:00+05:30", "2025-06-17T11:00:00+05:30"
    for timeframe, canonical in (("1m", "1m"), ("5m", "5m"), ("7m", "7m"), ("custom_13", "13m"), ("1h", "1h"),
                                 ("1d", "1d"), ("5minute", "5m")):
        response = auth_client.get(url("historical/bars", timeframe=timeframe, start_time=start, end_time=end))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["timeframe"] == canonical and body["instrument_key"] == FUTURE
        expected = reference_bars(twelve_days, canonical)
        lo, hi = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
        expected = expected[(expected["time"] >= lo) & (expected["time"] < hi)].reset_index(drop=True)
        assert body["count"] == len(expected) > 0
        assert_same_bars(as_frame(body["bars"]), expected)


def test_historical_indicators_equal_talib_with_warm_up(auth_client: Any, twelve_days: list[dict[str, Any]]) -> None:
    start, end = "2025-06-16T09:15:00+05:30", "2025-06-17T15:30:00+05:30"
    response = auth_client.get(url("historical/indicators", timeframe="5m", start_time=start, end_time=end,
                                   indicators=json.dumps(SPECS)))
    assert response.status_code == 200, response.content
    body = response.json()
    bars = reference_bars(twelve_days, "5m")
    first = int((bars["time"] < pd.Timestamp(start)).sum())
    count = body["count"]
    warmup = body["warmup_bars"]
    assert warmup == 20 * 34  # 20 x the bars TA-Lib's MACD(12, 26, 9) needs
    assert body["warmup_available"] == warmup < first  # history longer than the warm-up: it is truncated
    assert count == len(bars[(bars["time"] >= pd.Timestamp(start)) & (bars["time"] < pd.Timestamp(end))]) > 100
    assert [row["time"] for row in body["values"]] == [
        t.isoformat() for t in bars["time"].iloc[first:first + count]]
    assert set(body["output_keys"]) >= set(talib_columns(bars))

    same_bars = talib_columns(bars.iloc[first - warmup:first + count].reset_index(drop=True))
    full_history = talib_columns(bars)
    for key, expected in same_bars.items():
        got = np.array([np.nan if row[key] is None else row[key] for row in body["values"]], dtype="float64")
        # TA-Lib on exactly the bars the API used (warm-up included): identical
        np.testing.assert_allclose(got, expected[warmup:], rtol=1e-12, atol=1e-12, err_msg=key)
        # and the warm-up is long enough that the first values equal a computation over the whole history
        np.testing.assert_allclose(got, full_history[key][first:first + count], rtol=1e-7, atol=1e-7, err_msg=key)
        assert np.isfinite(got).all(), key


def test_indicators_without_enough_history_are_null_then_values(auth_client: Any, tmp_path: Path) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=3)
    import_ticks(ticks, tmp_path)
    response = auth_client.get(url("historical/indicators", timeframe="15m", start_time="2025-06-19T09:00:00+05:30",
                                   end_time="2025-06-19T15:30:00+05:30",
                                   indicators=json.dumps([{"name": "sma", "parameters": {"length": 5}}])))
    assert response.status_code == 200
    body = response.json()
    values = [row["SMA_5"] for row in body["values"]]
    assert body["warmup_available"] == 0 and values[:4] == [None] * 4 and all(v is not None for v in values[4:])
    closes = reference_bars(ticks, "15m")["close"].to_numpy()
    np.testing.assert_allclose(values[4:], talib.SMA(closes, 5)[4:], rtol=1e-12)


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"timeframe": "7x"}, "timeframe", "accepted"),
    ({}, "timeframe", "required"),
    ({"timeframe": "0m"}, "timeframe", "1-1440"),
    ({"timeframe": "5m", "start_time": "yesterday"}, "start_time", "ISO-8601"),
    ({"timeframe": "5m", "start_time": "2025-06-19T10:00:00"}, "start_time", "offset"),
    ({"timeframe": "5m", "start_time": "2025-06-20T10:00:00+05:30", "end_time": "2025-06-19T10:00:00+05:30"},
     "start_time", "before end_time"),
    ({"timeframe": "1m", "start_time": "2015-01-01T00:00:00+00:00", "end_time": "2025-01-01T00:00:00+00:00"},
     "end_time", "range too large"),
])
def test_bad_bars_parameters_answer_400_naming_the_field(auth_client: Any, tmp_path: Path, params: dict[str, str],
                                                         field: str, text: str) -> None:
    import_ticks(make_ticks([date(2025, 6, 19)], seed=1, mean_gap_s=300), tmp_path)
    response = auth_client.get(url("historical/bars", **params))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field and text in error["message"], error


@pytest.mark.parametrize(("indicators", "field", "text"), [
    ("not json", "indicators", "not valid JSON"),
    ("[]", "indicators", "non-empty"),
    (json.dumps([{"name": "rsii"}]), "indicators[0].name", "rsi"),
    (json.dumps([{"name": "rsi"}, {"name": "ema", "parameters": {"lenght": 5}}]), "indicators[1].parameters.lenght",
     "length"),
    (json.dumps([{"name": "rsi", "parameters": {"length": -3}}]), "indicators[0].parameters.length", "> 0"),
])
def test_bad_indicator_lists_answer_400_naming_the_field(auth_client: Any, tmp_path: Path, indicators: str,
                                                         field: str, text: str) -> None:
    import_ticks(make_ticks([date(2025, 6, 19)], seed=1, mean_gap_s=300), tmp_path)
    response = auth_client.get(url("historical/indicators", timeframe="5m", indicators=indicators))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field and text in error["message"], error


def test_instrument_errors_and_auth(auth_client: Any, client: Any) -> None:
    response = auth_client.get(url("historical/bars", key="NSE@NIFTY", timeframe="5m"))
    assert response.status_code == 400 and response.json()["error"]["field"] == "instrument_key"
    for kind, params in (("historical/bars", {"timeframe": "5m"}), ("historical/available-timeframes", {}),
                         ("historical/indicators", {"timeframe": "5m", "indicators": json.dumps(SPECS)}),
                         ("realtime/indicators", {"timeframe": "5m"})):
        response = auth_client.get(url(kind, key="NSE@UNKNOWN@index", **params))
        assert response.status_code == 404, kind
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(url("historical/bars", timeframe="5m")).status_code == 401


def test_available_timeframes_and_default_range(auth_client: Any, tmp_path: Path) -> None:
    ticks = make_ticks([date(2025, 6, 19), date(2025, 6, 20)], seed=6)
    import_ticks(ticks, tmp_path)
    body = auth_client.get(url("historical/available-timeframes")).json()
    assert body["first_time"] == datetime.fromtimestamp(ticks[0]["ts"], UTC).isoformat()
    assert body["last_time"] == datetime.fromtimestamp(ticks[-1]["ts"], UTC).isoformat()
    assert body["storage"] in ("postgresql", "timescaledb")
    names = [entry["timeframe"] for entry in body["timeframes"]]
    assert names[:3] == ["1m", "2m", "3m"] and "1M" in names
    if body["storage"] == "postgresql":  # every timeframe from the one-minute rollup (signals.bars.rollup)
        assert {entry["source"] for entry in body["timeframes"]} == {"rollup:signal_bars_1m_rollup"}
    # no range given: the last SIGNAL_HISTORY_DEFAULT_BARS bars up to the newest tick
    response = auth_client.get(url("historical/bars", timeframe="15m"))
    bars = response.json()["bars"]
    expected = reference_bars(ticks, "15m").tail(len(bars)).reset_index(drop=True)
    assert len(bars) == len(reference_bars(ticks, "15m"))  # fewer than 500 exist
    assert_same_bars(as_frame(bars), expected)


def test_history_routes_are_in_the_openapi_schema(auth_client: Any) -> None:
    response = auth_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for route in ("historical/bars/{instrument_key}", "historical/indicators/{instrument_key}",
                  "realtime/indicators/{instrument_key}", "historical/available-timeframes/{instrument_key}"):
        assert route in text
