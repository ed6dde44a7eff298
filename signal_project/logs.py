"""Logging for every process: one JSON object per line on stdout."""

from __future__ import annotations

from typing import Any


def logging_config(level: str) -> dict[str, Any]:
    """Django's LOGGING at ``level`` (the root logger and Celery's)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "celery": {"level": level},
            # One line per task at INFO ("succeeded in …", or the failure), not also "received": the demo wrote 20 MB/h.
            "celery.worker.strategy": {"level": "WARNING"},
        },
    }
