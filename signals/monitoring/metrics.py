"""Prometheus metrics shared by web, bridge, workers and beat.

Each long-running process serves its own on SIGNAL_METRICS_PORT (feed/probes.py; how Kubernetes and compose run
them); a Celery worker's prefork children write to the worker's PROMETHEUS_MULTIPROC_DIR, served by its main
process. With one PROMETHEUS_MULTIPROC_DIR shared by every process (the Makefile's demo), `/metrics` on the web
process aggregates them all.
"""

from prometheus_client import Counter, Gauge, Histogram

TICKS_RECEIVED = Counter("signal_ticks_received_total", "Tick stream entries read by the bridge")
TICKS_DEAD_LETTERED = Counter("signal_ticks_dead_lettered_total", "Entries sent to the dead-letter stream", ["reason"])
TICKS_SKIPPED = Counter("signal_ticks_skipped_total", "Entries skipped because state=P")
TASKS_SENT = Counter("signal_bridge_tasks_sent_total", "Tick batch tasks sent to Celery", ["queue"])
ENTRIES_RECLAIMED = Counter("signal_bridge_reclaimed_total", "Pending entries reclaimed from dead consumers")
BATCHES_DEFERRED = Counter("signal_batches_deferred_total", "Tick batches sent to the back of their queue to let an "
                           "earlier batch of their underlying run first")
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
WS_SLOW_CLOSES = Counter("signal_websocket_slow_closes_total", "WebSocket connections closed (4008) for reading too "
                         "slowly even for coalesced frames")
BEAT_ACTIVE = Gauge("signal_beat_active", "1 while this celery-beat holds the single-beat lock and sends tasks",
                    multiprocess_mode="liveall")
BEAT_LOCK_LOST = Counter("signal_beat_lock_lost_total", "Times an active celery-beat failed to renew its lock")
