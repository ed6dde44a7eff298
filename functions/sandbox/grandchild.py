"""The forked grandchild: runs one call of user code under that call's hard limits, writes one envelope, exits.

It closes the worker's protocol pipes, sets its own hard limits (:func:`functions.sandbox.isolation.set_call_limits`),
caps the recursion limit, asks for SIGKILL if the worker dies, runs the function and writes one JSON envelope
(``{"ok": true, "result": …}`` or ``{"ok": false, "error": …}``) to a pipe.  It never returns (``os._exit``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
import types
from typing import Any

from functions.results import ResultError, encode_result, validate_result
from functions.sandbox.isolation import die_with_parent, release_memory_slack, set_call_limits
from functions.sandbox.policy import USER_FILENAME
from functions.sandbox.protocol import write_all
from functions.sandbox.user_globals import make_globals

RECURSION_LIMIT = 300
"""``sys.setrecursionlimit`` in the grandchild (user recursion depth is a little less)."""

MAX_ERROR_CHARS = 2000
"""Error messages are truncated to this length."""


def describe_exception(exc: BaseException) -> str:
    """``Type: message (line N)`` where N is the deepest line of user code in the traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == USER_FILENAME:
            line = frame.lineno
    try:
        message = str(exc)
    except Exception:  # pragma: no cover - hostile __str__ is impossible (no dunder defs), but be safe
        message = "<unprintable>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if line is not None:
        text += f" (line {line})"
    return text[:MAX_ERROR_CHARS]


def execute(code: types.CodeType, request: dict[str, Any]) -> dict[str, Any]:
    """Run user code in this (grandchild) process; return the envelope ``{"ok", "result"|"error"}``."""
    function_name = request["function_name"]
    memory_mb = request["memory_limit_mb"]
    try:
        namespace = make_globals()
        exec(code, namespace)
        func = namespace.get(function_name)
        if func is None:
            return {"ok": False, "error": f"function {function_name!r} is not defined"}
        if not isinstance(func, types.FunctionType):
            return {"ok": False, "error": f"{function_name!r} is not a function"}
        raw = func(request["tick"], request["bars"], request["params"])
        result = validate_result(raw)
        data = encode_result(result)
        size = len(data.encode("utf-8"))
        if size > request["max_output_bytes"]:
            return {
                "ok": False,
                "error": f"output too large: {size} bytes (limit max_output_bytes={request['max_output_bytes']})",
            }
        return {"ok": True, "result_json": data}
    except MemoryError:
        release_memory_slack()
        return {"ok": False, "error": f"MemoryError: memory limit of {memory_mb} MB exceeded"}
    except RecursionError as exc:
        return {"ok": False, "error": describe_exception(exc)}
    except ResultError as exc:
        return {"ok": False, "error": f"invalid result: {exc}"[:MAX_ERROR_CHARS]}
    except BaseException as exc:  # noqa: B036 - user code may raise anything, incl. SystemExit
        try:
            return {"ok": False, "error": describe_exception(exc)}
        except MemoryError:
            release_memory_slack()
            return {"ok": False, "error": f"MemoryError: memory limit of {memory_mb} MB exceeded"}


def run_grandchild(
    code: types.CodeType, request: dict[str, Any], write_fd: int, close_fds: list[int], parent_pid: int
) -> None:
    """Body of the forked grandchild: never returns (``os._exit``)."""
    status = 70
    try:
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 2)
        os.close(devnull)
        if not die_with_parent(parent_pid):  # the worker died before PDEATHSIG was armed
            os._exit(72)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        set_call_limits(request)
        sys.setrecursionlimit(RECURSION_LIMIT)
        envelope = execute(code, request)
        if envelope.get("ok"):
            payload = '{"ok":true,"result":' + envelope["result_json"] + "}"
        else:
            payload = json.dumps({"ok": False, "error": str(envelope.get("error"))[:MAX_ERROR_CHARS]})
        write_all(write_fd, payload.encode("utf-8"))
        os.close(write_fd)  # EOF for the worker now, before the (slow) address-space teardown of the exit
        status = 0
    except BaseException:  # noqa: B036 - must reach os._exit
        status = 71
    finally:
        os._exit(status)
