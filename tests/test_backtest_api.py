"""Backtests through the REST API, the command and the admin: a run's life (202, status, records in the live record
shape, list, delete), bad input answered 400 naming the field, a range without ticks completing with zero."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from signals.models import BacktestRecord, BacktestRun
from tests.backtest_helpers import SESSION_START, run_inline, session_ticks, store_session
from tests.factories import create_config, price_config

API = "/api/v2/signals/backtests/"
START, END = SESSION_START.isoformat(), (SESSION_START + timedelta(minutes=5)).isoformat()


def body(**overrides: Any) -> dict[str, Any]:
    return {"name": "api", "start_time": START, "end_time": END, "instruments": ["NSE@NIFTY@index"], **overrides}


@pytest.mark.django_db(transaction=True)
def test_a_run_through_the_api(auth_client: Any, make_token: Any) -> None:
    config = create_config(price_config())
    stored = store_session(session_ticks(rounds=4))
    answer = auth_client.post(API, body(configs=["nifty-price"]), format="json")
    assert answer.status_code == 202, answer.content
    run_id = answer.json()["id"]
    assert answer.json()["status"] == "running" and answer.json()["progress"]["ticks_total"] == 4

    run_inline(BacktestRun.objects.get(id=run_id))
    status = auth_client.get(f"{API}{run_id}/").json()
    assert status["status"] == "completed" and status["counts"] == {"ticks": 4, "records": 4, "errors": 0}
    assert status["progress"]["fraction"] == 1.0 and status["configs"] == [{"id": config.id, "name": "nifty-price"}]

    records = auth_client.get(f"{API}{run_id}/records/NSE@NIFTY@index").json()
    assert records["count"] == 4
    spot = [t for t in stored if t["instrument_key"] == "NSE@NIFTY@index"]
    first = records["results"][0]
    assert set(first) == {"record_id", "instrument_key", "timestamp", "config_id", "config_name", "tick_data",
                          "computations"}
    assert first["record_id"] == f"{config.id}:{spot[0]['source_id']}" and first["tick_data"]["ltp"] == spot[0]["ltp"]
    later = auth_client.get(f"{API}{run_id}/records/NSE@NIFTY@index",
                            {"start_time": spot[2]["timestamp"], "config_id": config.id}).json()
    assert [r["tick_data"]["ts"] for r in later["results"]] == [spot[2]["ts"], spot[3]["ts"]]
    assert auth_client.get(f"{API}{run_id}/records/NSE@NIFTY@index", {"config_id": "x"}).status_code == 400

    listed = auth_client.get(API).json()
    assert [r["id"] for r in listed["results"]] == [run_id]

    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scope='signals:read')}")
    assert reader.get(f"{API}{run_id}/").status_code == 200
    assert reader.post(API, body(), format="json").status_code == 403
    assert reader.delete(f"{API}{run_id}/").status_code == 403
    assert APIClient().get(API).status_code == 401

    assert auth_client.delete(f"{API}{run_id}/").status_code == 204
    assert auth_client.get(f"{API}{run_id}/").status_code == 404
    assert not BacktestRecord.objects.exists()


@pytest.mark.django_db
def test_bad_input_is_a_400_naming_the_field(auth_client: Any) -> None:
    store_session(session_ticks(rounds=1))

    def refused(**overrides: Any) -> dict[str, Any]:
        answer = auth_client.post(API, body(**overrides), format="json")
        assert answer.status_code == 400, answer.content
        return answer.json()["error"]

    assert refused(instruments=["NSE@NOSUCH@index"])["field"] == "instruments[0]"
    assert "unknown instrument" in refused(instruments=["NSE@NIFTY@index", "NSE@NOSUCH@*"])["message"]
    assert refused(instruments=["not a key"])["field"] == "instruments[0]"
    assert refused(end_time=START)["field"] == "end_time"
    assert "empty" in refused(end_time=START)["message"]
    assert refused(start_time="yesterday")["field"] == "start_time"
    assert refused(instruments=[])["field"] == "instruments"
    assert refused(batch_ticks=0)["field"] == "batch_ticks"
    assert refused(configs=["no-such-config"])["field"] == "configs[0]"
    bad = {"name": "inline", "instrument_key": "NSE@NIFTY@index",
           "technical_indicators": [{"name": "sma", "parameters": {"lenght": 3}}]}
    error = refused(config_documents=[bad])
    assert error["field"].startswith("config_documents[0].technical_indicators[0]"), error
    assert refused(config_documents=[{"name": "x", "instrument_key": "NSE@NIFTY@index", "frequency": "often"}])[
        "field"] == "config_documents[0].frequency"
    assert auth_client.post(API, [1, 2], format="json").status_code == 400
    assert not BacktestRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_range_without_stored_ticks_completes_with_zero_and_says_so(auth_client: Any) -> None:
    create_config(price_config())
    store_session(session_ticks(rounds=1))
    later = {"start_time": (SESSION_START + timedelta(days=3)).isoformat(),
             "end_time": (SESSION_START + timedelta(days=4)).isoformat()}
    answer = auth_client.post(API, body(**later), format="json")
    assert answer.status_code == 202
    run = run_inline(BacktestRun.objects.get(id=answer.json()["id"]))
    status = auth_client.get(f"{API}{run.id}/").json()
    assert status["status"] == "completed" and status["counts"]["ticks"] == 0
    assert "no stored ticks" in status["message"]


@pytest.mark.django_db
def test_the_command_prints_progress_and_a_summary_and_fails_loudly(capsys: Any) -> None:
    create_config(price_config())
    store_session(session_ticks(rounds=3))
    out = StringIO()
    call_command("backtest", "--start", START, "--end", END, "--instruments", "NSE@NIFTY@*", "--config",
                 "nifty-price", "--name", "cmd", "--inline", stdout=out)
    text = out.getvalue()
    assert "completed:" in text and "record(s)" in text and "wall" in text, text
    assert "ticks/s" in capsys.readouterr().err
    run = BacktestRun.objects.get(name="cmd")
    assert run.status == "completed" and BacktestRecord.objects.filter(run=run).count() > 3
    with pytest.raises(CommandError, match="unknown instrument"):
        call_command("backtest", "--start", START, "--end", END, "--instruments", "NSE@NOSUCH@index", "--inline",
                     stdout=StringIO())


@pytest.mark.django_db
def test_the_admin_lists_runs_with_their_status_and_results(client: Any) -> None:
    from django.contrib.auth.models import User

    create_config(price_config())
    store_session(session_ticks(rounds=2))
    call_command("backtest", "--start", START, "--end", END, "--instruments", "NSE@NIFTY@index", "--name", "adm",
                 "--inline", stdout=StringIO())
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    page = client.get("/admin/signals/backtestrun/").content.decode()
    run = BacktestRun.objects.get(name="adm")
    assert "completed" in page and f"run__id__exact={run.id}" in page
    results = client.get(f"/admin/signals/backtestrecord/?run__id__exact={run.id}")
    assert results.status_code == 200 and "NSE@NIFTY@index" in results.content.decode()
    assert client.get(f"/admin/signals/backtestrun/{run.id}/change/").status_code == 200
