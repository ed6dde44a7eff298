"""The read lane (`webapi.lane`): the API's plain reads answered without Django's middleware and DRF's dispatch.

Every request here goes once through the lane (in front of Django, as the web process serves it) and once through
Django alone; the two answers must be the same, status, headers and body, and the lane must have answered the
plain reads itself and handed every other request to Django, counted once."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.test import override_settings
from django.views.decorators.cache import never_cache

from signal_project.asgi import django_asgi_app
from signals.api import greeks_api, history_api, realtime, stored_api
from signals.pipeline.batch import process_batch
from tests.bars_helpers import FUTURE, make_ticks, normalised_batch, store
from tests.factories import create_config
from tests.greeks_helpers import EXPIRY, batch, greeks_config, option_key, option_tick, spot_tick
from tests.support import finished_requests
from tests.test_redis_down import OwnRedis
from webapi import lane, quotas
from webapi.auth import decode_token

pytestmark = [pytest.mark.django_db(transaction=True),  # the lane's thread reads what the test wrote
              pytest.mark.usefixtures("pool_threads_end")]
API = "/api/v2/signals/"
SPOT = "NSE@NIFTY@index"
CALL = option_key("call", 24000)
CHAIN = f"expiry_date={EXPIRY}".encode()

PLAIN_READS = [
    (f"realtime/price/{SPOT}", b""),
    (f"realtime/price/{SPOT.lower()}", b""),
    ("realtime/price", f"keys={SPOT},{CALL},NSE@UNSEEN@index".encode()),
    (f"realtime/greeks/{CALL}", b""),
    ("realtime/greeks", f"keys={CALL}".encode()),
    (f"realtime/moneyness/{SPOT}/greeks/ATM", CHAIN),
    (f"realtime/moneyness/{SPOT}/greeks/OTM1", CHAIN + b"&strike_step=100"),
    (f"realtime/moneyness/{SPOT}/atm-iv", CHAIN),
    (f"option-chain/{SPOT}", CHAIN),
    (f"realtime/indicators/{FUTURE}", b"timeframe=5m"),
]
HANDED_OVER = [  # (path, query, extra headers, Django's status)
    ("realtime/price/NSE@UNSEEN@index", b"", {}, 404),
    ("realtime/price/NSE@NIFTY", b"", {}, 400),
    (f"realtime/greeks/{SPOT}", b"", {}, 400),
    (f"realtime/moneyness/{SPOT}/atm-iv", b"", {}, 400),
    (f"realtime/moneyness/{SPOT}/greeks/XTM", CHAIN, {}, 400),
    (f"realtime/indicators/{FUTURE}", b"timeframe=1h", {}, 404),
    ("realtime/price", b"", {}, 400),
    (f"realtime/price/{SPOT}", b"format=xml", {}, 404),
    (f"realtime/price/{SPOT}", b"format=json", {}, 200),
    (f"realtime/price/{SPOT}", b"x=a%00b", {}, 400),
    (f"realtime/price/{SPOT}", b"", {b"accept": b"text/html"}, 406),
    (f"realtime/price/{SPOT}", b"", {b"accept": b"application/json; indent=4"}, 200),
    (f"realtime/price/{SPOT}", b"", {b"host": b"evil.example"}, 400),
    (f"realtime/price/{SPOT}", b"", {b"authorization": b""}, 401),
    (f"realtime/price/{SPOT}", b"", {b"authorization": b"Basic dXNlcjpwdw=="}, 401),
    (f"realtime/price/{SPOT}", b"", {b"authorization": b"Bearer not-a-token"}, 401),
    ("historical/bars/NSE@NIFTY@index", b"timeframe=5m", {}, 200),
    ("instruments/", b"", {}, 200),
    ("instruments", b"", {}, 301),
]


class Recording:
    """Django's HTTP application, noting the requests it answers."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await django_asgi_app(scope, receive, send)


