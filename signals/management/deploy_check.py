"""Checks of the rendered Kubernetes manifests (`kubectl kustomize deploy/`), without a cluster.

Schemas: built-in kinds against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships (strict: unknown
fields are errors), KEDA and prometheus-operator kinds against their CRDs' schemas vendored in deploy/schemas/
(made strict the same way). Policy: what the service needs of its manifests (resources, probes, budgets, one
worker Deployment and ScaledObject per queue, one beat with the single-beat scheduler, the web's CPU autoscaler).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

KUBERNETES_VERSION = "1.32"  # the oldest release the manifests must run on
BEAT_SCHEDULER = "signals.schedule.beat:SingleBeatScheduler"
CRD_SCHEMAS = {  # (apiVersion, kind) -> file in deploy/schemas (see its README for versions and licence)
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def strict(schema: Any) -> Any:
    """The schema with unknown properties refused wherever it lists its properties (as `kubectl --validate=strict`
    does); objects that keep unknown fields on purpose stay open."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema_problems(objects: list[dict[str, Any]], schema_dir: Path) -> list[str]:
    problems = []
    for obj in objects:
        crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if crd:
            schema = strict(json.loads((schema_dir / crd).read_text()))
            validator = jsonschema.Draft7Validator(schema)
            problems += [f"{_name(obj)}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                         for e in validator.iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{_name(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{_name(obj)}: no schema: {exc}")
    return problems


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def containers(objects: list[dict[str, Any]], kinds: tuple[str, ...] = WORKLOADS) -> Iterator[tuple[str, dict]]:
    for obj in objects:
        if obj["kind"] in kinds:
            for container in pod_spec(obj).get("containers", []):
                yield f"{_name(obj)}/{container['name']}", container


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())


def _resource_and_probe_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for where, container in containers(objects):
        resources = container.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get("limits", {}):
            problems.append(f"{where}: needs cpu and memory requests and a memory limit")
    for where, container in containers(objects, ("Deployment", "StatefulSet")):
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                problems.append(f"{where}: no {probe}")
    return problems


def _budget_problems(objects: list[dict[str, Any]]) -> list[str]:
    budgets = [o["spec"]["selector"] for o in objects if o["kind"] == "PodDisruptionBudget"]
    return [f"{_name(o)}: no PodDisruptionBudget selects its pods" for o in objects if o["kind"] == "Deployment"
            and not any(selects(b, o["spec"]["template"]["metadata"]["labels"]) for b in budgets)]


def worker_queue(obj: dict[str, Any]) -> str | None:
    """The queue a Deployment's Celery worker consumes (its `-Q`), or None for another process."""
    command = pod_spec(obj)["containers"][0].get("command", [])
    if command[:1] == ["celery"] and "worker" in command and "-Q" in command:
        return command[command.index("-Q") + 1]
    return None


def _queue_problems(objects: list[dict[str, Any]], queues: list[str]) -> list[str]:
    workers = {o["metadata"]["name"]: worker_queue(o) for o in objects if o["kind"] == "Deployment"}
    workers = {name: queue for name, queue in workers.items() if queue}
    scaled = [o for o in objects if o["kind"] == "ScaledObject"]
    problems = []
    if sorted(workers.values()) != sorted(queues):
        problems.append(f"worker Deployments consume {sorted(workers.values())}, the settings send to {queues}")
    targets = sorted(o["spec"]["scaleTargetRef"]["name"] for o in scaled)
    if targets != sorted(workers):
        problems.append(f"ScaledObjects target {targets}, worker Deployments are {sorted(workers)}")
    for obj in scaled:
        queue = workers.get(obj["spec"]["scaleTargetRef"]["name"])
        read = [t["metadata"].get("listName") or t["metadata"].get("queueName") for t in obj["spec"]["triggers"]]
        if read != [queue]:
            problems.append(f"{_name(obj)}: scales on {read}, its Deployment consumes {queue}")
    return problems


def _beat_problems(objects: list[dict[str, Any]]) -> list[str]:
    beats = [o for o in objects if o["kind"] == "Deployment"
             and "beat" in pod_spec(o)["containers"][0].get("command", [])]
    if len(beats) != 1:
        return [f"{len(beats)} celery-beat Deployments; exactly one is wanted"]
    beat, command = beats[0], pod_spec(beats[0])["containers"][0]["command"]
    problems = []
    if command[command.index("-S") + 1 if "-S" in command else 0] != BEAT_SCHEDULER:
        problems.append(f"{_name(beat)}: runs {command}, not -S {BEAT_SCHEDULER}")
    if beat["spec"].get("replicas") != 1 or beat["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append(f"{_name(beat)}: needs replicas: 1 and strategy Recreate")
    return problems


def _web_autoscaler_problems(objects: list[dict[str, Any]]) -> list[str]:
    on_cpu = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"
              and any(m.get("resource", {}).get("name") == "cpu" for m in o["spec"].get("metrics", []))]
    if [o["spec"]["scaleTargetRef"]["name"] for o in on_cpu] != ["signal-web"]:
        return ["the web (signal-web) needs one HorizontalPodAutoscaler on CPU"]
    return []


def policy_problems(objects: list[dict[str, Any]], queues: list[str]) -> list[str]:
    return (_resource_and_probe_problems(objects) + _budget_problems(objects) + _queue_problems(objects, queues)
            + _beat_problems(objects) + _web_autoscaler_problems(objects))
