"""The pipeline health panel's figures: read from the Prometheus exposition `/metrics` answers, so the panel and
the monitoring never disagree, plus each config's last run."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from configs.models import SignalConfig
from signals.monitoring.views import exposition

# series summed over their labels (and processes) -> the panel's name
TOTALS = {
    "signal_ticks_received_total": "ticks_received",
    "signal_ticks_processed_total": "ticks_processed",
    "signal_ticks_dead_lettered_total": "ticks_dead_lettered",
    "signal_websocket_connections": "websocket_connections",
    "signal_tick_to_output_seconds_sum": "latency_sum_s",
    "signal_tick_to_output_seconds_count": "latency_count",
}
# series kept per label -> (the panel's name, the label)
BY_LABEL = {
    "signal_computation_errors_total": ("computation_errors", "computation_type"),
    "signal_stream_lag": ("stream_lag", "stream"),
    "signal_stream_pending": ("stream_pending", "stream"),
    "signal_celery_queue_length": ("queue_length", "queue"),
    "signal_dead_letter_length": ("dead_letters", "stream"),
}


def figures(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {name: 0.0 for name in TOTALS.values()}
    out.update({name: defaultdict(float) for name, _ in BY_LABEL.values()})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in TOTALS:
                out[TOTALS[sample.name]] += sample.value
            elif sample.name in BY_LABEL:
                name, label = BY_LABEL[sample.name]
                out[name][sample.labels.get(label, "")] += sample.value
    return {key: dict(value) if isinstance(value, defaultdict) else value for key, value in out.items()}


def health() -> dict[str, Any]:
    body = figures(exposition().decode())
    body["time"] = time.time()
    body["configs"] = [
        {"name": c.name, "enabled": c.enabled, "last_run_at": c.last_run_at.isoformat() if c.last_run_at else None,
         "last_run_status": c.last_run_status, "last_run_records": c.last_run_records}
        for c in SignalConfig.objects.order_by("name")[:50]
    ]
    return body
