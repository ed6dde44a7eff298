"""Check PostgreSQL and Redis before starting the stack; create the database if it is missing."""

import sys
from typing import Any
from urllib.parse import urlparse

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

HOW_TO = {
    "postgres": "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
                "(or `docker compose up -d db`)",
    "redis": "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
             "(or `docker compose up -d redis`)",
}


class Command(BaseCommand):
    help = "Verify PostgreSQL and Redis are reachable (creating the database if needed); explain how to start them."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = []
        db = settings.DATABASES["default"]
        params = {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None,
                  "password": db.get("PASSWORD") or None}
        try:
            with psycopg.connect(dbname="postgres", connect_timeout=3, autocommit=True, **params) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
                    self.stdout.write(f"created database {db['NAME']}")
        except psycopg.Error as exc:
            problems.append(f"PostgreSQL at {params['host']}:{params['port']} is unreachable ({exc}); "
                            f"{HOW_TO['postgres']}")
        for name in ("REDIS_URL", "CELERY_BROKER_URL"):
            url = getattr(settings, name)
            try:
                redis.Redis.from_url(url, socket_connect_timeout=3).ping()
            except redis.RedisError as exc:
                parsed = urlparse(url)
                problems.append(f"Redis ({name}) at {parsed.hostname}:{parsed.port} is unreachable ({exc}); "
                                f"{HOW_TO['redis']}")
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError("required services are not reachable")
        self.stdout.write("PostgreSQL and Redis are reachable")
        sys.stdout.flush()
