"""Length-prefixed JSON framing between the caller and sandbox workers (pipes).

A frame is a 4-byte big-endian unsigned length followed by that many bytes of JSON (ASCII-escaped).  Reads and writes
work on raw file descriptors with an optional absolute deadline (``time.monotonic()``), so the caller can never
block forever on a wedged worker.
"""

from __future__ import annotations

import errno
import json
import os
import select
import struct
import time
from typing import Any

_HEADER = struct.Struct(">I")

MAX_FRAME_BYTES = 256 * 1024 * 1024
"""Hard upper bound on any frame (requests carry bars; responses are bounded much lower by the caller)."""


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameTimeout(ProtocolError):
    """The deadline passed before a frame could be read or written completely."""


class PeerClosed(ProtocolError):
    """The peer closed its end of the pipe (the process probably died)."""


def _wait(fd: int, for_write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FrameTimeout("deadline passed")
    if for_write:
        _, ready, _ = select.select([], [fd], [], remaining)
    else:
        ready, _, _ = select.select([fd], [], [], remaining)
    if not ready:
        raise FrameTimeout("deadline passed")


def write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write all of ``data`` to ``fd`` (raises :class:`PeerClosed` / :class:`FrameTimeout`)."""
    view = memoryview(data)
    while view:
        _wait(fd, True, deadline)
        try:
            written = os.write(fd, view[: 1 << 16] if deadline is not None else view)
        except BlockingIOError:
            continue
        except BrokenPipeError as exc:
            raise PeerClosed("peer closed the pipe") from exc
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                raise PeerClosed(str(exc)) from exc
            raise
        view = view[written:]


def read_exact(fd: int, size: int, deadline: float | None = None, *, eof_ok: bool = False) -> bytes | None:
    """Read exactly ``size`` bytes; ``None`` on a clean EOF before the first byte when ``eof_ok``."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except BlockingIOError:
            continue
        except OSError as exc:
            raise PeerClosed(str(exc)) from exc
        if not chunk:
            if eof_ok and remaining == size:
                return None
            raise PeerClosed("peer closed the pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def encode_frame(obj: Any, **dumps_kwargs: Any) -> bytes:
    """Return ``obj`` as one frame (header + compact JSON)."""
    payload = json.dumps(obj, separators=(",", ":"), **dumps_kwargs).encode(
        "ascii"
    )  # ASCII: no encoding errors
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"frame too large ({len(payload)} bytes)")
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, frame: bytes, deadline: float | None = None) -> None:
    """Write a frame produced by :func:`encode_frame`."""
    write_all(fd, frame, deadline)


def read_frame(
    fd: int, deadline: float | None = None, *, max_bytes: int = MAX_FRAME_BYTES, eof_ok: bool = False
) -> Any:
    """Read one frame and return the decoded JSON value (``None`` on clean EOF if ``eof_ok``).

    Raises :class:`ProtocolError` for oversize or undecodable frames, :class:`PeerClosed` on EOF inside a frame,
    :class:`FrameTimeout` when ``deadline`` passes.
    """
    header = read_exact(fd, _HEADER.size, deadline, eof_ok=eof_ok)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > max_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_bytes}")
    payload = read_exact(fd, size, deadline)
    assert payload is not None
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc
