"""Configs and external functions over REST: CRUD, scopes, revisions, filters, schedule sync, OpenAPI."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import price_config

pytestmark = pytest.mark.django_db
CONFIGS = "/api/v2/signals/configs/"
FUNCTIONS = "/api/v2/signals/functions/"
GOOD_SOURCE = "def signal(tick, bars, params):\n    return {'value': tick['ltp'] * params.get('k', 1)}\n"


def test_config_crud_records_author_revisions_and_schedule(auth_client: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from configs.models import ConfigRevision

    created = auth_client.post(CONFIGS, price_config("api-config", frequency="every_minute"), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["name"] == "api-config" and body["revision"] == 1 and body["updated_by"] == "trader-1"
    assert body["instrument_key"] == "NSE@NIFTY@*" and body["frequency"] == "every_minute"
    assert body["schedule"]["kind"] == "interval" and body["schedule"]["beat_entry"] == "signal-configs:every-60s"
    assert body["schedule"]["next_run_at"] is not None
    assert body["last_run"] == {"at": None, "status": "", "error": "", "records": 0}
    assert body["config"]["output"]["cache_ttl_seconds"] == 300  # defaults filled in
    assert PeriodicTask.objects.filter(name="signal-configs:every-60s", enabled=True).exists()
    url = f"{CONFIGS}{body['id']}/"

    assert auth_client.get(url).json()["config"] == body["config"]

    changed = price_config("api-config", frequency="daily@09:20", interval="15m")
    updated = auth_client.put(url, changed, format="json")
    assert updated.status_code == 200, updated.json()
    assert updated.json()["revision"] == 2 and updated.json()["interval"] == "15m"
    assert not PeriodicTask.objects.filter(name="signal-configs:every-60s").exists()
    assert PeriodicTask.objects.get(name="signal-configs:cron-20_9_x_x_x").crontab.hour == "9"

    patched = auth_client.patch(url, {"enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert patched.json()["config"]["interval"] == "15m"  # the rest is kept
    assert not PeriodicTask.objects.filter(name__startswith="signal-configs:").exists()

    history = auth_client.get(url + "revisions/").json()
    assert [(h["revision"], h["action"]) for h in history["results"]] == [(3, "update"), (2, "update"),
                                                                          (1, "create")]
    assert history["results"][2]["document"]["frequency"] == "every_minute"

    assert auth_client.delete(url).status_code == 204
    assert auth_client.get(url).status_code == 404
    assert auth_client.get(url).json()["error"]["code"] == "not_found"
    deletion = ConfigRevision.objects.get(config_name="api-config", action="delete")
    assert deletion.revision == 4 and deletion.changed_by == "trader-1" and deletion.config is None


def test_invalid_update_leaves_the_config_as_it_was(auth_client: Any) -> None:
    config_id = auth_client.post(CONFIGS, price_config("keep-me"), format="json").json()["id"]
    response = auth_client.put(f"{CONFIGS}{config_id}/", price_config("keep-me", interval="99x"), format="json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "interval"
    body = auth_client.get(f"{CONFIGS}{config_id}/").json()
    assert body["revision"] == 1 and body["interval"] == "1m"


def test_name_clash_and_non_object_bodies_are_400(auth_client: Any) -> None:
    assert auth_client.post(CONFIGS, price_config("twice"), format="json").status_code == 201
    again = auth_client.post(CONFIGS, price_config("twice"), format="json")
    assert again.status_code == 400 and again.json()["error"]["field"] == "name"
    as_list = auth_client.post(CONFIGS, [1, 2], format="json")
    assert as_list.status_code == 400 and as_list.json()["error"]["field"] == "config"
    malformed = auth_client.generic("POST", CONFIGS, "{oops", content_type="application/json")
    assert malformed.status_code == 400 and "error" in malformed.json()


def test_writes_need_the_write_scope_and_reads_a_token(make_token: Any) -> None:
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scope='signals:read')}")
    refused = reader.post(CONFIGS, price_config(), format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert reader.post(FUNCTIONS, {"name": "f", "source": GOOD_SOURCE, "function_name": "signal"},
                       format="json").status_code == 403
    assert reader.get(CONFIGS).status_code == 200
    assert APIClient().get(CONFIGS).status_code == 401


def test_list_filters(auth_client: Any) -> None:
    auth_client.post(CONFIGS, price_config("chain", "NSE@NIFTY@options@2025-06-26@*"), format="json")
    auth_client.post(CONFIGS, price_config("spot", "NSE@NIFTY@index", frequency="every_minute"), format="json")
    bank = auth_client.post(CONFIGS, price_config("bank", "NSE@BANKNIFTY@*"), format="json").json()
    auth_client.patch(f"{CONFIGS}{bank['id']}/", {"enabled": False}, format="json")

    def names(query: str) -> list[str]:
        response = auth_client.get(CONFIGS + query)
        assert response.status_code == 200, response.json()
        return [c["name"] for c in response.json()["results"]]

    assert names("") == ["bank", "chain", "spot"]
    assert names("?enabled=true") == ["chain", "spot"]
    assert names("?enabled=false") == ["bank"]
    assert names("?frequency=every_minute") == ["spot"]
    assert names("?instrument_key=NSE@NIFTY@options@2025-06-26@call@24000") == ["chain"]
    assert names("?instrument_key=nse@nifty@equity_options@26-JUN-2025@*") == ["chain"]
    assert names("?search=BANK") == ["bank"]
    assert auth_client.get(CONFIGS + "?limit=1").json()["count"] == 3
    bad = auth_client.get(CONFIGS + "?instrument_key=NSE@NIFTY@bonds")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "instrument_key"
    assert auth_client.get(CONFIGS + "?enabled=maybe").json()["error"]["field"] == "enabled"


def test_function_upload_update_and_delete(auth_client: Any) -> None:
    created = auth_client.post(FUNCTIONS, {"name": "my_signal", "source": GOOD_SOURCE, "function_name": "signal",
                                           "description": "ltp times k"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["version"] == 1 and len(body["source_hash"]) == 64 and body["updated_by"] == "trader-1"
    url = f"{FUNCTIONS}{body['id']}/"

    config = price_config("uses-it", external_functions=[{"name": "my_signal", "parameters": {"k": 2}}])
    assert auth_client.post(CONFIGS, config, format="json").status_code == 201
    assert auth_client.get(url).json()["used_by"] == ["uses-it"]
    listed = auth_client.get(FUNCTIONS).json()["results"]
    assert listed[0]["name"] == "my_signal" and "source" not in listed[0]

    new_source = GOOD_SOURCE.replace("* params", "* 3 * params")
    updated = auth_client.patch(url, {"source": new_source}, format="json").json()
    assert updated["version"] == 2 and updated["source_hash"] != body["source_hash"]
    same = auth_client.patch(url, {"description": "changed words only"}, format="json").json()
    assert same["version"] == 2

    rename = auth_client.patch(url, {"name": "renamed"}, format="json")
    assert rename.status_code == 409 and rename.json()["error"] == {
        "code": "in_use", "message": "cannot rename 'my_signal': used by configs uses-it", "field": "name"}
    in_use = auth_client.delete(url)
    assert in_use.status_code == 409 and in_use.json()["error"]["field"] == "name"

    config_id = auth_client.get(CONFIGS).json()["results"][0]["id"]
    assert auth_client.delete(f"{CONFIGS}{config_id}/").status_code == 204
    assert auth_client.delete(url).status_code == 204
    assert auth_client.get(url).status_code == 404


@pytest.mark.parametrize(("source", "function_name", "field", "fragment"), [
    ("import os\ndef f(tick, bars, params):\n    return {}\n", "f", "source", 'import of "os"'),
    ("def f(tick, bars, params):\n    return open('/etc/passwd').read()\n", "f", "source", "open"),
    ("def f(tick, bars, params)\n    return {}\n", "f", "source", "Line 1"),
    ("def g(tick, bars, params):\n    return {}\n", "f", "source", "f"),
    ("def f(tick, bars, params):\n    return {}\n", "not an identifier", "function_name", ""),
    ("", "f", "source", ""),
])
def test_function_upload_refused_naming_the_field(auth_client: Any, source: str, function_name: str, field: str,
                                                  fragment: str) -> None:
    from configs.models import ExternalFunction

    response = auth_client.post(FUNCTIONS, {"name": "bad", "source": source, "function_name": function_name},
                                format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field and fragment in error["message"], error
    assert ExternalFunction.objects.count() == 0


def test_invalid_function_name_and_duplicate(auth_client: Any) -> None:
    bad = auth_client.post(FUNCTIONS, {"name": "no spaces", "source": GOOD_SOURCE, "function_name": "signal"},
                           format="json")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "name"
    ok = {"name": "dup", "source": GOOD_SOURCE, "function_name": "signal"}
    assert auth_client.post(FUNCTIONS, ok, format="json").status_code == 201
    again = auth_client.post(FUNCTIONS, ok, format="json")
    assert again.status_code == 400 and again.json()["error"]["field"] == "name"


def test_config_referencing_a_function_needs_it_uploaded(auth_client: Any) -> None:
    config = price_config("ext", external_functions=[{"name": "later", "timeout": 1}])
    refused = auth_client.post(CONFIGS, config, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "external_functions[0].name"
    auth_client.post(FUNCTIONS, {"name": "later", "source": GOOD_SOURCE, "function_name": "signal"}, format="json")
    created = auth_client.post(CONFIGS, copy.deepcopy(config), format="json")
    assert created.status_code == 201
    entry = created.json()["config"]["external_functions"][0]
    assert entry["timeout"] == 1 and entry["memory_limit_mb"] == 128 and entry["parameters"] == {}


def test_openapi_documents_the_routes() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    document = schema.json() if schema["Content-Type"].startswith("application/json") else None
    if document is None:
        import yaml

        document = yaml.safe_load(schema.content)
    paths = document["paths"]
    for path in ("/api/v2/signals/configs/", "/api/v2/signals/configs/{id}/",
                 "/api/v2/signals/configs/{id}/revisions/", "/api/v2/signals/functions/",
                 "/api/v2/signals/functions/{id}/"):
        assert path in paths, sorted(paths)
    assert set(paths["/api/v2/signals/configs/{id}/"]) >= {"get", "put", "patch", "delete"}
    components = document["components"]["schemas"]
    assert "frequency" in components["ConfigDocument"]["properties"]
    assert "source" in components["ExternalFunction"]["properties"]
