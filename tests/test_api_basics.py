"""REST auth, JSON errors, throttling, operational endpoints and start-up checks."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from feed import keys
from signal_project.env import env_bool, env_int, env_map
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.monitoring.streams import collect_stream_metrics
from signals.pipeline.batch import process_batch
from tests.factories import normalised, tick
from webapi.checks import signal_settings

pytestmark = pytest.mark.django_db
PRICE = "/api/v2/signals/realtime/price/"


def test_health_needs_no_token() -> None:
    response = APIClient().get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_checks_database_redis_and_broker() -> None:
    body = APIClient().get("/ready").json()
    assert body == {"status": "ready", "down": [], "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}


def test_ready_reports_an_unreachable_broker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = APIClient().get("/ready")
    assert response.status_code == 503 and response.json()["checks"]["broker"].startswith("unreachable")
    assert response.json()["down"] == ["broker"] and int(response["Retry-After"]) > 0


def test_metrics_expose_pipeline_and_stream_figures(r: Any, monkeypatch: Any) -> None:
    r.xadd("tick_stream:NSE@NIFTY", {"data": "{}"})
    assert StreamBridge(r, BridgeSettings.from_django(), consumer="metrics").discover()  # joins with its group
    r.xadd("tick_stream:NSE@NIFTY", {"data": "{}"})
    process_batch([normalised(tick(), "tick_stream:NSE@NIFTY/1-0")])

    def no_scan(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the metrics read the bridges' list of streams; they never scan the keyspace")

    monkeypatch.setattr(redis.Redis, "scan", no_scan)
    monkeypatch.setattr(redis.Redis, "scan_iter", no_scan)
    r.sadd(keys.tick_streams(), "tick_stream:deleted")  # a stream read once and deleted since
    collect_stream_metrics()
    monkeypatch.undo()
    assert r.smembers(keys.tick_streams()) == {b"tick_stream:NSE@NIFTY"}
    text = APIClient().get("/metrics").content.decode()
    assert "signal_batch_processing_seconds_bucket" in text
    assert "signal_ticks_processed_total" in text
    assert "signal_websocket_connections" in text
    assert 'signal_stream_lag{stream="tick_stream:NSE@NIFTY"} 2.0' in text
    assert 'signal_celery_queue_length{queue="signals"} 0.0' in text


def test_api_needs_a_token_and_answers_json_errors(make_token: Any) -> None:
    response = APIClient().get(PRICE + "NSE@NIFTY@index")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(ttl=-5)}")
    response = client.get(PRICE + "NSE@NIFTY@index")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 401


def test_a_token_accepted_before_is_refused_once_it_expires_or_its_key_changes(settings: Any, monkeypatch: Any,
                                                                                make_token: Any) -> None:
    process_batch([normalised(tick(), "s/1-0")])
    token = make_token(ttl=30)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200  # verified once, kept
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 31)
    response = client.get(PRICE + "NSE@NIFTY@index")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
    monkeypatch.undo()
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200
    settings.SIGNAL_JWT_SECRET = "another-secret-0123456789abcdef0123456789"
    response = client.get(PRICE + "NSE@NIFTY@index")
    assert response.status_code == 401 and "signature" in response.json()["error"]["message"].lower()
    as_text = jwt.encode({"sub": "trader-2", "exp": str(int(time.time()) + 60)}, settings.SIGNAL_JWT_SECRET)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {as_text}")  # PyJWT takes an exp that int() reads
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200


def test_issuer_and_audience_are_checked_when_configured(settings: Any, make_token: Any) -> None:
    settings.SIGNAL_JWT_ISSUER = "platform"
    settings.SIGNAL_JWT_AUDIENCE = "signals"
    client = APIClient()
    process_batch([normalised(tick(), "s/1-0")])
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token()}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(iss='platform', aud='signals')}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(iss='other', aud='signals')}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 401


def test_rs256_tokens_verify_against_the_public_key(settings: Any, tmp_path: Any) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    settings.SIGNAL_JWT_PUBLIC_KEY = str(tmp_path / "pub.pem")
    process_batch([normalised(tick(), "s/1-0")])
    token = jwt.encode({"sub": "svc", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 200
    hs = jwt.encode({"sub": "svc", "exp": int(time.time()) + 60}, settings.SIGNAL_JWT_SECRET, algorithm="HS256")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {hs}")
    assert client.get(PRICE + "NSE@NIFTY@index").status_code == 401


def test_realtime_price(auth_client: Any) -> None:
    process_batch([normalised(tick(ltp=24100.5, volume=10, oi=0), "s/1-0")])
    body = auth_client.get(PRICE + "nse@nifty@INDEX").json()
    assert body["instrument_key"] == "NSE@NIFTY@index" and body["ltp"] == 24100.5 and body["volume"] == 10
    assert body["timestamp"] == "2025-06-20T04:00:00+00:00"


def test_bad_key_is_400_and_unknown_instrument_is_404(auth_client: Any) -> None:
    response = auth_client.get(PRICE + "NSE@NIFTY")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "bad_parameter", "field": "instrument_key",
                                         "message": response.json()["error"]["message"]}
    response = auth_client.get(PRICE + "NSE@UNSEEN@index")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_per_user_throttle(make_token: Any, settings: Any) -> None:
    settings.SIGNAL_API_RATE_REALTIME = "3/day"  # fixed windows: a day's does not turn over during the test
    alice, bob = APIClient(), APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub='alice')}")
    bob.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub='bob')}")
    codes = [alice.get(PRICE + "NSE@NIFTY@index").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    assert json.loads(alice.get(PRICE + "NSE@NIFTY@index").content)["error"]["code"] == "throttled"
    assert bob.get(PRICE + "NSE@NIFTY@index").status_code == 404


def test_openapi_schema_is_served_locally() -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/v2/signals/realtime/price/{instrument_key}" in response.json()["paths"]
    docs = APIClient().get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()


def test_missing_jwt_secret_fails_the_system_check(settings: Any) -> None:
    settings.SIGNAL_JWT_SECRET = ""
    errors = signal_settings(None)
    assert any("SIGNAL_JWT_SECRET" in e.msg for e in errors)
    settings.SIGNAL_JWT_SECRET = "x" * 40
    settings.REDIS_URL = "http://nope"
    assert [e.msg for e in signal_settings(None) if e.is_serious()] == ["REDIS_URL must be a redis:// URL, got 'http://nope'"]


def test_the_broker_may_be_redis_or_rabbitmq_and_nothing_else(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    assert not [e for e in signal_settings(None) if e.is_serious()]
    settings.CELERY_BROKER_URL = "sqs://queue"
    assert [e.msg for e in signal_settings(None) if e.is_serious()] == [
        "CELERY_BROKER_URL must be a redis:// or amqp:// URL, got 'sqs://queue'"]


def test_bad_environment_values_are_refused_naming_the_variable(monkeypatch: Any) -> None:
    monkeypatch.setenv("SIGNAL_BATCH_SIZE", "lots")
    with pytest.raises(ImproperlyConfigured, match="SIGNAL_BATCH_SIZE"):
        env_int("SIGNAL_BATCH_SIZE", 1)
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG", False)
    monkeypatch.setenv("SIGNAL_QUEUE_ROUTES", "NSE@NIFTY")
    with pytest.raises(ImproperlyConfigured, match="SIGNAL_QUEUE_ROUTES"):
        env_map("SIGNAL_QUEUE_ROUTES", {})
    monkeypatch.setenv("SIGNAL_QUEUE_ROUTES", "NSE@NIFTY=nifty, NSE@BANKNIFTY=bank")
    assert env_map("SIGNAL_QUEUE_ROUTES", {}) == {"NSE@NIFTY": "nifty", "NSE@BANKNIFTY": "bank"}
