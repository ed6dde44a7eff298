import sys
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signals.management.deploy_check import KUBERNETES_VERSION, policy_problems, schema_problems
from signals.management.deploy_render import worker_queues


class Command(BaseCommand):
    help = ("Check rendered manifests (`kubectl kustomize deploy/ | manage.py check_deploy -`): Kubernetes and CRD "
            "schemas, and the service's policy (resources, probes, budgets, a worker and a ScaledObject per queue "
            "of the settings, the single-beat scheduler). Run it with deploy/routes.env loaded (`make deploy-check`).")
    requires_system_checks: list[str] = []  # reads YAML: needs no secrets, database or Redis

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("manifests", help="a file of YAML documents, or - for standard input")
        parser.add_argument("--schema-dir", default=str(Path(settings.BASE_DIR) / "deploy" / "schemas"))

    def handle(self, *args: Any, **options: Any) -> None:
        source = sys.stdin if options["manifests"] == "-" else Path(options["manifests"]).open()
        with source:
            objects = [doc for doc in yaml.safe_load_all(source) if doc]
        if not objects:
            raise CommandError("no manifests to check")
        problems = schema_problems(objects, Path(options["schema_dir"])) + policy_problems(objects, worker_queues())
        if problems:
            raise CommandError("\n".join(["manifests do not pass:", *problems]))
        kinds = sorted({o["kind"] for o in objects})
        self.stdout.write(f"{len(objects)} manifests valid (Kubernetes {KUBERNETES_VERSION} and CRD schemas) and "
                          f"within policy: {', '.join(kinds)}")
