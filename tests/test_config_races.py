"""Concurrent changes of one config, in real threads against the real database (issue 17): PATCH, PATCH and
DELETE of the same config serialise on its row lock, so each answers 200, 204, 404 or 409, never 500, and the
revision history stays whole."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from configs.models import ConfigRevision, ExternalFunction, SignalConfig
from tests.factories import create_config, price_config

pytestmark = pytest.mark.django_db(transaction=True)
CONFIGS = "/api/v2/signals/configs/"
ROUNDS = 12


def race(calls: list[Callable[[APIClient], Any]], token: str) -> list[int]:
    """Run each call in its own thread (own client, own database connection), released together."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(i: int) -> None:
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            barrier.wait(timeout=10)
            statuses[i] = calls[i](client).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_patch_patch_delete_of_one_config_never_500(make_token: Any) -> None:
    token = make_token(scope="signals:write")
    outcomes: set[tuple[int, ...]] = set()
    for round_ in range(ROUNDS):
        config = create_config(price_config(f"raced-{round_}"))
        url = f"{CONFIGS}{config.pk}/"
        statuses = race([
            lambda c, url=url: c.patch(url, {"description": "first"}, format="json"),
            lambda c, url=url: c.patch(url, {"interval": "5m"}, format="json"),
            lambda c, url=url: c.delete(url),
        ], token)
        outcomes.add(tuple(statuses))
        assert statuses[0] in (200, 404) and statuses[1] in (200, 404) and statuses[2] == 204, statuses
        assert not SignalConfig.objects.filter(pk=config.pk).exists()
        history = list(ConfigRevision.objects.filter(config_name=config.name).order_by("revision"))
        applied = sum(1 for status in statuses[:2] if status == 200)
        assert [r.action for r in history] == ["create", *["update"] * applied, "delete"]
        assert [r.revision for r in history] == list(range(1, applied + 3))  # none lost, none twice
    assert len(outcomes) >= 1


def test_concurrent_patches_apply_one_after_the_other(make_token: Any) -> None:
    token = make_token(scope="signals:write")
    config = create_config(price_config("merged"))
    url = f"{CONFIGS}{config.pk}/"
    statuses = race([
        lambda c, url=url: c.patch(url, {"description": "from the first"}, format="json"),
        lambda c, url=url: c.patch(url, {"interval": "15m"}, format="json"),
        lambda c, url=url: c.patch(url, {"version": "2.0"}, format="json"),
    ], token)
    assert statuses == [200, 200, 200]
    config.refresh_from_db()
    # each PATCH merged into the document as the one before left it: no change lost
    assert (config.config["description"], config.interval, config.version) == ("from the first", "15m", "2.0")
    assert config.revision == 4


def test_two_deletes_give_one_204_and_one_404(make_token: Any) -> None:
    token = make_token(scope="signals:write")
    for round_ in range(ROUNDS // 2):
        config = create_config(price_config(f"twice-{round_}"))
        url = f"{CONFIGS}{config.pk}/"
        assert sorted(race([lambda c, url=url: c.delete(url), lambda c, url=url: c.delete(url)], token)) == [204, 404]


def test_two_creates_of_one_name_give_201_and_a_refusal(make_token: Any) -> None:
    token = make_token(scope="signals:write")
    for round_ in range(ROUNDS // 2):
        document = price_config(f"same-name-{round_}")
        statuses = sorted(race([lambda c, document=document: c.post(CONFIGS, document, format="json")] * 2, token))
        assert statuses[0] == 201 and statuses[1] in (400, 409), statuses
        assert SignalConfig.objects.filter(name=document["name"]).count() == 1


def test_a_function_patched_while_deleted_is_not_recreated(make_token: Any) -> None:
    token = make_token(scope="signals:write")
    source = "def f(tick, bars, params):\n    return {}\n"
    for round_ in range(ROUNDS // 2):
        function = ExternalFunction(name=f"fn-{round_}", function_name="f", source=source)
        function.save()
        url = f"/api/v2/signals/functions/{function.pk}/"
        statuses = race([lambda c, url=url: c.patch(url, {"description": "x"}, format="json"), lambda c, url=url: c.delete(url)],
                        token)
        assert statuses[0] in (200, 404) and statuses[1] == 204, statuses
        assert not ExternalFunction.objects.filter(pk=function.pk).exists()
