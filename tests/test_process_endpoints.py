"""Every long-running process serves its own /metrics, /healthz and /readyz (feed/probes.py), started as the
Kubernetes manifests start it: real bridge, worker (prefork children), beat and config consumer processes on the
test database and Redis, with real ticks sent through."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from feed import keys, probes
from tests.deploy_helpers import of_kind, render_manifests, routes_env
from tests.factories import create_config, fields, price_config, tick
from tests.support import ROOT, stop_process, wait_for, worker_database_url

SPOT = "NSE@NIFTY@index"
FAILING = "def signal(tick, bars, params):\n    raise ValueError('no signal today')\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(port: int, name: str, **labels: str) -> float:
    return samples(port).get((name, tuple(sorted(labels.items()))), 0.0)


class ManifestProcess:
    """A Deployment's container command run here: its env from the manifest (ConfigMap from deploy/routes.env),
    on the test database and Redis, its metrics port a free local one."""

    def __init__(self, deployment: dict[str, Any], extra_env: dict[str, str] | None = None):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert command[0] in ("python", "celery"), command
        executable = [sys.executable] if command[0] == "python" else [sys.executable, "-m", "celery"]
        self.port = free_port()
        manifest_env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert manifest_env["SIGNAL_METRICS_PORT"] == "9100"
        env = {key: val for key, val in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({**routes_env(), **manifest_env, "SIGNAL_METRICS_PORT": str(self.port),
                    "SIGNAL_METRICS_HOST": "127.0.0.1", "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
                    "DATABASE_URL": worker_database_url(), **(extra_env or {})})
        self.lines: list[str] = []
        self.proc = subprocess.Popen([*executable, *command[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 120) -> None:
        try:
            wait_for(lambda: self.proc.poll() is None and get(self.port, "/readyz")[0] == 200, timeout, 0.5)
        except AssertionError:
            raise AssertionError("not ready:\n" + "".join(self.lines[-40:])) from None

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    return of_kind(render_manifests(), "Deployment")


@pytest.fixture
def started() -> Any:
    processes: list[ManifestProcess] = []

    def start(deployment: dict[str, Any], **extra_env: str) -> ManifestProcess:
        process = ManifestProcess(deployment, extra_env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


@pytest.mark.django_db(transaction=True)
def test_bridge_and_worker_serve_their_own_series(deployments: Any, started: Any, r: Any, tmp_path: Path) -> None:
    from configs.models import ExternalFunction

    ExternalFunction(name="failing", function_name="signal", source=FAILING).save()
    create_config(price_config("metrics", external_functions=[{"name": "failing"}]))
    queue = routes_env()["SIGNAL_QUEUE_ROUTES"].split(",")[0].split("=")[-1]  # NSE@NIFTY's queue
    worker = started(deployments[f"signal-worker-{queue}"], PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    bridge = started(deployments["signal-bridge"])
    bridge.wait_ready()
    worker.wait_ready()

    for second in range(3):
        r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 24000 + second, at=second)))
    r.xadd("tick_stream:NSE@NIFTY", {"data": "{not json"})
    wait_for(lambda: r.llen(keys.output_list(SPOT)) == 3, timeout=60)

    wait_for(lambda: value(bridge.port, "signal_ticks_received_total") == 4, timeout=20)
    assert value(bridge.port, "signal_ticks_dead_lettered_total", reason="malformed") == 1
    assert value(bridge.port, "signal_bridge_tasks_sent_total", queue=queue) >= 1
    wait_for(lambda: value(worker.port, "signal_ticks_processed_total") == 3, timeout=20)
    assert value(worker.port, "signal_batch_processing_seconds_count") >= 1
    assert value(worker.port, "signal_batch_processing_seconds_sum") > 0
    assert value(worker.port, "signal_computation_errors_total", computation_type="external_function") == 3
    # each process reports only its own: the bridge processed nothing, the worker read nothing
    assert value(bridge.port, "signal_ticks_processed_total") == 0
    assert value(worker.port, "signal_ticks_received_total") == 0
    assert any(f.startswith("counter_") for f in os.listdir(tmp_path))  # the prefork children's samples
    for process in (bridge, worker):
        status, body = get(process.port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_beat_and_config_consumer_serve_health_and_the_beat_lock(deployments: Any, started: Any, r: Any) -> None:
    beat = started(deployments["signal-beat"])
    configs = started(deployments["signal-configs"])
    beat.wait_ready()
    configs.wait_ready()
    wait_for(lambda: value(beat.port, "signal_beat_active") == 1, timeout=30)
    assert value(beat.port, "signal_beat_lock_lost_total") == 0
    assert get(configs.port, "/healthz")[0] == 200
    assert value(configs.port, "python_gc_collections_total", generation="0") > 0

    r.delete(keys.beat_lock())  # taken by no one: the active beat's next renewal fails
    wait_for(lambda: value(beat.port, "signal_beat_lock_lost_total") == 1, timeout=30)
    wait_for(lambda: value(beat.port, "signal_beat_active") == 1, timeout=30)  # and it takes the lock again


def test_health_fails_when_the_loop_stops_beating_and_readiness_waits_for_the_loop() -> None:
    heartbeat = probes.Heartbeat(max_age_s=0.3)
    server = probes.serve(0, "127.0.0.1", heartbeat)
    port = server.server_address[1]
    try:
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/readyz")[0] == 503  # the loop has not turned yet
        should_stop = heartbeat.beating(lambda: False)
        assert should_stop() is False
        assert get(port, "/readyz")[0] == 200
        time.sleep(0.5)  # a loop stuck longer than max_age_s
        status, body = get(port, "/healthz")
        assert status == 503 and json.loads(body)["status"] == "failing"
        assert get(port, "/readyz")[0] == 503
        should_stop()
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
