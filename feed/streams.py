"""Small helpers shared by the Redis Streams consumers (the tick bridge and the config stream consumer)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


def text(value: Any) -> str:
    """A stream name, entry id or field as text (redis-py returns bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_entry(source_id: str) -> tuple[str, str] | None:
    """(stream, entry id) of a tick's ``source_id`` (``stream/entry-id``); None for a source that is no stream
    entry (an imported tick's content hash, a time-driven run's latest tick)."""
    stream, _, entry_id = source_id.rpartition("/")
    return (stream, entry_id) if stream and entry_id[:1].isdigit() else None


def id_order(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream entry id (``milliseconds-sequence``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def stop_on_signals() -> Callable[[], bool]:
    """Install SIGTERM/SIGINT handlers that only raise a flag, and return the flag's reader.

    The consumers' loops check it between steps, so the entry or batch in hand is always finished (and
    acknowledged) before the process exits.
    """
    stopping = [False]

    def on_signal(signum: int, frame: Any) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return lambda: stopping[0]
