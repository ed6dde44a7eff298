"""The web process's collection policy (signal_project/gc_policy.py), in processes of their own: the same churn of
long-lived and cyclic objects sets off full collections at least five times rarer with it than without, and the
cyclic garbage that reached the old generation is still freed by them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = """
import gc, sys
sys.path.insert(0, ROOT)
from signal_project.gc_policy import collect_old_objects_rarely

full = []
gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2 and full.append(1))
if POLICY:
    collect_old_objects_rarely()
kept = []
for n in range(3_000_000):  # churn: cycles, a share kept long enough to reach the old generation, then dropped
    node = {}
    node["self"] = node
    kept.append(node)
    if len(kept) > 50_000:
        kept.clear()
del kept, node
gc.collect(1)  # the young garbage; cyclic garbage that reached the old generation waits for a full collection
survivors = sum(1 for o in gc.get_objects() if type(o) is dict and o.get("self") is o)
print(len(full), survivors)
"""


def run(policy: bool) -> tuple[int, int]:
    program = PROGRAM.replace("ROOT", repr(str(ROOT))).replace("POLICY", str(policy))
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    full, survivors = out.stdout.split()
    return int(full), int(survivors)


def test_full_collections_come_at_least_five_times_rarer_and_cycles_are_still_freed() -> None:
    default_full, _ = run(policy=False)
    rare_full, survivors = run(policy=True)
    assert default_full >= 10  # the churn sets off the collector's own full collections
    assert rare_full * 5 <= default_full
    assert rare_full >= 1  # not never: the old generation is still collected
    # those full collections free what reached the old generation: of 3,000,000 cycles a bounded few wait
    assert survivors < 600_000
