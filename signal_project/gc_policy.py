"""How often a web process collects its old objects.

CPython's full collection walks every object that has lived long: with 1,000 WebSocket clients open that is
~140,000 objects and 40-120 ms, which the ordinary churn of frames and requests set off about every 30 s, a stall
for every frame in flight and every request waiting (bench/websocket.py measured it inside its window). Here the
startup objects are frozen out of the collector and the old generation is looked at after `OLD_EVERY` collections
of the middle one instead of 10: full collections ten times rarer, with the collector's own guard (it runs only
once the objects that lived long grew by a quarter) unchanged. The young generations are collected as usual, and a
closed connection holds no reference cycle (`signals.delivery.sender.SendQueue.stop`), so it is freed at once.
"""

from __future__ import annotations

import gc

OLD_EVERY = 100  # CPython's default is 10


def collect_old_objects_rarely() -> None:
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLD_EVERY)
