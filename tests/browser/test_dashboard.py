"""The dashboard in a real browser against the real pipeline (issue 13): the web process (uvicorn), the stream
bridge, a Celery worker and the demo feed, on the test database and Redis, sharing one metrics directory as the
demo does. One scenario, so the stack starts once."""

from __future__ import annotations

import io
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from tests.live import LiveProcess, WebProcess, live_env, manage

pytestmark = pytest.mark.django_db(transaction=True)


class Stack:
    def __init__(self, web: WebProcess, feed: LiveProcess):
        self.web, self.feed = web, feed
        self.url = web.url


@pytest.fixture
def stack() -> Iterator[Stack]:
    call_command("seed_demo", stdout=io.StringIO())
    metrics_dir = tempfile.mkdtemp(prefix="signal-dash-metrics-")
    env = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    processes: list[Any] = []
    try:
        processes.append(LiveProcess([sys.executable, "-m", "celery", "-A", "signal_project", "worker", "-Q",
                                      "signals", "--pool=solo", "-n", "dash@%h", "-l", "WARNING",
                                      "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                     live_env(**env)))
        processes.append(manage("stream_bridge", "--consumer", "dash-bridge", **env))
        feed = manage("simulate_ticks", "--rate", "150", "--strikes", "6", "--duration", "300", **env)
        processes.append(feed)
        web = WebProcess(TEST_SERVE_STATIC="true", **env)
        processes.append(web)
        yield Stack(web, feed)
    finally:
        for process in reversed(processes):
            process.stop()


def numbers_in(page: Page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def chain_values(page: Page) -> list[str]:
    return page.eval_on_selector_all("#chain tbody td", "cells => cells.map(c => c.textContent)")


def test_the_dashboard_shows_the_live_pipeline(stack: Stack, page: Page) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("viewer", password="view-pass-123")  # neither staff nor in the group
    User.objects.create_user("trader", password="trade-pass-123").groups.create(name="dashboard")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_viewport_size({"width": 1280, "height": 800})

    # logged out: sent to the login page; a user outside staff and the group is refused
    page.goto(stack.url + "/")
    expect(page).to_have_url(re.compile(r"/dashboard/login/\?next=/$"))
    log_in(page, "viewer", "view-pass-123")
    expect(page.get_by_text("is neither staff nor in the")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login/"))
    assert errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    errors.clear()  # that 403 was the refusal itself

    log_in(page, "trader", "trade-pass-123")
    expect(page).to_have_url(stack.url + "/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=15_000)

    # the chain fills with numbers from the running pipeline, then changes as ticks arrive
    expect(page.locator("#chain tbody tr")).to_have_count(13, timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('#chain td[data-field=\"call-iv\"]').length > 0 && "
                           "Array.from(document.querySelectorAll('#chain td[data-field=\"call-iv\"]'))"
                           ".filter(td => /\\d/.test(td.textContent)).length >= 6", timeout=30_000)
    expect(page.locator("#chain tr.atm")).to_have_count(1)
    expect(page.locator("#spot")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    expect(page.locator("#atm-iv-value")).to_have_text(re.compile(r"^\d+\.\d\d%$"), timeout=20_000)
    assert page.locator("#chain td.itm").count() > 0
    before = chain_values(page)
    page.wait_for_function("n => window.dashboard.chainFrames > n + 2",
                           arg=page.evaluate("window.dashboard.chainFrames"), timeout=20_000)
    page.wait_for_timeout(300)
    assert chain_values(page) != before

    # switching expiry: the other expiry's chain replaces it
    expiries = page.locator("#expiry option").all_inner_texts()
    assert len(expiries) >= 2
    page.select_option("#expiry", expiries[1])
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('#chain tbody tr')).length === 13 && "
                           f"window.dashboard.expiry === '{expiries[1]}' && Array.from(window.dashboard.rows.values())"
                           f".some(r => r.call && r.call.instrument_key && r.call.instrument_key.includes('{expiries[1]}')"
                           " && r.call.iv != null)", timeout=20_000)
    keys = page.evaluate("Array.from(window.dashboard.rows.values()).map(r => (r.call || r.put).instrument_key)")
    assert all(expiries[1] in key for key in keys if key)

    # the candle chart (with the demo's indicators) and the ATM IV chart draw
    page.wait_for_function("() => Number(document.querySelector('#candles').dataset.bars) >= 1", timeout=20_000)
    page.wait_for_function("() => Number(document.querySelector('#candles').dataset.indicators) >= 1", timeout=20_000)
    page.wait_for_function("() => Number(document.querySelector('#atm-iv').dataset.points) >= 1", timeout=30_000)
    for chart in ("#candles", "#atm-iv"):
        assert drawn_colours(page, chart) > 3, f"{chart} is blank"

    # at 1280x800 the whole chain fits its panel: no sideways scrolling
    assert page.evaluate("(() => { const w = document.querySelector('.table-wrap'); "
                         "return w.scrollWidth <= w.clientWidth; })()")

    # the health panel shows the pipeline's throughput
    page.wait_for_function("() => parseFloat(document.querySelector('#ticks-per-s').textContent) > 0",
                           timeout=20_000)
    assert page.locator("#configs tr").count() >= 3

    # a phone-width screen: one column, nothing wider than the screen but the chain's own scroller
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.locator("#chain")).to_be_visible()
    assert not errors, errors


def test_the_socket_drop_is_shown_and_the_page_reconnects_and_resumes(stack: Stack, page: Page) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("ops", password="ops-pass-123", is_staff=True)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "WebSocket" not in m.text
            else None)
    log_in(page, "ops", "ops-pass-123", stack.url + "/")
    expect(page).to_have_url(stack.url + "/")
    page.wait_for_function("() => window.dashboard && window.dashboard.chainFrames > 0", timeout=30_000)
    seq = page.evaluate("window.dashboard.subs.get('chain').seq")
    page.evaluate("window.dashboard.ws.close(4000)")  # as a dropped connection would
    expect(page.locator("#notice")).to_contain_text("reconnecting", timeout=5_000)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=15_000)
    page.wait_for_function("n => window.dashboard.subs.get('chain').seq > n", arg=seq, timeout=20_000)
    expect(page.locator("#notice")).to_be_hidden(timeout=10_000)

    stack.feed.stop()  # the feed goes quiet: the page says so
    expect(page.locator("#notice")).to_contain_text("feed looks idle", timeout=25_000)
    assert not errors, errors


def log_in(page: Page, user: str, password: str, url: str | None = None) -> None:
    if url:
        page.goto(url)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()


def drawn_colours(page: Page, selector: str) -> int:
    """How many distinct colours the chart's canvases hold (a blank chart has its background and grid only)."""
    return page.evaluate("""sel => {
        const seen = new Set();
        for (const canvas of document.querySelectorAll(sel + ' canvas')) {
            if (!canvas.width || !canvas.height) continue;
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 0; i < data.length; i += 4 * 7) if (data[i + 3]) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        }
        return seen.size;
    }""", selector)
