"""The web process's collection policy (signal_project/gc_policy.py), in a process of its own: churn of cyclic
garbage never triggers a full collection, the timer does, and what the timer collects is freed."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import gc, time
from signal_project.gc_policy import collect_old_objects_on_a_timer

full = []
gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2 and full.append(time.monotonic()))
collect_old_objects_on_a_timer(every_s=1.0)
began = time.monotonic()
kept = []
while time.monotonic() - began < 0.8:  # churn: cycles, some kept long enough to reach the old generation
    node = {}
    node["self"] = node
    kept.append(node)
    if len(kept) > 20000:
        kept.clear()
automatic = len(full)
while time.monotonic() - began < 2.5:
    time.sleep(0.05)
print(automatic, len(full), round(full[0] - began, 1) if full else -1)
"""


def test_full_collections_run_on_the_timer_only() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True)
    automatic, total, first_at = out.stdout.split()
    assert automatic == "0"  # 0.8 s of churn: the old generation is never collected by allocation counts
    assert int(total) >= 2  # the timer collected it at 1 s and 2 s
    assert 0.9 <= float(first_at) <= 1.6


def test_without_the_policy_the_same_churn_triggers_full_collections() -> None:
    # the control: the churn above is enough to set off the collector's own full collections
    program = PROGRAM.replace("collect_old_objects_on_a_timer(every_s=1.0)", "pass")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout.split()[0]) > 0