async def ask(app: Any, path: str, token: str, query: bytes = b"", extra: dict[bytes, bytes] | None = None,
              method: str = "GET", added: tuple[bytes, bytes] | None = None) -> dict[str, Any]:
    headers = {b"host": b"127.0.0.1", b"authorization": f"Bearer {token}".encode(), b"accept-encoding": b"identity",
               **(extra or {})}
    pairs = [(k, v) for k, v in headers.items() if v] + ([added] if added else [])
    communicator = HttpCommunicator(app, method, API + path, headers=pairs)
    communicator.scope["query_string"] = query
    response = await communicator.get_response(timeout=10)
    response["headers"] = sorted((k.lower(), v) for k, v in response["headers"])
    return response


async def both(path: str, token: str, query: bytes = b"", extra: dict[bytes, bytes] | None = None,
               method: str = "GET", added: tuple[bytes, bytes] | None = None
               ) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(the lane's answer, Django's answer, whether the lane answered it itself)."""
    django = Recording()
    through_lane = await ask(lane.ReadLane(django), path, token, query, extra, method, added)
    alone = await ask(django_asgi_app, path, token, query, extra, method, added)
    return through_lane, alone, not django.paths


@pytest.fixture
def data(r: Any) -> None:
    """Prices, Greeks, a chain and indicators, as the pipeline leaves them in Redis and the database."""
    create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 0.5),
                        option_tick("put", 24000, 160.0, 0.5), option_tick("call", 24100, 140.0, 0.5),
                        option_tick("put", 24100, 210.0, 0.5), spot_tick(24010, 1.0, volume=1200)))
    ticks = make_ticks([date(2025, 6, 19)], seed=13, pre_open=False)
    store(ticks[:-20])
    create_config({"name": "ind", "instrument_key": "NSE@NIFTY@futures@*", "interval": "5m",
                   "frequency": "every_tick",
                   "technical_indicators": [{"name": "sma", "parameters": {"length": 3}, "output_key": "fast"}]})
    process_batch(normalised_batch(ticks[-20:], first_id=9_000_000))


@pytest.mark.parametrize(("path", "query"), PLAIN_READS)
async def test_a_plain_read_is_answered_by_the_lane_as_django_answers_it(data: None, make_token: Callable[..., str],
                                                                         path: str, query: bytes) -> None:
    through_lane, alone, served = await both(path, make_token(), query)
    assert alone["status"] == 200, alone["body"][:300]
    assert json.loads(alone["body"])["source"] == "redis"
    assert served
    assert through_lane == alone


@pytest.mark.parametrize(("path", "query", "extra", "status"), HANDED_OVER)
async def test_anything_else_is_handed_to_django(data: None, make_token: Callable[..., str], path: str, query: bytes,
                                                 extra: dict[bytes, bytes], status: int) -> None:
    through_lane, alone, served = await both(path, make_token(), query, extra)
    assert alone["status"] == status, alone["body"][:300]
    assert not served
    assert through_lane == alone


async def test_an_expired_token_head_and_post_are_handed_to_django(data: None,
                                                                   make_token: Callable[..., str]) -> None:
    for token, method, status in ((make_token(ttl=-5), "GET", 401), (make_token(), "HEAD", 200),
                                  (make_token(scope="signals:write"), "POST", 405)):
        through_lane, alone, served = await both(f"realtime/price/{SPOT}", token, method=method)
        assert (alone["status"], served) == (status, False)
        assert through_lane == alone


async def test_odd_headers_and_queries_are_handed_to_django(data: None, make_token: Callable[..., str]) -> None:
    token = make_token()
    with override_settings(SIGNAL_COMPRESS_MIN_BYTES=64):
        for query, added, status in ((b"", (b"authorization", f"Bearer {token}".encode()), 401),  # repeated
                                     (b"&".join(b"f%d=1" % i for i in range(1200)), None, 400),  # too many fields
                                     (b"", (b"accept", b""), 406),  # empty, not missing
                                     (b"", (b"accept_encoding", b"gzip"), 200)):  # Django reads it as "-"
            through_lane, alone, served = await both(f"realtime/price/{SPOT}", token, query, added=added)
            assert (alone["status"], served) == (status, False)
            assert through_lane == alone


async def test_settings_the_lane_does_not_follow_send_everything_to_django(data: None,
                                                                          make_token: Callable[..., str]) -> None:
    with override_settings(USE_X_FORWARDED_HOST=True):
        through_lane, alone, served = await both(f"realtime/price/{SPOT}", make_token(),
                                                 extra={b"x-forwarded-host": b"evil.example"})
    assert (alone["status"], served) == (400, False)
    assert through_lane == alone


async def test_a_read_that_fails_in_the_lane_is_not_made_again(data: None, make_token: Callable[..., str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    read = realtime.RealtimePriceView.read

    def counted(request: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return read(request, **kwargs)

    monkeypatch.setattr(realtime.RealtimePriceView, "read", staticmethod(counted))
    response = await ask(lane.ReadLane(Recording()), "realtime/price/NSE@UNSEEN@index", make_token())
    assert response["status"] == 404 and json.loads(response["body"])["error"]["code"] == "not_found"
    assert len(calls) == 1


async def test_a_large_answer_is_compressed_as_django_compresses_it(data: None,
                                                                    make_token: Callable[..., str]) -> None:
    with override_settings(SIGNAL_COMPRESS_MIN_BYTES=64):
        for coding in (b"br", b"gzip"):
            through_lane, alone, served = await both(f"option-chain/{SPOT}", make_token(), CHAIN,
                                                     {b"accept-encoding": coding})
            assert served and dict(alone["headers"])[b"content-encoding"] == coding
            assert through_lane == alone


async def test_every_request_is_counted_once_whoever_answers_it(data: None, make_token: Callable[..., str]) -> None:
    token = make_token(sub="counted-once")
    app = lane.ReadLane(Recording())
    statuses = [(await ask(app, path, token, query))["status"] for path, query in (
        (f"realtime/price/{SPOT}", b""), ("realtime/price/NSE@UNSEEN@index", b""),
        (f"realtime/moneyness/{SPOT}/atm-iv", b""), (f"realtime/greeks/{CALL}", b""))]
    assert statuses == [200, 404, 400, 200]
    usage = await sync_to_async(quotas.usage)(decode_token(token))
    assert usage["usage"]["total"] == 4 and usage["usage"]["realtime"] == 4


async def test_a_refused_rate_answers_429_counted_once(data: None, make_token: Callable[..., str]) -> None:
    with override_settings(SIGNAL_API_RATE_REALTIME="2/min"):
        answers = []
        for sub in ("lane-user", "django-user"):
            django = Recording()
            app = lane.ReadLane(django) if sub == "lane-user" else django_asgi_app
            token = make_token(sub=sub)
            answers.append([await ask(app, f"realtime/price/{SPOT}", token) for _ in range(3)])
            usage = await sync_to_async(quotas.usage)(decode_token(token))
            assert (usage["usage"]["total"], usage["usage"]["throttled"]) == (2, 1)
        through_lane, alone = answers
    assert [a["status"] for a in through_lane] == [a["status"] for a in alone] == [200, 200, 429]
    assert through_lane[:2] == alone[:2]
    refused = [json.loads(a["body"])["error"] for a in (through_lane[2], alone[2])]
    for error in refused:  # seconds to wait depend on the instant asked
        error["limit"].pop("retry_after")
        error.pop("message")
    assert refused[0] == refused[1] and refused[0]["code"] == "throttled"
    assert {k for k, _ in through_lane[2]["headers"]} == {k for k, _ in alone[2]["headers"]}


async def test_while_redis_is_down_the_lane_answers_from_the_database(data: None, tmp_path: Any,
                                                                      make_token: Callable[..., str]) -> None:
    server = OwnRedis(tmp_path)
    server.kill()
    with override_settings(REDIS_URL=server.url):
        for path, query in ((f"realtime/price/{SPOT}", b""), (f"option-chain/{SPOT}", CHAIN)):
            with finished_requests() as finished:
                through_lane, alone, served = await both(path, make_token(), query)
            assert served and alone["status"] == 200
            assert json.loads(alone["body"])["source"] == "database"
            assert through_lane == alone
            assert finished.count(lane.ReadLane) == 1  # the database connection is looked after as Django does


async def test_a_failure_of_the_lane_itself_is_logged_and_django_answers(data: None, make_token: Callable[..., str],
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lane, "_response", broken)
    token = make_token(sub="lane-bug")
    with caplog.at_level(logging.ERROR, logger="webapi.lane"):
        through_lane = await ask(lane.ReadLane(Recording()), f"realtime/price/{SPOT}", token)
    alone = await ask(django_asgi_app, f"realtime/price/{SPOT}", make_token())
    assert through_lane["status"] == 200 and through_lane == alone
    assert "the read lane failed" in caplog.text and "a bug" in caplog.text
    usage = await sync_to_async(quotas.usage)(decode_token(token))
    assert usage["usage"]["total"] == 1  # counted by the lane, not again by Django


def test_only_views_with_the_default_policies_take_the_lane() -> None:

    readers = [realtime.RealtimePriceView, greeks_api.RealtimeGreeksView, greeks_api.MoneynessGreeksView,
               greeks_api.AtmIvView, greeks_api.OptionChainView, history_api.RealtimeIndicatorsView,
               stored_api.RealtimePricesView, stored_api.RealtimeGreeksManyView]
    assert all(lane._plain_policies(view) for view in readers)
    assert lane._read_view(f"{API}realtime/price/{SPOT}")[0] is realtime.RealtimePriceView
    assert lane._read_view(f"{API}historical/bars/{SPOT}") is None  # not a ReadView
    assert lane._read_view(f"{API}usage") is None  # its own throttle
    assert lane._read_view("/api/nowhere") is None

    class OwnGet(realtime.RealtimePriceView):
        def get(self, request: Any, **kwargs: Any) -> Any:
            return super().get(request, **kwargs)

    assert not lane._plain_policies(OwnGet)  # its get might add what the lane would not
    assert lane._as_view_alone(realtime.RealtimePriceView.as_view())
    assert not lane._as_view_alone(never_cache(realtime.RealtimePriceView.as_view()))


async def test_other_routes_go_to_django_without_the_lanes_thread_hop(data: None, make_token: Callable[..., str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hops: list[str] = []
    original = lane.ReadLane.answer

    def noted(self: lane.ReadLane, scope: dict[str, Any], view: Any) -> Any:
        hops.append(scope["path"])
        return original(self, scope, view)

    monkeypatch.setattr(lane.ReadLane, "answer", noted)
    django = Recording()
    app = lane.ReadLane(django)
    for path, query in (("historical/bars/NSE@NIFTY@index", b"timeframe=5m"), ("instruments/", b""),
                        (f"realtime/price/{SPOT}", b"")):
        assert (await ask(app, path, make_token(), query))["status"] == 200
    assert hops == [f"{API}realtime/price/{SPOT}"]
    assert django.paths == [f"{API}historical/bars/NSE@NIFTY@index", f"{API}instruments/"]


async def test_reads_run_on_the_lanes_own_few_threads(data: None, make_token: Callable[..., str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # a burst of reads is taken up by SIGNAL_READ_LANE_THREADS threads, not by every thread of the loop's pool
    threads: list[str] = []
    original = lane.ReadLane.answer

    def slow(self: lane.ReadLane, scope: dict[str, Any], view: Any) -> Any:
        threads.append(threading.current_thread().name)
        time.sleep(0.02)
        return original(self, scope, view)

    monkeypatch.setattr(lane.ReadLane, "answer", slow)
    lane.end_lane_threads()
    app = lane.ReadLane(Recording())
    with override_settings(SIGNAL_READ_LANE_THREADS=3):
        answers = await asyncio.gather(*(ask(app, f"realtime/price/{SPOT}", make_token()) for _ in range(12)))
    assert [a["status"] for a in answers] == [200] * 12
    assert len(threads) == 12 and len(set(threads)) == 3
    assert all(name.startswith("read-lane") for name in threads)
