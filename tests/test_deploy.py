"""deploy/ as kustomize renders it (`kubectl kustomize deploy/`): schemas, a worker Deployment and a KEDA
ScaledObject per queue the bridge routes to, resources and probes everywhere, the single-beat scheduler."""

from __future__ import annotations

import copy
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from signal_project.env import env_map, env_str
from signals.ingest.bridge import BridgeSettings
from signals.management import deploy_check, deploy_render
from tests.deploy_helpers import DEPLOY, of_kind, render_manifests, routes_env
from tests.support import ROOT

SCHEMAS = DEPLOY / "schemas"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render_manifests()


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings every pod gets from deploy/routes.env, parsed by the settings' own helpers."""
    for name, value in routes_env().items():
        monkeypatch.setenv(name, value)
    routes = env_map("SIGNAL_QUEUE_ROUTES", {})
    default = env_str("SIGNAL_DEFAULT_QUEUE", "signals")
    with override_settings(SIGNAL_QUEUE_ROUTES=routes, SIGNAL_DEFAULT_QUEUE=default):
        yield routes, default


def test_rendered_manifests_match_the_kubernetes_and_crd_schemas(rendered: list[dict[str, Any]]) -> None:
    assert deploy_check.schema_problems(rendered, SCHEMAS) == []
    assert {"ScaledObject", "PodMonitor", "PrometheusRule", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "Job", "StatefulSet"} <= {o["kind"] for o in rendered}


