"""The WebSocket consumer, the admin's config form and the config stream hold hostile documents to the same limits
as the REST API (issue 17): malformed, deeply nested, huge and NUL-bearing input gets an error frame, an error on
the form's field or a dead letter naming the reason, and the socket, the admin and the consumer go on working."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from configs.models import SignalConfig
from configs.stream import ConfigStreamConsumer, ConfigStreamSettings
from signal_project.asgi import application
from tests.factories import create_config, price_config
from webapi.limits import MAX_BODY_BYTES, MAX_DEPTH

KEY = "NSE@NIFTY@index"
DEEP_JSON = "[" * 5000 + "]" * 5000
SUBSCRIBE = {"type": "subscribe", "channel": "computed", "instrument_key": KEY}
HOSTILE: list[tuple[str, str, str]] = [
    ("malformed", "{nope", "bad_json"),
    ("nested", DEEP_JSON, "too_deep"),
    ("nested-within-size", json.dumps({"type": "subscribe", "params": json.loads("[" * 40 + "]" * 40)}), "too_deep"),
    ("huge", json.dumps({"type": "ping", "pad": "x" * (MAX_BODY_BYTES + 1)}), "too_large"),
    ("nul", json.dumps({"type": "subscribe", "channel": "computed", "instrument_key": "NSE@NIFTY\x00@index"}),
     "bad_message"),
    ("nan", '{"type": "ping", "n": NaN}', "bad_json"),
    ("typed", json.dumps({"type": "subscribe", "channel": ["computed"], "instrument_key": {"a": 1}}),
     "unknown_channel"),
    ("params", json.dumps({**SUBSCRIBE, "channel": "indicators", "params": {"timeframe": ["5m"]}}), "bad_params"),
]


@pytest.mark.parametrize(("text", "code"), [(t, c) for _, t, c in HOSTILE], ids=[i for i, _, _ in HOSTILE])
async def test_hostile_websocket_messages_get_an_error_frame_and_the_socket_stays_usable(
        make_token: Any, text: str, code: str) -> None:
    communicator = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=3))["type"] == "authenticated"
    await communicator.send_to(text_data=text)
    error = json.loads(await communicator.receive_from(timeout=5))
    assert error["type"] == "error" and error["code"] == code, error
    assert len(error["message"]) <= 500
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    assert (await communicator.receive_json_from(timeout=3))["type"] == "pong"
    await communicator.send_to(text_data=json.dumps(SUBSCRIBE))
    assert (await communicator.receive_json_from(timeout=3))["type"] == "subscribed"
    await communicator.disconnect()


# --- the admin's config form ---------------------------------------------------------------------------------------
CHANGELIST = "/admin/configs/signalconfig/"
INLINE = {"revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"}


@pytest.fixture
def admin_client(client: Any) -> Any:
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    client.raise_request_exception = False
    return client


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


ADMIN_DOCUMENTS = {
    "deep-text": DEEP_JSON,
    "deep-value": json.dumps(price_config("deep", internal_functions=[{"name": "price",
                                                                      "parameters": _nested(500)}])),
    "nul": json.dumps(price_config("a\x00b")),
    "huge": json.dumps({**price_config("huge"), "pad": "x" * (MAX_BODY_BYTES + 1)}),
    "null-section": json.dumps(price_config("nulls", option_greeks=None)),
    "list-key": json.dumps(price_config("listkey", instrument_key=["NSE@NIFTY@index"])),
    "nan": json.dumps(price_config("nan", version=float("nan"))),
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(ADMIN_DOCUMENTS))
def test_the_admin_form_shows_an_error_on_the_field_for_hostile_documents(admin_client: Any, name: str) -> None:
    config = create_config(price_config("kept"))
    for url in (CHANGELIST + "add/", f"{CHANGELIST}{config.pk}/change/"):
        response = admin_client.post(url, {"config": ADMIN_DOCUMENTS[name], "enabled": "on", **INLINE})
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        errors = response.context["adminform"].form.errors
        assert "config" in errors, errors
    config.refresh_from_db()
    assert config.revision == 1 and SignalConfig.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_search_refuses_nul_with_a_400(admin_client: Any) -> None:
    response = admin_client.get(CHANGELIST + "?q=a%00b")
    assert response.status_code == 400 and json.loads(response.content)["error"]["field"] == "q"
    assert admin_client.get(CHANGELIST + "?q=ab").status_code == 200


# --- the config stream ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "reason"), [
    ({"config_json": DEEP_JSON, "action": "create"}, f"config_json: nested deeper than {MAX_DEPTH}"),
    ({"config_json": json.dumps(price_config("a\x00b")), "action": "create"}, "config_json.name: must not contain NUL"),
    ({"config_json": json.dumps(price_config(option_greeks=None)), "action": "create"},
     "config_json.option_greeks: must be an object"),
    ({"config_json": json.dumps(price_config(name=["x"])), "action": "update"}, "config_json.name: must be a string"),
    ({"config_json": json.dumps(price_config()), "action": "create", "changed_by": "x\x00"},
     "changed_by: must not contain NUL"),
    ({"config_json": '{"name": "n", "version": NaN}', "action": "create"}, "config_json: not valid JSON"),
])
def test_hostile_stream_messages_are_dead_lettered_and_the_consumer_goes_on(r: Any, fields: dict[str, str],
                                                                          reason: str) -> None:
    settings = ConfigStreamSettings.from_django()
    consumer = ConfigStreamConsumer(r, settings, consumer="hostile")
    consumer.ensure_group()
    r.xadd(settings.stream, fields)
    r.xadd(settings.stream, {"config_json": json.dumps(price_config("after")), "action": "create"})
    outcomes = consumer.step()
    outcomes += consumer.step() if len(outcomes) == 1 else []
    assert [o.status for o in outcomes] == ["dead", "applied"], outcomes
    ((_, dead),) = r.xrange(settings.dead_letter_stream)
    assert reason in dead[b"error"].decode(), dead[b"error"]
    assert list(SignalConfig.objects.values_list("name", flat=True)) == ["after"]


async def test_a_bug_in_a_handler_costs_one_error_frame_not_the_socket(make_token: Any, monkeypatch: Any) -> None:
    from signals.delivery import consumers

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(consumers, "resolve", broken)
    communicator = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=3))["type"] == "authenticated"
    await communicator.send_to(text_data=json.dumps(SUBSCRIBE))
    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "internal" and "a bug" not in error["message"]
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    assert (await communicator.receive_json_from(timeout=3))["type"] == "pong"
    await communicator.disconnect()
