"""Every kind of invalid config is refused with the failing field named: by the validator, the model, the admin
form, the API and the config stream (issue 4 §1)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from configs.stream import ConfigStreamConsumer, ConfigStreamSettings
from configs.validation import ConfigError, validate_config

pytestmark = pytest.mark.django_db

VALID: dict[str, Any] = {
    "name": "valid-config", "version": "1.0", "instrument_key": "NSE@NIFTY@index", "interval": "5m",
    "frequency": "every_tick", "internal_functions": [{"name": "price", "parameters": {}}],
}


def with_(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is _DROP:
            document.pop(key, None)
        else:
            document[key] = value
    return document


_DROP = object()

# (case id, document, the field path that must be named)
INVALID = [
    ("unknown-field", with_(colour="red"), "colour"),
    ("missing-name", with_(name=_DROP), "name"),
    ("bad-name", with_(name="bad name!"), "name"),
    ("missing-instrument", with_(instrument_key=_DROP), "instrument_key"),
    ("bad-instrument-product", with_(instrument_key="NSE@NIFTY@bonds"), "instrument_key"),
    ("bad-instrument-pattern", with_(instrument_key="NSE@NI*FTY@index"), "instrument_key"),
    ("bad-option-key", with_(instrument_key="NSE@NIFTY@options@2025-06-26@XX@24000"), "instrument_key"),
    ("bad-interval", with_(interval="7x"), "interval"),
    ("interval-too-long", with_(interval="custom_2000"), "interval"),
    ("bad-frequency", with_(frequency="sometimes"), "frequency"),
    ("bad-cron", with_(frequency="61 * * * *"), "frequency"),
    ("bad-weekly", with_(frequency="weekly@XYZ@10:00"), "frequency"),
    ("bad-daily-time", with_(frequency="daily@25:00"), "frequency"),
    ("unknown-indicator", with_(technical_indicators=[{"name": "not_an_indicator"}]), "technical_indicators[0].name"),
    ("unknown-indicator-parameter", with_(technical_indicators=[{"name": "rsi", "parameters": {"lenght": 14}}]),
     "technical_indicators[0].parameters.lenght"),
    ("bad-indicator-value", with_(technical_indicators=[{"name": "rsi", "parameters": {"length": -3}}]),
     "technical_indicators[0].parameters.length"),
    ("unknown-internal-function", with_(internal_functions=[{"name": "nope"}]), "internal_functions[0].name"),
    ("bad-internal-parameter", with_(internal_functions=[{"name": "zscore", "parameters": {"length": "x"}}]),
     "internal_functions[0].parameters.length"),
    ("unknown-internal-parameter", with_(internal_functions=[{"name": "zscore", "parameters": {"foo": 1}}]),
     "internal_functions[0].parameters.foo"),
    ("duplicate-result-name", with_(internal_functions=[{"name": "price"}, {"name": "price"}]),
     "internal_functions[1].name"),
    ("unknown-external-function", with_(external_functions=[{"name": "never-uploaded"}]),
     "external_functions[0].name"),
    ("external-timeout-out-of-range", with_(external_functions=[{"name": "never-uploaded", "timeout": 1000}]),
     "external_functions[0].timeout"),
    ("external-memory-out-of-range", with_(external_functions=[{"name": "x", "memory_limit_mb": 2}]),
     "external_functions[0].memory_limit_mb"),
    ("bad-greeks-model", with_(instrument_key="NSE@NIFTY@options@*", option_greeks={"model": "bs"}),
     "option_greeks.model"),
    ("unknown-greeks-field", with_(instrument_key="NSE@NIFTY@options@*", option_greeks={"colour": 1}),
     "option_greeks.colour"),
    ("greeks-on-an-index", with_(option_greeks={"enabled": True}), "option_greeks.enabled"),
    ("bad-greeks-price-field", with_(instrument_key="NSE@NIFTY@options@*", option_greeks={"price_fields": ["vwap"]}),
     "option_greeks.price_fields[0]"),
    ("bad-moneyness-level", with_(moneyness={"underlying": "NSE@NIFTY@index", "levels": ["ATMX"]}),
     "moneyness.levels[0]"),
    # the views refuse these, so the config must too
    ("zero-step-moneyness-level", with_(moneyness={"underlying": "NSE@NIFTY@index", "levels": ["ATM", "OTM0"]}),
     "moneyness.levels[1]"),
    ("zero-delta-moneyness-level", with_(moneyness={"underlying": "NSE@NIFTY@index", "levels": ["D0"]}),
     "moneyness.levels[0]"),
    ("bad-moneyness-underlying", with_(moneyness={"underlying": "NIFTY", "levels": ["ATM"]}), "moneyness.underlying"),
    ("unknown-output-field", with_(output={"kafka": True}), "output.kafka"),
    ("bad-output-ttl", with_(output={"cache_ttl_seconds": -1}), "output.cache_ttl_seconds"),
    ("no-computation", with_(internal_functions=[]), "config"),
]
IDS = [case[0] for case in INVALID]


def fields_of(exc: ConfigError) -> list[str]:
    return [field for field, _ in exc.errors]


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=IDS)
def test_validator_names_the_field(case: str, document: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from configs.models import external_function_exists

        validate_config(document, function_exists=external_function_exists)
    assert field in fields_of(caught.value), caught.value.errors


def test_valid_config_is_normalised_with_defaults() -> None:
    document = validate_config(with_(instrument_key="nse@nifty@equity_options@26-JUN-2025@*", interval="5minute",
                                     frequency="DAILY@09:20", option_greeks={}))
    assert document["instrument_key"] == "NSE@NIFTY@options@2025-06-26@*"
    assert document["interval"] == "5m"
    assert document["frequency"] == "daily@09:20"
    assert document["option_greeks"]["enabled"] is True  # a given section is on unless it says otherwise
    assert document["output"]["cache_ttl_seconds"] == 300
    assert document["enabled"] is True


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=IDS)
def test_model_refuses_with_the_field(case: str, document: dict, field: str) -> None:
    from configs.models import ConfigRevision, SignalConfig

    config = SignalConfig(name=document.get("name") or "", config=document)
    with pytest.raises(ValidationError) as caught:
        config.full_clean()
    messages = caught.value.message_dict["config"]
    assert any(m.startswith(f"{field}: ") for m in messages), messages
    with pytest.raises(ConfigError):
        config.save()
    assert SignalConfig.objects.count() == 0 and ConfigRevision.objects.count() == 0


@pytest.fixture
def admin_client(client: Any) -> Any:
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    return client


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=IDS)
def test_admin_change_form_shows_the_field_inline(case: str, document: dict, field: str, admin_client: Any) -> None:
    from configs.models import SignalConfig
    from tests.factories import create_config

    config = create_config(copy.deepcopy(VALID))
    # An edit keeps the config's name when the document leaves it out, so a missing name is a case for the add form.
    url = "/admin/configs/signalconfig/add/" if case == "missing-name" else \
        f"/admin/configs/signalconfig/{config.pk}/change/"
    response = admin_client.post(url, {"config": json.dumps(document), "enabled": "on",
                                       "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 200  # the form again, not a redirect and not a 500
    errors = response.context["adminform"].form.errors
    assert any(m.startswith(f"{field}: ") for m in errors.get("config", [])), errors
    assert f"{field}: ".encode() in response.content or field.encode() in response.content
    stored = SignalConfig.objects.get(pk=config.pk)
    assert stored.revision == 1 and stored.config["internal_functions"] == [{"name": "price", "parameters": {}}]


def test_admin_add_form_refuses_a_taken_name(admin_client: Any) -> None:
    from tests.factories import create_config

    create_config(copy.deepcopy(VALID))
    response = admin_client.post("/admin/configs/signalconfig/add/", {
        "config": json.dumps(VALID), "enabled": "on", "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 200
    assert any("already exists" in m for m in response.context["adminform"].form.errors["config"])


def test_admin_form_refuses_malformed_json(admin_client: Any) -> None:
    response = admin_client.post("/admin/configs/signalconfig/add/", {
        "config": "{not json", "enabled": "on", "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 200
    assert "config" in response.context["adminform"].form.errors


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=IDS)
def test_api_refuses_with_the_field(case: str, document: dict, field: str, auth_client: Any) -> None:
    from configs.models import SignalConfig

    response = auth_client.post("/api/v2/signals/configs/", document, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"], error
    if field != "config":
        assert error["field"] == next(iter(error["details"]))
    assert SignalConfig.objects.count() == 0


def test_api_reports_the_first_failing_field_and_all_of_them(auth_client: Any) -> None:
    document = with_(interval="7x", frequency="sometimes", colour="red")
    error = auth_client.post("/api/v2/signals/configs/", document, format="json").json()["error"]
    assert error["field"] == "colour"  # unknown fields are reported first
    assert set(error["details"]) == {"colour", "interval", "frequency"}
    assert "sometimes" in error["details"]["frequency"][0]


@pytest.mark.parametrize(("case", "document", "field"), INVALID, ids=IDS)
def test_stream_dead_letters_with_the_field(case: str, document: dict, field: str, r: Any) -> None:
    from configs.models import SignalConfig

    settings = ConfigStreamSettings.from_django()
    consumer = ConfigStreamConsumer(r, settings, consumer="validation")
    consumer.ensure_group()
    r.xadd(settings.stream, {"config_json": json.dumps(document), "action": "create"})
    (outcome,) = consumer.step()
    assert outcome.status == "dead"
    ((_, dead),) = r.xrange(settings.dead_letter_stream)
    reason = dead[b"error"].decode()
    assert f"config_json.{field}: " in reason, reason
    assert json.loads(dead[b"config_json"]) == document  # the original message is kept
    assert r.xpending(settings.stream, settings.group)["pending"] == 0
    assert SignalConfig.objects.count() == 0
