"""What a new user meets first (issue 13): demo data for every output, honest tick times, JSON errors under /api/,
and worker logs that do not grow by two lines per task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from feed.ticks import decode_fields, parse_tick


@pytest.mark.django_db
def test_the_demo_seeds_an_indicators_config_on_the_spot() -> None:
    from configs.models import SignalConfig

    call_command("seed_demo")
    config = SignalConfig.objects.get(name="nifty-indicators")
    assert config.enabled and config.instrument_key == "NSE@NIFTY@index"
    assert {spec["output_key"] for spec in config.config["technical_indicators"]} == {"ema_20", "sma_50", "rsi_14"}


def test_live_demo_ticks_are_never_stamped_ahead_of_the_wall_clock(r: Any) -> None:
    call_command("simulate_ticks", "--max-ticks", "600", "--rate", "600")
    entries = r.xrange("tick_stream:NSE@NIFTY") + r.xrange("tick_stream:NSE@INDVIX")
    assert len(entries) == 600
    ahead = []
    for entry_id, fields in entries:
        added_ms = int(entry_id.decode().split("-")[0])  # Redis' clock when the entry was added
        tick_ms = parse_tick(decode_fields(fields))["ts"] * 1000
        ahead.append(tick_ms - added_ms)
    # the tick's time has millisecond resolution: it may round up by at most 1 ms
    assert max(ahead) <= 1, f"a tick was stamped {max(ahead)} ms ahead of its arrival"
    assert min(ahead) > -1000  # and not stale either: stamped when it was sent
    first = min(parse_tick(decode_fields(f))["ts"] for _, f in entries)
    assert abs(first - datetime.now(UTC).timestamp()) < 30


@override_settings(DEBUG=True)
def test_unknown_api_routes_are_json_even_with_debug_on() -> None:
    client = Client()
    for path in ("/api/nothing", "/api/v2/signals/no/such/route/", "/api/v3/"):
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json()["error"]["code"] == "not_found"
    response = client.post("/api/v2/nothing", data="{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_unknown_api_routes_answer_writes_with_json_not_a_csrf_page() -> None:
    client = Client(enforce_csrf_checks=True)  # as a browser or API client meets it (the test client skips CSRF)
    for method, path in (("delete", "/api/v2/signals/backtests/null,null/"), ("post", "/api/v2/nothing"),
                         ("put", "/api/v2/signals/configs/not-a-number/")):
        response = getattr(client, method)(path, data="{}", content_type="application/json",
                                           HTTP_AUTHORIZATION="Bearer x")
        assert response.status_code == 404 and response["Content-Type"] == "application/json", (method, path)


@override_settings(DEBUG=True)
def test_a_known_api_route_without_its_slash_still_redirects() -> None:
    response = Client().get("/api/docs?x=1")
    assert response.status_code == 301 and response["Location"] == "/api/docs/?x=1"


@pytest.mark.django_db(transaction=True)
def test_a_worker_at_info_logs_one_line_per_task(start_worker: Any, r: Any) -> None:
    from signal_project.celery import app
    from signals.monitoring.streams import METRICS_KEY
    from tests.support import wait_for

    worker = start_worker("signals")
    ids = [app.send_task("signals.tasks.publish_stream_metrics", queue="signals").id for _ in range(3)]
    wait_for(lambda: r.hget(METRICS_KEY, "updated|"), timeout=30)
    wait_for(lambda: all(any(i in line and "succeeded" in line for line in worker.lines) for i in ids), timeout=30)
    for task_id in ids:
        assert len([line for line in worker.lines if task_id in line]) == 1, "".join(worker.lines[-20:])
