"""The dashboard's pages and reads without a browser: who gets in, nothing loaded from elsewhere, and the health
figures read from what /metrics answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from dashboard.health import figures

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "dashboard" / "static" / "dashboard" / "vendor"


def logged_in(staff: bool = False, group: bool = False) -> Client:
    user = User.objects.create_user("u", password="pw-123456", is_staff=staff)
    if group:
        user.groups.add(Group.objects.get_or_create(name="dashboard")[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_logged_out_visitor_is_sent_to_the_login_page() -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/dashboard/login/?next=/"
    page = Client().get("/dashboard/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    assert Client().get("/dashboard/api/health").status_code == 403


@pytest.mark.django_db
def test_only_staff_or_the_dashboard_group_get_in() -> None:
    outsider = logged_in()
    assert outsider.get("/").status_code == 403
    assert outsider.get("/dashboard/api/chains").status_code == 403
    member = Client()
    member.force_login(User.objects.create_user("m", password="pw-123456"))
    User.objects.get(username="m").groups.add(Group.objects.get_or_create(name="dashboard")[0])
    assert member.get("/").status_code == 200
    assert member.get("/dashboard/api/chains").json()["chains"] == []  # no options registered yet


@pytest.mark.django_db
def test_the_page_loads_nothing_from_elsewhere_and_vendored_files_carry_version_and_licence() -> None:
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    page = logged_in(staff=True).get("/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith(("/", "data:", "#")) for s in sources), sources
    assert "/static/dashboard/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js" in page
    assert 'value="ema_20"' in page and 'value="rsi_14"' in page  # the demo config's indicators are offered
    script = VENDOR / "lightweight-charts-5.2.1" / "lightweight-charts.standalone.production.js"
    assert "Lightweight Charts™ v5.2.1" in script.read_text()[:300]
    assert "Apache License" in (VENDOR / "lightweight-charts-5.2.1" / "LICENSE").read_text()
    assert "5.2.1" in (VENDOR / "README.md").read_text()


def test_health_figures_are_read_from_the_metrics_exposition() -> None:
    text = "\n".join([
        "# TYPE signal_ticks_processed_total counter",
        "signal_ticks_processed_total 120.0",
        "# TYPE signal_computation_errors_total counter",
        'signal_computation_errors_total{computation_type="greeks"} 2.0',
        'signal_computation_errors_total{computation_type="moneyness"} 1.0',
        "# TYPE signal_stream_lag gauge",
        'signal_stream_lag{stream="tick_stream:NSE@NIFTY"} 7.0',
        "# TYPE signal_celery_queue_length gauge",
        'signal_celery_queue_length{queue="signals"} 3.0',
        "",
    ])
    body = figures(text)
    assert body["ticks_processed"] == 120 and body["ticks_received"] == 0
    assert body["computation_errors"] == {"greeks": 2, "moneyness": 1}
    assert body["stream_lag"] == {"tick_stream:NSE@NIFTY": 7} and body["queue_length"] == {"signals": 3}


@pytest.mark.django_db
def test_the_health_read_answers_the_live_figures_and_configs() -> None:
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    body = logged_in(staff=True).get("/dashboard/api/health").json()
    assert {"ticks_processed", "stream_pending", "dead_letters", "configs", "time"} <= set(body)
    assert {c["name"] for c in body["configs"]} >= {"nifty-price", "nifty-indicators", "nifty-chain-greeks"}
