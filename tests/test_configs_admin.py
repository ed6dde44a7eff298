"""The configs admin: list/filter/search, editing with a new revision, bulk enable/disable that resyncs the beat
schedule, next scheduled run and last run result, version history, external functions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from configs.models import SignalConfig
from configs.runs import stamp
from tests.factories import create_config, price_config

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/configs/signalconfig/"


@pytest.fixture
def admin_client(client: Any) -> Any:
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client


def listed(admin_client: Any, query: str = "") -> list[str]:
    response = admin_client.get(CHANGELIST + query)
    assert response.status_code == 200
    return [c.name for c in response.context["cl"].result_list]


def test_list_filter_and_search(admin_client: Any) -> None:
    create_config(price_config("chain", "NSE@NIFTY@options@*", frequency="every_minute"))
    create_config(price_config("spot", "NSE@NIFTY@index"))
    bank = create_config(price_config("bank", "NSE@BANKNIFTY@*"))
    bank.enabled = False
    bank.save()
    assert listed(admin_client) == ["bank", "chain", "spot"]
    assert listed(admin_client, "?enabled__exact=1") == ["chain", "spot"]
    assert listed(admin_client, "?frequency=every_minute") == ["chain"]
    assert listed(admin_client, "?instrument_key=NSE%40NIFTY%40index") == ["spot"]
    assert listed(admin_client, "?q=BANKNIFTY") == ["bank"]


def test_list_and_form_show_next_run_and_last_run(admin_client: Any) -> None:
    timed = create_config(price_config("timed", frequency="daily@09:20"))
    ticked = create_config(price_config("ticked"))
    stamp(ticked.pk, "error", "internal_function price: boom", 3)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "09:20:00 IST" in page  # next run of the daily schedule, in exchange time
    assert "on every tick" in page
    assert "error · 3 record(s)" in page and "boom" in page
    form = admin_client.get(f"{CHANGELIST}{timed.pk}/change/").content.decode()
    assert "signal-configs:cron-20_9_x_x_x" in form and "never" in form
    assert "Version history" in form


def test_editing_creates_a_revision_and_moves_the_schedule(admin_client: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    config = create_config(price_config("edited", frequency="every_minute"))
    document = price_config("edited", frequency="on_close", interval="15m")
    response = admin_client.post(f"{CHANGELIST}{config.pk}/change/", {
        "config": json.dumps(document), "enabled": "on",
        "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    config.refresh_from_db()
    assert (config.revision, config.interval, config.updated_by) == (2, "15m", "ops")
    assert [r.action for r in config.revisions.order_by("revision")] == ["create", "update"]
    assert set(PeriodicTask.objects.filter(name__startswith="signal-configs:").values_list("name", flat=True)) == \
        {"signal-configs:cron-30_15_x_x_1-5"}


def test_adding_through_the_admin(admin_client: Any) -> None:
    assert "my-config" in admin_client.get(CHANGELIST + "add/").content.decode()  # a starting document
    response = admin_client.post(CHANGELIST + "add/", {
        "config": json.dumps(price_config("added")), "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    assert response.status_code == 302
    added = SignalConfig.objects.get(name="added")
    assert added.enabled is False and added.config["enabled"] is False  # the unticked box wins


def test_bulk_enable_and_disable_resync_the_schedule(admin_client: Any) -> None:
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    a = create_config(price_config("a", frequency="every_minute"))
    b = create_config(price_config("b", frequency="daily@10:00"))
    before = PeriodicTasks.last_change()
    response = admin_client.post(CHANGELIST, {"action": "disable_selected", "_selected_action": [a.pk, b.pk]},
                                 follow=True)
    assert "2 config(s) disabled; beat schedule resynced." in response.content.decode()
    assert not PeriodicTask.objects.filter(name__startswith="signal-configs:").exists()
    assert PeriodicTasks.last_change() > before
    assert set(SignalConfig.objects.values_list("enabled", flat=True)) == {False}

    response = admin_client.post(CHANGELIST, {"action": "enable_selected", "_selected_action": [a.pk]}, follow=True)
    assert "1 config(s) enabled" in response.content.decode()
    assert list(PeriodicTask.objects.filter(name__startswith="signal-configs:").values_list("name", flat=True)) == \
        ["signal-configs:every-60s"]
    a.refresh_from_db()
    assert a.revision == 3 and [r.action for r in a.revisions.order_by("revision")] == ["create", "disable", "enable"]


def test_bulk_enable_refuses_a_config_that_no_longer_validates(admin_client: Any) -> None:
    from configs.models import ExternalFunction

    ExternalFunction(name="gone", function_name="signal",
                     source="def signal(tick, bars, params):\n    return {}\n").save()
    config = create_config(price_config("needs-gone", external_functions=[{"name": "gone"}]))
    config.enabled = False
    config.save()
    ExternalFunction.objects.filter(name="gone").delete()
    response = admin_client.post(CHANGELIST, {"action": "enable_selected", "_selected_action": [config.pk]},
                                 follow=True)
    assert "Needs-gone not enabled: external_functions[0].name: no uploaded" in response.content.decode()
    assert SignalConfig.objects.get(pk=config.pk).enabled is False


def test_bulk_delete_keeps_the_history_and_clears_the_schedule(admin_client: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from configs.models import ConfigRevision

    a = create_config(price_config("a", frequency="every_minute"))
    b = create_config(price_config("b", frequency="every_minute"))
    response = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [a.pk, b.pk],
                                              "post": "yes"}, follow=True)
    assert response.status_code == 200
    assert not SignalConfig.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="signal-configs:").exists()
    deletions = ConfigRevision.objects.filter(action="delete").order_by("config_name")
    assert [(d.config_name, d.changed_by) for d in deletions] == [("a", "ops"), ("b", "ops")]
    history = admin_client.get("/admin/configs/configrevision/?q=a").content.decode()
    assert "delete" in history


def test_external_function_admin_lists_users_and_protects_used_functions(admin_client: Any) -> None:
    from configs.models import ExternalFunction

    function = ExternalFunction(name="used", function_name="signal",
                                source="def signal(tick, bars, params):\n    return {'x': 1}\n")
    function.save()
    create_config(price_config("user", external_functions=[{"name": "used"}]))
    page = admin_client.get("/admin/configs/externalfunction/").content.decode()
    assert "used" in page and "user" in page
    assert admin_client.get(f"/admin/configs/externalfunction/{function.pk}/delete/").status_code == 403
    assert ExternalFunction.objects.filter(pk=function.pk).exists()
