"""When a web process collects its old objects.

CPython's full collection walks every object that has lived long: with 1,000 WebSocket clients open that is
~140,000 objects and ~100 ms, triggered every ~30 s by the ordinary churn of frames and requests, a stall for every
frame in flight and every request waiting (bench/websocket.py measured it inside its window). Here the startup
objects are frozen out of the collector, the young generations are collected as usual (short-lived cycles are
freed there), and the old generation only by a timer: cyclic garbage that outlived two young collections is freed
within `FULL_COLLECTION_EVERY_S`, and sockets stall for it once per period instead of twice a minute.
"""

from __future__ import annotations

import gc
import threading
import time

FULL_COLLECTION_EVERY_S = 300.0
_NEVER = 1 << 30  # a threshold the old generation's counter does not reach between two timed collections


def collect_old_objects_on_a_timer(every_s: float = FULL_COLLECTION_EVERY_S) -> threading.Thread:
    """Freeze what exists now and leave the old generation to a daemon thread collecting it every ``every_s``."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    thread = threading.Thread(target=_collect_every, args=(every_s,), name="full-gc", daemon=True)
    thread.start()
    return thread


def _collect_every(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        gc.collect()
