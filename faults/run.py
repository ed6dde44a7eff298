"""One scenario: ticks flow, the fault strikes, the flow goes on; then every sink is counted against what was sent.

Settle time is measured from the end of the fault (process started again, server back) until every tick sent
before that moment is stored in ``signal_ticks`` — the last step of a batch, after its outputs.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import redis

from faults import sinks
from faults.publisher import Publisher, SentTick
from faults.scenarios import Scenario, Suite


@dataclass
class Timing:
    flow_s: float = 12.0
    fault_at_s: float = 4.0
    settle_timeout_s: float = 60.0
    list_cap: int = 1000  # SIGNAL_OUTPUT_LIST_MAXLEN


@dataclass
class Result:
    scenario: Scenario
    note: str
    sent: int
    counts: list[sinks.Count]
    settle_s: float | None
    crashes: dict[str, int]
    api: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return (all(c.ok for c in self.counts) and self.settle_s is not None
                and not any(status >= 500 and status != 503 for status in self.api))


class ApiProbe:
    """Reads the realtime price through the API every half second while a scenario runs: no 500s allowed."""

    def __init__(self, port: int, token: str):
        self.url = f"http://127.0.0.1:{port}/api/v2/signals/realtime/price/NSE@NIFTY@index"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.statuses: Counter = Counter()
        self.sources: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="api-probe")

    def __enter__(self) -> ApiProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            request = urllib.request.Request(self.url, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    self.statuses[response.status] += 1
                    self.sources[json.loads(response.read()).get("source")] += 1
            except urllib.error.HTTPError as exc:
                self.statuses[exc.code] += 1
            except OSError:
                self.statuses[0] += 1  # web not answering (killed, restarting)


def _all_stored(suite: Suite, ticks: list[SentTick]) -> bool:
    try:
        return sinks.stored_count(suite.db_url, ticks) == len(ticks)
    except Exception:  # PostgreSQL down or locked: not settled yet
        return False


def _drained(publisher: Publisher, timeout: float) -> None:
    """Wait until the sender has sent everything the pacer made (it retries while Redis is down)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        mark = publisher.mark()
        if publisher.backlog() == 0 and mark == last:
            return
        last = mark
        time.sleep(0.5)


def run(scenario: Scenario, suite: Suite, publisher: Publisher, configs: list[sinks.Config], timing: Timing,
        token: str) -> Result:
    crashes_before = suite.stack.restart_counts()
    start_mark = publisher.mark()
    with ApiProbe(suite.web_port, token) as probe:
        publisher.flow(True)
        started = time.monotonic()
        time.sleep(timing.fault_at_s)
        note = scenario.inject(suite)
        fault_end = time.monotonic()
        before_end = publisher.sent_since(start_mark)
        flow_end = max(started + timing.flow_s, fault_end + 2.0)
        deadline = flow_end + timing.settle_timeout_s
        settle_s = None
        while settle_s is None and time.monotonic() < deadline:
            if _all_stored(suite, before_end):
                settle_s = time.monotonic() - fault_end
            if time.monotonic() > flow_end:
                publisher.flow(False)
            time.sleep(0.25)
        time.sleep(max(0.0, flow_end - time.monotonic()))
        publisher.flow(False)
        _drained(publisher, 30)
        ticks = publisher.sent_since(start_mark)
        while not _all_stored(suite, ticks) and time.monotonic() < deadline:
            time.sleep(0.5)
    time.sleep(1.0)  # a late duplicate (a redelivered batch) has a moment to show
    client = redis.Redis.from_url(suite.redis_server.url(0))
    counts = [sinks.count_rows(suite.db_url, ticks), *sinks.count_outputs(client, ticks, configs, timing.list_cap),
              sinks.count_latest(client, ticks, configs)]
    sinks.clear_outputs(client, ticks)
    crashes = {name: n - crashes_before[name] for name, n in suite.stack.restart_counts().items()
               if n > crashes_before[name]}
    api = probe.statuses
    if probe.sources:
        note += "; API sources " + ", ".join(f"{k}: {v}" for k, v in sorted(probe.sources.items()))
    return Result(scenario, note, len(ticks), counts, settle_s, crashes, api)
