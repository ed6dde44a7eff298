"""Uploaded (external) functions: hostile code is refused at upload or contained at run time inside the sandbox
processes, reported in the computation's error, and the pipeline carries on with the next tick (docs/REFERENCE.md §3.4)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from configs.models import ExternalFunction
from feed import keys
from signals.pipeline.batch import process_batch
from tests.factories import create_config, fields, normalised, price_config, tick
from tests.support import wait_for

SPOT = "NSE@NIFTY@index"
FUNCTIONS = "/api/v2/signals/functions/"
GOOD = "def signal(tick, bars, params):\n    return {'value': tick['ltp'] * params.get('k', 1)}\n"


def body(code: str) -> str:
    return "def signal(tick, bars, params):\n" + "".join(f"    {line}\n" for line in code.splitlines())


REFUSED_AT_UPLOAD = {
    "import-os": ("import os\n" + body("return {'cwd': os.getcwd()}"), 'import of "os" is not allowed'),
    "open": (body("return {'x': open('/etc/passwd').read()}"), '"open" is not available'),
    "dunder-import": (body("os = __import__('os')\nreturn {}"), '"__import__" is an invalid variable name'),
    "subclasses": (body("return {'n': len(().__class__.__bases__[0].__subclasses__())}"), "__subclasses__"),
    "generator-frame": (body("g = (x for x in [1])\nf = g.gi_frame.f_back\nreturn {}"), "gi_frame"),
    "huge-constant-power": (body("return {'n': 10**10**10}"), "integer power too large"),
}
# Compiles under the policy, so it is stored; each call is contained at run time.
CONTAINED_AT_RUN_TIME = {
    "str-format-escape": (body("return {'s': '{0.__class__.__mro__}'.format(tick)}"), "format"),
    "format-map-escape": (body("return {'s': '{t.gi_frame}'.format_map({'t': (x for x in [])})}"), "format"),
    "getattr-dunder": (body("return {'x': str(getattr(tick, '__class__'))}"), "is not allowed"),
    "infinite-loop": (body("while True:\n    pass"), "timed out"),
    "memory-bomb": (body("s = 'x' * 10**10\nreturn {'n': len(s)}"), "memory"),
    "deep-recursion": (body("def down(n):\n    return down(n + 1)\nreturn {'n': down(0)}"), "RecursionError"),
    "raises": (body("return {'x': 1 / 0}"), "ZeroDivisionError"),
    "bad-result": (body("return [1, 2, 3]"), "result"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(REFUSED_AT_UPLOAD))
def test_hostile_source_is_refused_at_upload(case: str, auth_client: Any) -> None:
    source, fragment = REFUSED_AT_UPLOAD[case]
    response = auth_client.post(FUNCTIONS, {"name": case, "source": source, "function_name": "signal"},
                                format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "source"
    assert any(fragment in message for message in error["details"]["source"]), error
    with pytest.raises(ValidationError) as caught:
        ExternalFunction(name=case, function_name="signal", source=source).save()
    assert "source" in caught.value.message_dict
    assert not ExternalFunction.objects.exists()


@pytest.mark.django_db
def test_admin_shows_source_errors_inline(client: Any) -> None:
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    source, _ = REFUSED_AT_UPLOAD["import-os"]
    response = client.post("/admin/configs/externalfunction/add/",
                           {"name": "evil", "function_name": "signal", "source": source, "description": ""})
    assert response.status_code == 200
    assert any('import of "os"' in m for m in response.context["adminform"].form.errors["source"])
    response = client.post("/admin/configs/externalfunction/add/",
                           {"name": "good", "function_name": "signal", "source": GOOD, "description": ""})
    assert response.status_code == 302
    stored = ExternalFunction.objects.get(name="good")
    assert stored.updated_by == "root" and stored.version == 1


def upload(name: str, source: str) -> ExternalFunction:
    function = ExternalFunction(name=name, function_name="signal", source=source)
    function.save()
    return function


def spot_batch(ltp: float, at: float, entry: int) -> list[dict[str, Any]]:
    return [normalised(tick(SPOT, ltp, at=at), f"tick_stream:NSE@NIFTY/{entry}-0")]


def newest(r: Any, config_name: str) -> dict[str, Any]:
    for raw in r.lrange(keys.output_list(SPOT), 0, -1):
        record = json.loads(raw)
        if record["config_name"] == config_name:
            return record
    raise AssertionError(f"no record of {config_name}")


@pytest.fixture(autouse=True)
def fresh_external_state() -> None:
    from signals.pipeline.computations.functions import breaker, sources

    sources.clear()
    breaker.clear()


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(CONTAINED_AT_RUN_TIME))
def test_hostile_code_is_contained_in_the_pipeline_and_the_next_tick_is_processed(case: str, r: Any) -> None:
    source, fragment = CONTAINED_AT_RUN_TIME[case]
    upload("hostile", source)
    upload("good", GOOD)
    timeout = 0.5
    create_config(price_config("hostile-config", external_functions=[
        {"name": "hostile", "timeout": timeout, "memory_limit_mb": 64},
        {"name": "good", "parameters": {"k": 2}, "timeout": 2},
    ]))
    started = time.monotonic()
    report = process_batch(spot_batch(24000, 0, 1))
    assert report.records == 1
    record = newest(r, "hostile-config")
    price, hostile, good = record["computations"]
    assert hostile["computation_type"] == "external_function" and hostile["name"] == "hostile"
    assert hostile["success"] is False and hostile["results"] is None
    assert fragment.lower() in hostile["error"].lower(), hostile["error"]
    assert hostile["execution_time_ms"] <= timeout * 1000 + 2500  # killed within its limit (plus the grace)
    assert good["success"] is True and good["results"] == {"value": 48000.0}
    assert price["success"] is True
    assert time.monotonic() - started < timeout + 10

    process_batch(spot_batch(24010, 1, 2))  # the next batch is processed as usual
    record = newest(r, "hostile-config")
    assert record["tick_data"]["ltp"] == 24010
    price, hostile, good = record["computations"]
    assert hostile["success"] is False and good["results"] == {"value": 48020.0}
    assert price["results"]["change"] == pytest.approx(10)


@pytest.mark.django_db
def test_a_killed_function_is_not_repeated_within_a_batch_and_is_suspended_after_repeated_kills(
        r: Any, settings: Any) -> None:
    settings.SIGNAL_EXTERNAL_MAX_KILLS = 2
    upload("spin", CONTAINED_AT_RUN_TIME["infinite-loop"][0])
    create_config(price_config("spin-config", external_functions=[{"name": "spin", "timeout": 0.3}]))
    ticks = [normalised(tick(SPOT, 24000 + i, at=i), f"tick_stream:NSE@NIFTY/{i + 1}-0") for i in range(5)]
    started = time.monotonic()
    process_batch(ticks)
    assert time.monotonic() - started < 5  # one timeout, not five
    errors = [json.loads(x)["computations"][1]["error"] for x in r.lrange(keys.output_list(SPOT), 0, -1)][::-1]
    assert "timed out" in errors[0]
    assert all(e.startswith("not run: an earlier call in this batch was killed") for e in errors[1:])

    process_batch([normalised(tick(SPOT, 1, at=10), "tick_stream:NSE@NIFTY/10-0")])  # second kill in a row
    process_batch([normalised(tick(SPOT, 2, at=11), "tick_stream:NSE@NIFTY/11-0")])
    latest = json.loads(r.lindex(keys.output_list(SPOT), 0))["computations"][1]
    assert latest["error"].startswith("suspended for") and latest["execution_time_ms"] == 0.0


@pytest.mark.django_db
def test_a_new_upload_takes_effect_without_a_restart(r: Any) -> None:
    from configs.registry import bump_version

    function = upload("versioned", GOOD)
    create_config(price_config("v", external_functions=[{"name": "versioned", "parameters": {"k": 1}}]))
    process_batch(spot_batch(100, 0, 1))
    assert newest(r, "v")["computations"][1]["results"] == {"value": 100.0}
    function.source = "def signal(tick, bars, params):\n    return {'value': -tick['ltp'], 'version': 2}\n"
    function.save()
    assert function.version == 2
    bump_version()  # on_commit hooks do not fire inside the test transaction
    process_batch(spot_batch(100, 1, 2))
    assert newest(r, "v")["computations"][1]["results"] == {"value": -100.0, "version": 2}


@pytest.mark.django_db
def test_functions_see_the_normalised_tick_previous_values_and_params(r: Any) -> None:
    upload("inspect", body("return {'key': tick['instrument_key'], 'prev': tick['previous']['ltp'] if "
                           "tick['previous'] else None, 'k': params['k'], 'bars': len(bars), "
                           "'has_source_id': 'source_id' in tick}"))
    create_config(price_config("inspect", external_functions=[{"name": "inspect", "parameters": {"k": "z"},
                                                               "output_key": "peek"}]))
    process_batch(spot_batch(100, 0, 1))
    process_batch(spot_batch(101, 1, 2))
    peek = newest(r, "inspect")["computations"][1]
    assert peek["name"] == "peek"
    assert peek["results"] == {"key": SPOT, "prev": 100.0, "k": "z", "bars": peek["results"]["bars"],
                               "has_source_id": False}


@pytest.mark.django_db(transaction=True)
def test_hostile_functions_in_a_real_worker_leave_it_serving(r: Any, start_worker: Any) -> None:
    from signals.ingest.bridge import BridgeSettings, StreamBridge

    upload("spin", CONTAINED_AT_RUN_TIME["infinite-loop"][0])
    upload("bomb", CONTAINED_AT_RUN_TIME["memory-bomb"][0])
    create_config(price_config("hostile", external_functions=[
        {"name": "spin", "timeout": 0.5}, {"name": "bomb", "memory_limit_mb": 32, "timeout": 2}]))
    worker = start_worker("hostile-q")
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "hostile-q"}),
                          consumer="t")
    bridge.discover()
    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 24000, at=0)))
    bridge.discover()
    bridge.handle(bridge.read())
    first = wait_for(lambda: r.lrange(keys.output_list(SPOT), 0, -1), timeout=60)
    computations = json.loads(first[0])["computations"]
    assert [c["success"] for c in computations] == [True, False, False]
    assert "timed out" in computations[1]["error"] and "memory" in computations[2]["error"].lower()

    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 24005, at=1)))
    bridge.handle(bridge.read())
    second = wait_for(lambda: r.llen(keys.output_list(SPOT)) >= 2 and r.lindex(keys.output_list(SPOT), 0),
                      timeout=60)
    assert json.loads(second)["computations"][0]["results"]["change"] == pytest.approx(5)
    assert worker.proc.poll() is None  # the Celery worker process is alive
    children = os.popen(f"pgrep -P {worker.proc.pid}").read().split()
    assert children  # its sandbox processes run beside it, not in it
