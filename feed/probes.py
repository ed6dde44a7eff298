"""A long-running process's own Prometheus endpoint and health signal (no Django).

The bridge, the Celery worker, celery-beat and the config consumer each serve, on a port of their own
(``SIGNAL_METRICS_PORT``; 0 serves nothing):

- ``/metrics``: the process's samples; with ``PROMETHEUS_MULTIPROC_DIR`` set, those of every process writing to
  that directory (a Celery worker's prefork children write there, its main process serves them);
- ``/healthz`` (liveness): 200 while the process's main loop has beaten within ``max_age_s``, else 503;
- ``/readyz`` (readiness): as ``/healthz``, and the loop has said it is ready (started, or connected).

The loop calls ``Heartbeat.beat()`` on every turn; the server answers from a daemon thread, so a loop that hangs
stops beating and the probes fail although the port still answers, while a process that is only waiting (for
Redis to come back, say) keeps beating: restarting it would not help.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: every process's samples in multiprocess mode, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class Heartbeat:
    """When the main loop last turned, and whether it is ready; read by the probes' thread."""

    def __init__(self, max_age_s: float):
        self.max_age_s = max_age_s
        self.last = time.monotonic()  # start-up counts as a beat: the startup probe covers a slow start
        self.ready = False

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last

    def alive(self) -> bool:
        return self.age() <= self.max_age_s

    def beating(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        """Wrap a loop's stop flag so that each check (once per turn) is a beat; the first also says ready."""

        def check() -> bool:
            self.beat()
            self.ready = True
            return should_stop()

        return check


class _Handler(BaseHTTPRequestHandler):
    heartbeat: Heartbeat  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(metrics_registry()), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok = self.heartbeat.alive() and (path == "/healthz" or self.heartbeat.ready)
            body = {"status": "ok" if ok else "failing", "heartbeat_age_s": round(self.heartbeat.age(), 3),
                    "ready": self.heartbeat.ready}
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the JSON logs; and a forking worker must not fork while this
        thread holds the logging lock."""


def serve(port: int, host: str, heartbeat: Heartbeat) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (``server_address`` has the bound port)."""
    handler = type("ProbeHandler", (_Handler,), {"heartbeat": heartbeat})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True).start()
    return server


def start(port: int, host: str, max_age_s: float) -> Heartbeat:
    """The process's heartbeat, served on ``port`` unless it is 0 (the loop beats it either way)."""
    heartbeat = Heartbeat(max_age_s)
    if port:
        serve(port, host, heartbeat)
    return heartbeat
