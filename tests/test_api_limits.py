"""Per-kind rates, tier quotas, usage records and compressed answers (issue 18), counted in the real Redis."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import brotli
import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from faults.redis_cluster import key_slot
from feed import keys
from webapi.checks import signal_settings
from webapi.compression import accepted

pytestmark = pytest.mark.django_db
API = "/api/v2/signals"
PRICE = f"{API}/realtime/price/NSE@NIFTY@index"
BARS = f"{API}/historical/bars/NSE@NIFTY@index?timeframe=1m"
# fixed windows: a day's does not turn over while a test runs
DAY_RATES = {"SIGNAL_API_RATE_REALTIME": "100/day", "SIGNAL_API_RATE_HISTORICAL": "100/day",
             "SIGNAL_API_RATE_WRITES": "100/day", "SIGNAL_API_RATE_OTHER": "100/day"}


@pytest.fixture
def client_for(make_token: Callable[..., str]) -> Callable[..., APIClient]:
    def make(sub: str, **claims: Any) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub=sub, scope='signals:write', **claims)}")
        return client

    return make


def test_each_kind_has_its_own_rate_per_user(settings: Any, client_for: Any) -> None:
    for name, value in {**DAY_RATES, "SIGNAL_API_RATE_HISTORICAL": "2/day"}.items():
        setattr(settings, name, value)
    alice, bob = client_for("alice"), client_for("bob")
    codes = [alice.get(BARS).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    refused = alice.get(BARS)
    error = refused.json()["error"]
    assert error["code"] == "throttled" and "SIGNAL_API_RATE_HISTORICAL" in error["message"]
    assert error["limit"]["kind"] == "historical" and error["limit"]["limit"] == 2
    assert error["limit"]["period_s"] == 86400 and 0 < int(refused["Retry-After"]) <= 86400
    assert alice.get(PRICE).status_code == 404  # realtime is counted apart
    assert bob.get(BARS).status_code == 404  # another user is unaffected


def test_writes_have_their_own_rate(settings: Any, client_for: Any) -> None:
    for name, value in {**DAY_RATES, "SIGNAL_API_RATE_WRITES": "1/day"}.items():
        setattr(settings, name, value)
    writer = client_for("writer")
    assert writer.post(f"{API}/functions/", {}, format="json").status_code == 400
    refused = writer.post(f"{API}/functions/", {}, format="json")
    assert refused.status_code == 429 and refused.json()["error"]["limit"]["kind"] == "writes"
    assert writer.get(f"{API}/functions/").status_code == 200


def test_tier_quota_refuses_the_user_over_it_only_and_usage_counts_the_requests(settings: Any,
                                                                                 client_for: Any) -> None:
    for name, value in DAY_RATES.items():
        setattr(settings, name, value)
    settings.SIGNAL_TIERS = "basic=3,pro=0"
    alice, bob, carol = client_for("alice"), client_for("bob"), client_for("carol", tier="pro")
    assert [alice.get(PRICE).status_code for _ in range(2)] + [alice.get(BARS).status_code] == [404, 404, 404]
    refused = alice.get(PRICE)
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 86400
    limit = refused.json()["error"]["limit"]
    assert (limit["kind"], limit["tier"], limit["limit"]) == ("daily_quota", "basic", 3)
    assert bob.get(PRICE).status_code == 404
    assert [carol.get(PRICE).status_code for _ in range(5)] == [404] * 5  # pro: unlimited

    usage = alice.get(f"{API}/usage/").json()  # readable after the quota is used up, and not counted in it
    assert usage["tier"] == "basic" and usage["user"] == "alice"
    assert usage["usage"] == {"total": 3, "realtime": 2, "historical": 1, "writes": 0, "other": 0, "throttled": 1}
    assert usage["quota"]["requests_per_day"] == 3 and usage["quota"]["remaining"] == 0
    carol_usage = carol.get(f"{API}/usage/").json()
    assert carol_usage["tier"] == "pro" and carol_usage["usage"]["total"] == 5
    assert carol_usage["quota"]["requests_per_day"] is None
    assert client_for("dave", tier="gold").get(f"{API}/usage/").json()["tier"] == "basic"  # unknown tier
    yesterday = (date.fromisoformat(usage["date"]) - timedelta(days=1)).isoformat()
    assert alice.get(f"{API}/usage/", {"date": yesterday}).json()["usage"]["total"] == 0


def test_usage_date_errors(client_for: Any) -> None:
    alice = client_for("alice")
    for bad in ("yesterday", "2020-01-01", (date.today() + timedelta(days=3)).isoformat()):
        response = alice.get(f"{API}/usage/", {"date": bad})
        assert response.status_code == 400 and response.json()["error"]["field"] == "date"
    assert APIClient().get(f"{API}/usage/").status_code == 401


def test_large_answers_are_compressed_as_the_client_accepts(settings: Any, client_for: Any) -> None:
    client = client_for("reader")
    settings.SIGNAL_COMPRESS_MIN_BYTES = 200
    url = f"{API}/realtime/price?keys=" + ",".join(f"NSE@S{i}@equities" for i in range(40))
    plain = client.get(url)
    assert "Content-Encoding" not in plain and "Accept-Encoding" in plain["Vary"]
    expected = json.loads(plain.content)
    assert len(expected["missing"]) == 40
    br = client.get(url, HTTP_ACCEPT_ENCODING="gzip, br")
    assert br["Content-Encoding"] == "br" and json.loads(brotli.decompress(br.content)) == expected
    assert int(br["Content-Length"]) == len(br.content) < len(plain.content)
    gz = client.get(url, HTTP_ACCEPT_ENCODING="gzip;q=1.0, br;q=0")
    assert gz["Content-Encoding"] == "gzip" and json.loads(gzip.decompress(gz.content)) == expected
    small = client.get(PRICE, HTTP_ACCEPT_ENCODING="br")
    assert "Content-Encoding" not in small and small.status_code == 404
    assert accepted("gzip;q=0, deflate, *;q=0.5") == {"deflate", "*"}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"SIGNAL_API_RATE_HISTORICAL": "ten/min"}, "SIGNAL_API_RATE_HISTORICAL"),
    ({"SIGNAL_API_RATE_REALTIME": "10/fortnight"}, "SIGNAL_API_RATE_REALTIME"),
    ({"SIGNAL_TIERS": "basic"}, "SIGNAL_TIERS"),
    ({"SIGNAL_DEFAULT_TIER": "gold"}, "SIGNAL_DEFAULT_TIER"),
    ({"SIGNAL_TIER_CLAIM": " "}, "SIGNAL_TIER_CLAIM"),
    ({"SIGNAL_API_MAX_KEYS": 0}, "SIGNAL_API_MAX_KEYS"),
    ({"SIGNAL_READ_LANE_THREADS": 0}, "SIGNAL_READ_LANE_THREADS"),
])
def test_bad_limit_settings_stop_start_up_naming_the_setting(overrides: dict[str, Any], field: str) -> None:
    with override_settings(**overrides):
        messages = [e.msg for e in signal_settings(None) if e.id.startswith("signals.E")]
    assert any(message.startswith(field + ":") for message in messages), messages


@pytest.mark.parametrize("sub", ["trader-1", "}odd", "a}b", "{braced}", "a{b"])
def test_a_users_rate_and_usage_keys_share_a_slot_whatever_the_name(sub: str) -> None:
    # one script counts both (a cluster refuses keys of two slots in one call)
    assert key_slot(keys.rate_window(sub, "realtime", 60, 1)) == key_slot(keys.usage(sub, "2026-12-07"))


def test_a_user_named_with_braces_is_counted(settings: Any, client_for: Any) -> None:
    settings.SIGNAL_API_RATE_REALTIME = "2/day"
    client = client_for("}odd")
    assert [client.get(PRICE).status_code for _ in range(3)] == [404, 404, 429]
    assert client.get(f"{API}/usage/").json()["usage"]["throttled"] == 1
