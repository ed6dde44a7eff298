"""Fixtures for the user-function tests: real sandbox worker processes, no database, no Django."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from functions.sandbox import SandboxPool  # noqa: E402

NORMAL_SOURCE = """
def signal(tick, bars, params):
    return {"ltp": tick["ltp"], "bars": len(bars), "k": params.get("k")}
"""


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Overrides the suite-wide Redis-flushing autouse fixture: these tests use no Redis, database or Django."""
    yield


@pytest.fixture(scope="session")
def pool() -> Iterator[SandboxPool]:
    """One single-worker pool shared by the sandbox tests (the "runner" whose next tick must still work)."""
    with SandboxPool(size=1) as p:
        yield p


@pytest.fixture(scope="session")
def bars() -> list[dict[str, Any]]:
    """30 one-minute bars: close = 100.5 + i, high = 101 + i, low = 99 + i, volume 1000 + 10 i, oi 5000 + 5 i."""
    return [
        {
            "time": f"2025-06-26T{9 + (15 + i) // 60:02d}:{(15 + i) % 60:02d}:00+05:30",
            "open": 100.0 + i,
            "high": 101.0 + i,
            "low": 99.0 + i,
            "close": 100.5 + i,
            "volume": 1000 + 10 * i,
            "oi": 5000 + 5 * i,
        }
        for i in range(30)
    ]


@pytest.fixture(scope="session")
def tick() -> dict[str, Any]:
    return {
        "instrument_key": "NSE@NIFTY@options@2025-06-26@call@24000",
        "timestamp": "2025-06-26T09:45:00+05:30",
        "ltp": 130.0,
        "volume": 45000,
        "oi": 5160,
        "previous": {"ltp": 128.0, "timestamp": "2025-06-26T09:44:59+05:30"},
    }


def assert_next_tick_ok(pool: SandboxPool, tick: dict[str, Any], bars: list[dict[str, Any]]) -> None:
    """A normal function still runs on the same runner after whatever happened before."""
    res = pool.run(NORMAL_SOURCE, "signal", tick, bars, {"k": 2})
    assert res.error is None, res.error
    assert res.result == {"ltp": tick["ltp"], "bars": len(bars), "k": 2}
