"""Prometheus metrics shared by web, bridge and workers.

With PROMETHEUS_MULTIPROC_DIR set (the Procfile sets it), every process writes its samples there and `/metrics`
on the web process aggregates them; without it each process reports its own.
"""

from prometheus_client import Counter, Gauge, Histogram

TICKS_RECEIVED = Counter("signal_ticks_received_total", "Tick stream entries read by the bridge")
TICKS_DEAD_LETTERED = Counter("signal_ticks_dead_lettered_total", "Entries sent to the dead-letter stream", ["reason"])
TICKS_SKIPPED = Counter("signal_ticks_skipped_total", "Entries skipped because state=P")
TASKS_SENT = Counter("signal_bridge_tasks_sent_total", "Tick batch tasks sent to Celery", ["queue"])
ENTRIES_RECLAIMED = Counter("signal_bridge_reclaimed_total", "Pending entries reclaimed from dead consumers")
TICKS_PROCESSED = Counter("signal_ticks_processed_total", "Ticks processed by workers")
BATCH_SECONDS = Histogram(
    "signal_batch_processing_seconds", "Time to process one tick batch in a worker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMPUTATION_SECONDS = Histogram(
    "signal_computation_seconds", "Time of one computation over a batch", ["computation_type"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
COMPUTATION_ERRORS = Counter("signal_computation_errors_total", "Failed computations", ["computation_type"])
TICK_LATENCY = Histogram(
    "signal_tick_to_output_seconds", "Wall time from tick time to output written (live feeds only)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WS_CONNECTIONS = Gauge("signal_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum")
