"""HTTP through the ASGI application the web process serves: the whole middleware chain runs, in one thread hop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref import sync
from channels.testing import HttpCommunicator

from signal_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
PRICE = "/api/v2/signals/realtime/price/"


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


async def test_a_request_takes_at_most_three_thread_hops(make_token: Callable[..., str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """request_started, the sync stack, response.close: Django's async chain took ~12 (docs/BENCHMARKS.md)."""
    token = make_token()
    await get(PRICE + "NSE@UNSEEN@index", token)  # first request: lazy set-up out of the count
    hops = []
    original = sync.SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    response = await get(PRICE + "NSE@UNSEEN@index", token)
    assert response["status"] == 404
    assert len(hops) <= 3, hops


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
