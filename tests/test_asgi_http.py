"""HTTP through the ASGI application the web process serves: the whole middleware chain runs, in one thread hop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from channels.testing import HttpCommunicator
from django.http import FileResponse

from signal_project.asgi import application
from signal_project.http_handler import SyncStackASGIHandler
from tests.support import finished_requests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("pool_threads_end")]
PRICE = "/api/v2/signals/realtime/price/"
BARS, TIMEFRAME = "/api/v2/signals/historical/bars/", b"timeframe=5m"


async def get(path: str, token: str, query: bytes = b"") -> dict[str, Any]:
    communicator = HttpCommunicator(application, "GET", path,
                                    headers=[(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode()),
                                             (b"accept-encoding", b"identity")])
    communicator.scope["query_string"] = query
    return await communicator.get_response(timeout=5)


async def test_every_middleware_answers_through_asgi(make_token: Callable[..., str]) -> None:
    response = await get(PRICE + "NSE@UNSEEN@index", make_token())
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    assert response["status"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"
    assert headers["x-frame-options"] == "DENY"  # XFrameOptionsMiddleware, the innermost
    assert "Accept-Encoding" in headers["vary"]  # CompressionMiddleware
    assert headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware, the outermost


async def test_storable_text_refuses_nul_through_asgi(make_token: Callable[..., str]) -> None:
    response = await get(PRICE + "NSE@NIFTY@index", make_token(), query=b"timeframe=a%00b")
    assert response["status"] == 400
    assert json.loads(response["body"])["error"]["code"] == "bad_parameter"


async def test_a_request_takes_one_thread_hop_on_a_pooled_thread(make_token: Callable[..., str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """request_started, the sync stack and response.close together: Django's async chain took ~12
    (docs/BENCHMARKS.md), and a new thread per request. (A route the read lane does not take: a plain read the
    lane hands over takes the lane's hop too, tests/test_read_lane.py.)"""
    token = make_token()
    await get(BARS + "NSE@UNSEEN@index", token, TIMEFRAME)  # first request: lazy set-up out of the count
    hops = []
    original = sync.SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append((getattr(self.func, "__qualname__", repr(self.func)), self._thread_sensitive))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    with finished_requests() as finished:
        response = await get(BARS + "NSE@UNSEEN@index", token, TIMEFRAME)
    assert response["status"] == 404
    assert hops == [("SyncStackASGIHandler.respond", False)]
    assert len(finished) == 1  # the response was closed (Django's database connection clean-up runs there)


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
async def test_a_streaming_response_is_sent_whole_and_closed_after(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """(Static files come as file responses: whitenoise in the web process.)"""
    body = bytes(range(256)) * 1000
    (tmp_path / "file.bin").write_bytes(body)
    opened = []

    def file_response(request: Any) -> FileResponse:
        opened.append((tmp_path / "file.bin").open("rb"))
        return FileResponse(opened[-1])

    handler = SyncStackASGIHandler()
    monkeypatch.setattr(handler, "get_response", file_response)
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/any", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1")]}
    communicator = ApplicationCommunicator(handler, scope)  # (Channels' HttpCommunicator wants a body in every
    await communicator.send_input({"type": "http.request", "body": b""})  # message; the ASGI spec does not)
    with finished_requests() as finished:
        start = await communicator.receive_output(timeout=5)
        chunks = []
        while True:
            message = await communicator.receive_output(timeout=5)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await communicator.wait(timeout=5)
    assert start["status"] == 200 and b"".join(chunks) == body and len(chunks) > 1
    assert opened[0].closed and len(finished) == 1


@pytest.mark.django_db
def test_a_realtime_request_makes_no_database_query(auth_client: Any, r: Any,
                                                    django_assert_num_queries: Callable[..., Any]) -> None:
    """The middleware and the view read Redis only (the database only while Redis is down)."""
    from feed.latest import LatestStore
    from tests.factories import normalised, tick

    LatestStore(r).update([normalised(tick(ltp=24100.5), "s/1-0")], history=False)
    with django_assert_num_queries(0):
        response = auth_client.get(PRICE + "NSE@NIFTY@index")
    assert response.status_code == 200 and response.json()["ltp"] == 24100.5
