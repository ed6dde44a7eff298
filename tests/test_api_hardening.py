"""No request reaches a 500 and every error is the JSON envelope (issue 17): one test per class of input that
used to crash the API, the admin form and the config stream, and the schema's promises about statuses, nulls,
content types and typed query parameters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from configs.models import SignalConfig
from tests.factories import create_config, price_config
from webapi.limits import MAX_BODY_BYTES, MAX_DEPTH, MAX_LISTED_ERRORS

pytestmark = pytest.mark.django_db
API = "/api/v2/signals/"
CONFIGS = API + "configs/"
FUNCTIONS = API + "functions/"
OPTION = "NSE@NIFTY@options@2025-06-26@CE@24000"


@pytest.fixture
def api(make_token: Any) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scope='signals:write')}")
    return client


def envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with a JSON error envelope (of ``code`` when given); returns the error."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = json.loads(response.content)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code, error
    return error


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


# --- validation that assumed types -------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "path"), [
    ("option_greeks", None, "option_greeks"), ("option_greeks", [], "option_greeks"),
    ("option_greeks", "on", "option_greeks"), ("instrument_key", ["NSE@NIFTY@index"], "instrument_key"),
    ("moneyness", None, "moneyness"), ("output", None, "output"), ("interval", 5, "interval"),
    ("frequency", ["every_tick"], "frequency"),
])
def test_config_fields_of_the_wrong_type_are_400_naming_the_field(api: APIClient, field: str, value: Any,
                                                                  path: str) -> None:
    error = envelope(api.post(CONFIGS, price_config(**{field: value}), format="json"), 400, "invalid")
    assert error["field"] == path


@pytest.mark.parametrize("content", ["multipart", "form"])
def test_form_bodies_are_415_not_lists_of_fields(api: APIClient, content: str) -> None:
    data = {"name": "x", "instrument_key": "NSE@NIFTY@index"}
    if content == "multipart":
        response = api.post(CONFIGS, data, format="multipart")
    else:
        response = api.post(CONFIGS, "name=x", content_type="application/x-www-form-urlencoded")
    envelope(response, 415, "unsupported_media_type")


# --- text PostgreSQL refuses ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [CONFIGS + "?search=%00", FUNCTIONS + "?search=a%00b",
                                 CONFIGS + "?frequency=%00", API + "historical/greeks/" + OPTION + "?timeframe=%00"])
def test_nul_in_query_parameters_is_400(api: APIClient, url: str) -> None:
    envelope(api.get(url), 400, "bad_parameter")


@pytest.mark.parametrize("field", ["name", "description", "version"])
def test_nul_in_config_text_is_400(api: APIClient, field: str) -> None:
    document = price_config(**{field: "a\x00b"})
    error = envelope(api.post(CONFIGS, document, format="json"), 400)
    assert "NUL" in error["message"] and error["field"] == field


def test_lone_surrogates_and_nan_in_bodies_are_400(api: APIClient) -> None:
    body = '{"name": "x\\ud800", "instrument_key": "NSE@NIFTY@index"}'
    envelope(api.post(CONFIGS, body, content_type="application/json"), 400)
    body = json.dumps(price_config(), allow_nan=True).replace('"1.0"', "NaN")
    envelope(api.post(CONFIGS, body, content_type="application/json"), 400, "bad_json")
    source = "def f(tick, bars, params):\n    return {'v': '\x00'}\n"
    envelope(api.post(FUNCTIONS, {"name": "f", "function_name": "f", "source": source}, format="json"), 400)


def test_a_token_whose_sub_holds_nul_is_401(make_token: Any) -> None:
    client = APIClient(raise_request_exception=False)
    token = make_token(sub="a\x00b", scope="signals:write")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    envelope(client.post(CONFIGS, price_config(), format="json"), 401, "authentication_failed")


# --- times outside what the code can convert -------------------------------------------------------------------
OUTSIDE = ["end_time=0001-01-01T00:00:01Z", "start_time=9999-12-31T23:59:59-14:00", "end_time=9999-12-31T23:59:59-14:00",
           "timeframe=1M&start_time=0001-01-01T00:00:00Z", "start_time=1e300", "end_time=2100-01-01T00:00:00Z",
           "start_time=1969-12-31T23:59:59Z"]
AT_THE_EDGES = ["timeframe=1M&end_time=1970-01-01T00:00:01Z", "timeframe=1w&end_time=1970-01-02T00:00:00Z",
                "start_time=1970-01-01T00:00:00Z", "start_time=2099-12-31T23:00:00Z"]


@pytest.mark.parametrize("query", OUTSIDE + AT_THE_EDGES)
@pytest.mark.parametrize("route", ["historical/bars/NSE@NIFTY@index?timeframe=1m&",
                                   "historical/greeks/" + OPTION + "?",
                                   "historical/moneyness/NSE@NIFTY@index/atm-iv?expiry_date=2025-06-26&"])
def test_times_outside_the_documented_range_are_400_and_at_its_edges_never_500(api: APIClient, route: str,
                                                                               query: str) -> None:
    from signals.models import InstrumentRecord

    InstrumentRecord.objects.get_or_create(key="NSE@NIFTY@index", defaults={"exchange": "NSE", "symbol": "NIFTY",
                                                                            "product": "index"})
    response = api.get(API + route + query)
    if query in OUTSIDE:
        error = envelope(response, 400, "bad_parameter")
        assert error["field"] in ("start_time", "end_time")
    elif response.status_code != 200:  # inside the range: data, none, or a range too large, never a crash
        assert response.status_code in (400, 404), response.content[:300]
        envelope(response, response.status_code)


# --- deep nesting and size ---------------------------------------------------------------------------------------
def test_a_body_nested_1000_levels_is_400(api: APIClient) -> None:
    body = "[" * 1000 + "]" * 1000
    error = envelope(api.post(CONFIGS, body, content_type="application/json"), 400, "too_deep")
    assert str(MAX_DEPTH) in error["message"]


def test_a_config_value_nested_500_levels_is_400_and_481_is_no_longer_stored(api: APIClient) -> None:
    for depth in (481, 500):
        document = price_config(internal_functions=[{"name": "price", "parameters": nested(depth)}])
        body = json.dumps(document)
        envelope(api.post(CONFIGS, body, content_type="application/json"), 400)
    assert not SignalConfig.objects.exists()


def test_an_indicators_parameter_nested_thousands_of_levels_is_400(api: APIClient) -> None:
    indicators = "[" * 5000 + "]" * 5000
    error = envelope(api.get(API + "historical/indicators/NSE@NIFTY@index",
                             {"timeframe": "1m", "indicators": indicators}), 400)
    assert error["field"] == "indicators"


def test_a_body_over_the_size_limit_is_400_without_reading_it_all(api: APIClient) -> None:
    body = json.dumps({f"k{i}": i for i in range(MAX_BODY_BYTES // 8)})
    assert len(body) > MAX_BODY_BYTES
    error = envelope(api.post(CONFIGS, body, content_type="application/json"), 400, "too_large")
    assert str(MAX_BODY_BYTES) in error["message"]


def test_a_body_over_djangos_upload_limit_is_400_too(api: APIClient, settings: Any) -> None:
    body = json.dumps(price_config(**{f"unknown_key_{i}": i for i in range(150_000)}))
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = api.post(CONFIGS, body, content_type="application/json")
    envelope(response, 400, "too_large")
    assert len(response.content) < 500


def test_many_unknown_keys_give_a_bounded_error(api: APIClient) -> None:
    document = price_config(**{f"unknown_{i}": 1 for i in range(5000)})
    response = api.post(CONFIGS, document, format="json")
    error = envelope(response, 400, "invalid")
    assert len(error["details"]) == MAX_LISTED_ERRORS and error["omitted"] == 5000 - MAX_LISTED_ERRORS
    assert len(response.content) < 20_000


# --- ids -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1.0", "-1", "99999999999999999999999"])
def test_config_id_must_be_an_ascii_integer(api: APIClient, value: str) -> None:
    error = envelope(api.get(API + "historical/greeks/" + OPTION, {"config_id": value}), 400, "bad_parameter")
    assert error["field"] == "config_id"


@pytest.mark.parametrize("path", ["configs/\u00b2/", "configs/abc/", "configs/99999999999999999999999/",
                                  "functions/1.5/", "configs/-1/revisions/"])
def test_bad_ids_in_paths_are_json_404(api: APIClient, path: str) -> None:
    envelope(api.get(API + path), 404, "not_found")


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=501", "offset=-1", "offset=x", "limit=\u00b2"])
def test_limit_and_offset_of_the_wrong_type_are_400(api: APIClient, query: str) -> None:
    error = envelope(api.get(CONFIGS + "?" + query), 400, "bad_parameter")
    assert error["field"] == query.split("=")[0]


# --- every error is JSON ---------------------------------------------------------------------------------------------
def test_a_client_that_accepts_no_json_gets_a_json_406(api: APIClient) -> None:
    envelope(api.get(CONFIGS, HTTP_ACCEPT="text/html"), 406, "not_acceptable")


def test_unknown_routes_are_json_404(api: APIClient) -> None:
    envelope(api.get("/api/v2/nothing-here"), 404, "not_found")
    envelope(APIClient().get("/no/such/page"), 404, "not_found")


def test_an_unexpected_error_is_a_json_500_and_logged(api: APIClient, monkeypatch: Any, caplog: Any) -> None:
    from configs.api import views

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "represent_config", broken)
    create_config(price_config("one"))
    error = envelope(api.get(CONFIGS), 500, "server_error")
    assert "a bug" not in error["message"] and "a bug" in caplog.text


# --- the schema tells the truth --------------------------------------------------------------------------------------
def test_empty_patch_is_400(api: APIClient) -> None:
    created = api.post(FUNCTIONS, {"name": "fn", "function_name": "f",
                                   "source": "def f(tick, bars, params):\n    return {}\n"}, format="json")
    assert created.status_code == 201, created.json()
    envelope(api.patch(f"{FUNCTIONS}{created.json()['id']}/", {}, format="json"), 400, "bad_parameter")
    config = create_config(price_config("patched"))
    envelope(api.patch(f"{CONFIGS}{config.pk}/", {}, format="json"), 400, "bad_parameter")


def test_the_schema_documents_every_error_status_in_the_envelope() -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"400", "401", "406", "429", "503"} | ({"403"} if method in ("post", "put", "patch", "delete") else set())
            expected |= {"404"} if "{" in path else set()
            expected |= {"415"} if "requestBody" in operation else set()
            assert expected <= set(responses), (method, path, sorted(responses))
            for status in expected:
                assert responses[status]["content"]["application/json"]["schema"] == \
                    {"$ref": "#/components/schemas/Error"}
            if "requestBody" in operation:
                assert set(operation["requestBody"]["content"]) == {"application/json"}, (method, path)
    for name in ("limit", "offset"):
        parameter = next(p for p in schema["paths"]["/api/v2/signals/configs/"]["get"]["parameters"]
                         if p["name"] == name)
        assert parameter["schema"]["type"] == "integer"
    moneyness = schema["components"]["schemas"]["ConfigDocument"]["properties"]["moneyness"]
    assert "nullable" not in json.dumps(moneyness)


@pytest.mark.parametrize("expiry", ["0001-01-01", "9999-12-31", "1969-12-31"])
def test_expiries_outside_the_documented_range_are_400(api: APIClient, expiry: str) -> None:
    for route in ("option-chain/NSE@NIFTY@index", "realtime/moneyness/NSE@NIFTY@index/atm-iv",
                  "realtime/moneyness/NSE@NIFTY@index/greeks/ATM"):
        error = envelope(api.get(API + route, {"expiry_date": expiry}), 400, "bad_parameter")
        assert error["field"] == "expiry_date"
    document = price_config(moneyness={"underlying": "NSE@NIFTY@index", "expiry": expiry, "levels": ["ATM"]})
    assert envelope(api.post(CONFIGS, document, format="json"), 400, "invalid")["field"] == "moneyness.expiry"
