"""The Kubernetes objects that follow from the settings: a worker Deployment, KEDA ScaledObject and
PodDisruptionBudget per Celery queue the service sends to, and the PrometheusRule wrapping the alert rules.

`manage.py render_deploy` writes them under deploy/generated/; deploy/routes.env holds the routes they are
rendered from, and kustomize loads the same file into the ConfigMap every process (the bridge first) reads them
from, so the queues the bridge sends to and the queues workers consume are one list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings

PART_OF = "signal-service"
METRICS_PORT = 9100
MULTIPROC_DIR = "/var/run/signal-metrics"


@dataclass(frozen=True)
class WorkerSizing:
    concurrency: int = 2
    min_replicas: int = 1
    max_replicas: int = 8
    tasks_per_replica: int = 5  # waiting tasks per replica before KEDA adds one
    broker: str = "redis"  # or "rabbitmq": the KEDA trigger that reads the queue's length
    broker_url: str = "redis://redis.signal-service.svc.cluster.local:6379/1"  # as KEDA's operator reaches it


def worker_queues() -> list[str]:
    """Every queue a task is sent to: the default, the bridge's routes, and each task's own queue setting."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted({settings.SIGNAL_DEFAULT_QUEUE, *settings.SIGNAL_QUEUE_ROUTES.values(), *routed})


def object_name(queue: str) -> str:
    """`signal-worker-<queue>` as a DNS label (Celery queue names may hold `_`, `.` or capitals)."""
    label = re.sub(r"[^a-z0-9-]+", "-", queue.lower()).strip("-")
    if not label:
        raise ValueError(f"queue {queue!r} gives no usable Kubernetes name")
    return f"signal-worker-{label}"[:63].rstrip("-")


def worker_deployment(queue: str, sizing: WorkerSizing) -> dict[str, Any]:
    name = object_name(queue)
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 15, "timeoutSeconds": 3,
             "failureThreshold": 4}
    container = {
        "name": "worker",
        "image": "signal-service",
        "command": ["celery", "-A", "signal_project", "worker", "-l", "INFO", "-Q", queue,
                    "--concurrency", str(sizing.concurrency), "-n", f"{queue}@%h",
                    "--without-gossip", "--without-mingle"],
        "envFrom": [{"secretRef": {"name": "signal-service"}}, {"configMapRef": {"name": "signal-routes"}}],
        "env": [{"name": "SIGNAL_METRICS_PORT", "value": str(METRICS_PORT)},
                {"name": "PROMETHEUS_MULTIPROC_DIR", "value": MULTIPROC_DIR}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "resources": {"requests": {"cpu": f"{500 * sizing.concurrency}m", "memory": f"{384 * sizing.concurrency}Mi"},
                      "limits": {"memory": f"{768 * sizing.concurrency}Mi"}},
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 36},  # numba cache load, first connect
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}, "failureThreshold": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "metrics", "mountPath": MULTIPROC_DIR}],
    }
    labels = {"app": name, "app.kubernetes.io/component": "worker", "app.kubernetes.io/part-of": PART_OF}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": {"signal-service/queue": queue}},
        "spec": {  # no replicas: KEDA's ScaledObject owns the count (an apply would reset it)
            "strategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {
                # a task in hand runs to its end (CELERY_TASK_TIME_LIMIT) before the pod goes
                "terminationGracePeriodSeconds": int(settings.CELERY_TASK_TIME_LIMIT) + 10,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                # per pod, so a restarted pod starts counting afresh and no two pods share samples
                "volumes": [{"name": "metrics", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
            }},
        },
    }


def queue_trigger(queue: str, sizing: WorkerSizing) -> dict[str, Any]:
    target = str(sizing.tasks_per_replica)
    if sizing.broker == "rabbitmq":
        # KEDA reads the broker URL from the worker container's own environment (the Secret)
        return {"type": "rabbitmq", "metadata": {"protocol": "auto", "queueName": queue, "mode": "QueueLength",
                                                 "value": target, "hostFromEnv": "CELERY_BROKER_URL"}}
    if sizing.broker != "redis":
        raise ValueError(f"broker must be redis or rabbitmq, got {sizing.broker!r}")
    url = urlsplit(sizing.broker_url)
    # Celery's Redis transport keeps a queue as a list named after it, in the broker URL's database
    return {"type": "redis", "metadata": {"address": f"{url.hostname}:{url.port or 6379}",
                                          "databaseIndex": (url.path.strip("/") or "0"), "listName": queue,
                                          "listLength": target}}


def scaled_object(queue: str, sizing: WorkerSizing) -> dict[str, Any]:
    name = object_name(queue)
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": sizing.min_replicas, "maxReplicaCount": sizing.max_replicas,
            "pollingInterval": 5, "cooldownPeriod": 120,
            "triggers": [queue_trigger(queue, sizing)],
        },
    }


def disruption_budget(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}}


def worker_objects(sizing: WorkerSizing) -> list[dict[str, Any]]:
    queues = worker_queues()
    names = [object_name(q) for q in queues]
    if len(set(names)) != len(names):
        raise ValueError(f"queues {queues} give clashing Kubernetes names {names}")
    return [obj for queue in queues for obj in (worker_deployment(queue, sizing), scaled_object(queue, sizing),
                                                disruption_budget(object_name(queue)))]


def prometheus_rule(rules_file: Path) -> dict[str, Any]:
    """The alert rules (a plain Prometheus rule file, which promtool checks and tests) as a PrometheusRule."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "signal-service", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {"groups": groups}}


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two objects twice instead of as an anchor and alias: plain YAML for readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: list[dict[str, Any]], source: str) -> str:
    header = f"# Generated by `make deploy-render` (manage.py render_deploy) from {source}; do not edit.\n"
    return header + yaml.dump_all(objects, Dumper=_PlainDumper, sort_keys=False, width=120, explicit_start=True)