def test_schema_check_refuses_unknown_fields_and_wrong_types(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    web = of_kind(broken, "Deployment")["signal-web"]
    web["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecond"] = 10
    next(iter(of_kind(broken, "ScaledObject").values()))["spec"]["minReplicaCount"] = "one"
    of_kind(broken, "PodMonitor")["signal-service"]["spec"]["podMetricsEndpoint"] = []
    problems = deploy_check.schema_problems(broken, SCHEMAS)
    assert len(problems) == 3, problems
    assert any("periodSecond" in p for p in problems) and any("'one' is not of type 'integer'" in p for p in problems)


def test_every_deployment_has_resources_probes_and_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert {"signal-web", "signal-bridge", "signal-beat", "signal-configs"} <= set(deployments)
    budgets = of_kind(rendered, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, name
            assert "memory" in container["resources"]["limits"], name
            assert container["livenessProbe"] and container["readinessProbe"], name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(deploy_check.selects(b["spec"]["selector"], labels) for b in budgets), name
    for where, container in deploy_check.containers(rendered):
        assert "cpu" in container["resources"]["requests"], where


def test_policy_check_names_a_missing_probe_and_resources(rendered: list[dict[str, Any]], routed: Any) -> None:
    broken = copy.deepcopy(rendered)
    bridge = of_kind(broken, "Deployment")["signal-bridge"]["spec"]["template"]["spec"]["containers"][0]
    del bridge["readinessProbe"], bridge["resources"]
    problems = deploy_check.policy_problems(broken, deploy_render.worker_queues())
    assert problems == ["Deployment/signal-bridge/bridge: needs cpu and memory requests and a memory limit",
                        "Deployment/signal-bridge/bridge: no readinessProbe"]


def test_one_worker_deployment_and_scaled_object_per_route(rendered: list[dict[str, Any]], routed: Any) -> None:
    routes, default = routed
    assert routes == {"NSE@NIFTY": "nifty", "NSE@BANKNIFTY": "banknifty"} and default == "signals"
    # the bridge, reading the same ConfigMap, sends each underlying to a queue that has its own workers
    bridge = BridgeSettings.from_django()
    sent_to = {bridge.queue_for(u) for u in ("NSE@NIFTY", "NSE@BANKNIFTY", "NSE@FINNIFTY")}
    assert sent_to == {"nifty", "banknifty", "signals"}
    config_map = next(o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("signal-routes"))
    assert config_map["data"] == routes_env()

    workers = {name: deploy_check.worker_queue(d) for name, d in of_kind(rendered, "Deployment").items()}
    workers = {name: queue for name, queue in workers.items() if queue}
    assert sorted(workers.values()) == sorted(deploy_render.worker_queues()) == ["backtest", "banknifty", "nifty", "signals"]
    scaled = of_kind(rendered, "ScaledObject")
    assert set(scaled) == set(workers)
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == workers[name]
        assert trigger["metadata"]["databaseIndex"] == "1"  # the broker's database (CELERY_BROKER_URL)
    assert deploy_check.policy_problems(rendered, deploy_render.worker_queues()) == []


def test_committed_worker_manifests_are_what_the_routes_render(routed: Any) -> None:
    rendered = deploy_render.dump(deploy_render.worker_objects(deploy_render.WorkerSizing()), "deploy/routes.env")
    assert (DEPLOY / "generated" / "workers.yaml").read_text() == rendered
    rule = deploy_render.prometheus_rule(DEPLOY / "monitoring" / "alerts.rules.yaml")
    assert (DEPLOY / "generated" / "prometheusrule.yaml").read_text() == deploy_render.dump(
        [rule], "deploy/monitoring/alerts.rules.yaml")


def test_a_new_route_gets_its_own_worker_and_rabbitmq_triggers_validate(routed: Any) -> None:
    routes, _ = routed
    with override_settings(SIGNAL_QUEUE_ROUTES={**routes, "NSE@FIN_NIFTY": "Fin_Nifty"}):
        objects = deploy_render.worker_objects(deploy_render.WorkerSizing(broker="rabbitmq"))
    scaled = of_kind(objects, "ScaledObject")
    assert set(scaled) == {"signal-worker-backtest", "signal-worker-banknifty", "signal-worker-fin-nifty",
                           "signal-worker-nifty", "signal-worker-signals"}
    assert scaled["signal-worker-fin-nifty"]["spec"]["triggers"] == [{"type": "rabbitmq", "metadata": {
        "protocol": "auto", "queueName": "Fin_Nifty", "mode": "QueueLength", "value": "5",
        "hostFromEnv": "CELERY_BROKER_URL"}}]
    assert deploy_check.worker_queue(of_kind(objects, "Deployment")["signal-worker-fin-nifty"]) == "Fin_Nifty"
    assert deploy_check.schema_problems(objects, SCHEMAS) == []


def test_the_beat_runs_the_single_beat_scheduler_at_one_replica(rendered: list[dict[str, Any]]) -> None:
    beat = of_kind(rendered, "Deployment")["signal-beat"]
    command = beat["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["celery", "-A", "signal_project", "beat"]
    assert command[command.index("-S") + 1] == "signals.schedule.beat:SingleBeatScheduler" \
        == settings.CELERY_BEAT_SCHEDULER
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert "signal-beat" not in {h["spec"]["scaleTargetRef"]["name"]
                                 for h in of_kind(rendered, "HorizontalPodAutoscaler").values()}


def test_the_web_scales_on_cpu_and_redis_keeps_an_append_only_file(rendered: list[dict[str, Any]]) -> None:
    (hpa,) = of_kind(rendered, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "signal-web"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    args = of_kind(rendered, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "--appendonly yes" in compose["services"]["redis"]["command"]
    assert "--maxmemory-policy noeviction" in compose["services"]["redis"]["command"]


def test_every_process_pod_is_scraped_on_a_named_metrics_port(rendered: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(rendered, "PodMonitor").values()
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for name, deployment in of_kind(rendered, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deploy_check.selects(monitor["spec"]["selector"], labels), name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {p["name"] for p in container["ports"]} & ports, name
    rule = of_kind(rendered, "PrometheusRule")["signal-service"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"SignalStreamLag", "SignalPendingGrowing", "SignalDeadLetters", "SignalQueueBacklog",
            "SignalComputationErrors", "SignalNoTicksInMarketHours", "SignalBeatLockLost"} <= alerts


def test_the_image_runs_as_a_non_root_user_and_warms_the_numba_cache() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and " AS build" in stages[0]
    assert "USER 10001:10001" in dockerfile and "warm_up()" in dockerfile.split("USER 10001:10001")[1]
    assert Path(ROOT / ".dockerignore").read_text().count(".venv") == 1


def test_the_commands_check_what_ci_checks(rendered: list[dict[str, Any]], routed: Any, tmp_path: Path) -> None:
    out = StringIO()
    call_command("render_deploy", "--check", stdout=out)
    assert out.getvalue().strip() == "deploy/generated is up to date"
    manifests = tmp_path / "deploy.yaml"
    manifests.write_text(yaml.safe_dump_all(rendered))
    call_command("check_deploy", str(manifests), stdout=out)
    assert f"{len(rendered)} manifests valid" in out.getvalue()

    bypassed = copy.deepcopy(rendered)
    beat = of_kind(bypassed, "Deployment")["signal-beat"]["spec"]["template"]["spec"]["containers"][0]
    beat["command"][beat["command"].index("-S") + 1] = "django_celery_beat.schedulers:DatabaseScheduler"
    manifests.write_text(yaml.safe_dump_all(bypassed))
    with pytest.raises(CommandError, match="not -S signals.schedule.beat:SingleBeatScheduler"):
        call_command("check_deploy", str(manifests))
