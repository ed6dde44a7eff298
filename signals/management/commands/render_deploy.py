from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signals.management.deploy_render import WorkerSizing, dump, prometheus_rule, worker_objects


class Command(BaseCommand):
    help = ("Render deploy/generated/ from the settings: a worker Deployment, KEDA ScaledObject and "
            "PodDisruptionBudget per Celery queue (SIGNAL_DEFAULT_QUEUE, SIGNAL_QUEUE_ROUTES, each task's queue), "
            "and the PrometheusRule of deploy/monitoring/alerts.rules.yaml. Run it with deploy/routes.env loaded "
            "(`make deploy-render`); --check fails if the files differ from what it renders.")
    requires_system_checks: list[str] = []  # renders text: needs no secrets, database or Redis

    def add_arguments(self, parser: Any) -> None:
        defaults = WorkerSizing()
        parser.add_argument("--deploy-dir", default=str(Path(settings.BASE_DIR) / "deploy"))
        parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
        parser.add_argument("--broker", choices=["redis", "rabbitmq"], default=defaults.broker,
                            help="the KEDA trigger on each queue: a Redis list or a RabbitMQ queue")
        parser.add_argument("--broker-url", default=defaults.broker_url,
                            help="Redis broker as KEDA's operator reaches it (the Redis trigger's address and db)")
        parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
        parser.add_argument("--min-replicas", type=int, default=defaults.min_replicas)
        parser.add_argument("--max-replicas", type=int, default=defaults.max_replicas)
        parser.add_argument("--tasks-per-replica", type=int, default=defaults.tasks_per_replica)

    def handle(self, *args: Any, **options: Any) -> None:
        deploy = Path(options["deploy_dir"])
        sizing = WorkerSizing(concurrency=options["concurrency"], min_replicas=options["min_replicas"],
                              max_replicas=options["max_replicas"], tasks_per_replica=options["tasks_per_replica"],
                              broker=options["broker"], broker_url=options["broker_url"])
        rendered = {
            deploy / "generated" / "workers.yaml": dump(worker_objects(sizing), "deploy/routes.env"),
            deploy / "generated" / "prometheusrule.yaml": dump(
                [prometheus_rule(deploy / "monitoring" / "alerts.rules.yaml")], "deploy/monitoring/alerts.rules.yaml"),
        }
        stale = [path for path, text in rendered.items() if not path.exists() or path.read_text() != text]
        if options["check"]:
            if stale:
                raise CommandError(f"out of date (run `make deploy-render`): {', '.join(map(str, stale))}")
            self.stdout.write("deploy/generated is up to date")
            return
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered[path])
            self.stdout.write(f"wrote {path}")
