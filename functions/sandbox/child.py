"""Sandbox worker process: ``python -m functions.sandbox.child`` (started by :mod:`functions.sandbox.runner`).

Design ("zygote + one forked grandchild per call"):

1. Start-up (as the caller's user, usually root in the container): move the protocol pipes off fds 0/1, preload
   numpy, pandas, RestrictedPython and every stdlib module user code may need (after the privilege drop the
   interpreter's own files may be unreadable, e.g. a Python installed under a private home directory), warm up
   pandas' lazy imports, build the guarded module views.
2. Harden the worker (each step best-effort, reported in the ``hello`` frame): ``unshare(CLONE_NEWNET)`` (an
   empty network namespace: no interfaces, no network), drop to ``nobody``/``nogroup`` when running as root
   (``setgroups([])``, ``setgid``, ``setuid`` — so RLIMIT_NPROC and file permissions apply), ``PR_SET_NO_NEW_PRIVS``,
   not dumpable, ``umask 077``, RLIMIT_CORE=0.
3. Serve requests one at a time: compile the source (cached per SHA-256 of the source, LRU), ``fork()`` a
   grandchild, which closes the protocol pipes, sets its *own* hard limits (RLIMIT_AS = its current address
   space + ``memory_limit_mb``, RLIMIT_CPU, RLIMIT_FSIZE=0, RLIMIT_NOFILE=16, RLIMIT_NPROC=0, RLIMIT_CORE=0),
   caps the recursion limit, asks for SIGKILL if the worker dies, runs the function and writes one JSON envelope
   to a pipe.  The worker enforces the wall-clock timeout (SIGKILL), the output-size cap, and reports signals.

Forking per call gives each call exact, non-raisable limits whatever the previous call used, a pristine
interpreter state (no data leaks between configs), and crash containment; it costs ~3-5 ms per call.
The worker never executes user code itself, so a hostile function cannot take the worker down; the caller
also enforces a backstop deadline and replaces a worker that stops answering.
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import json
import math
import os
import resource
import select
import signal
import sys
import time
import traceback
import types
from typing import Any

from functions.sandbox import policy, protocol, user_globals
from functions.sandbox.results import ResultError, encode_result, validate_result

RECURSION_LIMIT = 300
"""``sys.setrecursionlimit`` in the grandchild (user recursion depth is a little less)."""

GRANDCHILD_NOFILE = 16
"""RLIMIT_NOFILE in the grandchild (it needs no new files; lazily read data files still fit)."""

MEMORY_SLACK_BYTES = 16 * 1024 * 1024
"""Hard RLIMIT_AS sits this much above the soft limit, so a MemoryError can still be reported."""

MAX_ERROR_CHARS = 2000
"""Error messages are truncated to this length."""

CODE_CACHE_SIZE = 256
"""Compiled sources kept per worker (LRU)."""

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38

# Stdlib modules imported up front: once the worker runs as ``nobody`` the interpreter's stdlib directory may be
# unreadable, so anything imported lazily later (by user code paths in numpy/pandas/datetime/statistics) must
# already be in ``sys.modules``.
_PRELOAD_MODULES = [
    "_strptime", "calendar", "locale", "decimal", "fractions", "numbers", "statistics", "random", "bisect",
    "heapq", "copy", "pprint", "textwrap", "string", "re", "unicodedata", "zoneinfo",
    "encodings.idna", "encodings.latin_1", "encodings.ascii", "encodings.utf_8", "encodings.utf_16",
    "json.decoder", "json.encoder", "dataclasses", "enum", "weakref", "contextlib", "operator", "warnings",
    "linecache", "tokenize", "dateutil", "dateutil.parser", "dateutil.tz", "dateutil.relativedelta", "pytz",
    "tzdata", "numpy.linalg", "numpy.random", "numpy.polynomial", "numpy.fft",
]  # fmt: skip

_libc: Any = None


def _libc_call(name: str, *args: int) -> int:
    """Call a libc function through ctypes; return 0 on success or the errno (never raises)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        if getattr(_libc, name)(*[ctypes.c_ulong(a) for a in args]) == 0:
            return 0
        return ctypes.get_errno() or -1
    except Exception:  # pragma: no cover - no libc symbol
        return -1


def _status() -> dict[str, int]:
    """Selected fields of /proc/self/status in kB (VmSize, VmRSS) plus Threads."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmSize", "VmRSS", "Threads"):
                    out[key] = int(value.split()[0])
    except OSError:  # pragma: no cover
        pass
    return out


def _vm_bytes() -> int:
    """Current address-space size of this process in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except OSError:  # pragma: no cover
        return 0


def _preload() -> None:
    """Import and warm up everything user code may touch (see module docstring)."""
    import importlib
    import warnings

    for name in _PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # pragma: no cover - optional
            pass
    import datetime as dt
    import statistics

    import numpy as np
    import pandas as pd

    warnings.simplefilter("ignore")
    closes = np.arange(1.0, 61.0)
    idx = pd.date_range("2025-01-01 09:15", periods=60, freq="1min", tz="Asia/Kolkata")
    df = pd.DataFrame({"close": closes, "volume": closes * 10}, index=idx)
    s = df["close"]
    # Exercise common numpy / pandas / datetime paths so their lazy imports happen now.  Each step is independent
    # and failures are ignored: warm-up must never prevent the worker from starting.
    steps = [
        lambda: (np.std(closes, ddof=1), np.percentile(closes, 50), np.polyfit(closes, closes, 1)),
        lambda: (np.linalg.norm(closes), np.random.default_rng(1).normal(size=3), np.nanmean(closes)),
        lambda: (s.rolling(5).mean(), s.rolling(5).std(), s.ewm(span=5).mean(), s.expanding().max()),
        lambda: (s.pct_change(), s.diff(), s.shift(1), s.cumsum(), s.rank(), s.clip(1, 2), s.where(s > 3)),
        lambda: df.resample("5min").agg({"close": "last", "volume": "sum"}),
        lambda: (df.describe(), df.corr(), df.quantile(0.5), df.fillna(0), df.dropna(), df.round(2)),
        lambda: (df.groupby(df.index.hour)["close"].mean(), df.reset_index().to_dict("records")[:1]),
        lambda: (df.iloc[-1].to_dict(), df.tail(3).to_numpy(), s.to_list(), s.values.tolist()),
        lambda: (pd.Series(["a", "b"]).str.upper(), pd.to_numeric(pd.Series(["1", "2"]))),
        lambda: pd.to_datetime(["2025-06-26T09:15:00+05:30", "2025-06-26T09:16:00+05:30"]),
        lambda: pd.to_datetime(["2025-06-26 09:15:00", "26-06-2025 09:16"], format="mixed", dayfirst=True),
        lambda: pd.to_datetime([1750909500, 1750909560], unit="s", utc=True),
        lambda: (pd.Timestamp("2025-06-26T09:15:00+05:30").tz_convert("UTC"), pd.Timedelta("5min")),
        lambda: pd.DataFrame([{"time": "2025-06-26T09:15:00+05:30", "close": 1.0}]).set_index("time"),
        lambda: dt.datetime.strptime("2025-06-26 09:15", "%Y-%m-%d %H:%M"),
        lambda: dt.datetime.fromisoformat("2025-06-26T09:15:00+05:30").astimezone(dt.UTC),
        lambda: (statistics.stdev([1.0, 2.0, 3.0]), statistics.correlation([1, 2, 3], [1, 2, 4])),
        lambda: json.dumps(json.loads('{"a": [1, 2.5, null]}')),
        lambda: "{:.2f} {!r}".format(1.234, "x"),
    ]
    for step in steps:
        try:
            step()
        except Exception:  # pragma: no cover - depends on library versions
            pass
    user_globals.preload()
    policy.compile_source("import numpy as np\ndef f(t, b, p):\n    return {'x': np.mean([1.0]) ** 2}\n")
    traceback.extract_tb(None)


def _harden() -> dict[str, Any]:
    """Best-effort isolation of the worker itself; returns what was achieved (sent in the hello frame)."""
    info: dict[str, Any] = {}
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):  # pragma: no cover
        pass
    os.umask(0o077)
    err = _libc_call("unshare", _CLONE_NEWNET)
    if err and os.geteuid() != 0:
        err = _libc_call("unshare", _CLONE_NEWUSER | _CLONE_NEWNET)
    info["network_isolated"] = err == 0
    info["privileges_dropped"] = False
    if os.geteuid() == 0:
        try:
            import pwd

            try:
                entry = pwd.getpwnam("nobody")
                uid, gid = entry.pw_uid, entry.pw_gid
            except KeyError:  # pragma: no cover
                uid = gid = 65534
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            info["privileges_dropped"] = os.geteuid() == uid and os.getuid() == uid
        except OSError as exc:  # pragma: no cover - e.g. no CAP_SETUID in this container
            info["privilege_drop_error"] = str(exc)
    info["no_new_privs"] = _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    _libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
    info["uid"], info["gid"] = os.getuid(), os.getgid()
    return info


def _describe_exception(exc: BaseException) -> str:
    """``Type: message (line N)`` where N is the deepest line of user code in the traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == policy.USER_FILENAME:
            line = frame.lineno
    try:
        message = str(exc)
    except Exception:  # pragma: no cover - hostile __str__ is impossible (no dunder defs), but be safe
        message = "<unprintable>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if line is not None:
        text += f" (line {line})"
    return text[:MAX_ERROR_CHARS]


def _execute(code: types.CodeType, request: dict[str, Any]) -> dict[str, Any]:
    """Run user code in this (grandchild) process; return the envelope ``{"ok", "result"|"error"}``."""
    function_name = request["function_name"]
    memory_mb = request["memory_limit_mb"]
    try:
        namespace = user_globals.make_globals()
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
        _release_memory_slack()
        return {"ok": False, "error": f"MemoryError: memory limit of {memory_mb} MB exceeded"}
    except RecursionError as exc:
        return {"ok": False, "error": _describe_exception(exc)}
    except ResultError as exc:
        return {"ok": False, "error": f"invalid result: {exc}"[:MAX_ERROR_CHARS]}
    except BaseException as exc:  # noqa: B036 - user code may raise anything, incl. SystemExit
        try:
            return {"ok": False, "error": _describe_exception(exc)}
        except MemoryError:
            _release_memory_slack()
            return {"ok": False, "error": f"MemoryError: memory limit of {memory_mb} MB exceeded"}


def _release_memory_slack() -> None:
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    except (ValueError, OSError):  # pragma: no cover
        pass


def _set_limits(request: dict[str, Any]) -> None:
    """Apply the per-call hard limits to this grandchild (cannot be raised again by anything in it)."""
    memory = int(request["memory_limit_mb"]) * 1024 * 1024
    soft_as = _vm_bytes() + memory
    resource.setrlimit(resource.RLIMIT_AS, (soft_as, soft_as + MEMORY_SLACK_BYTES))
    cpu_limit = request.get("cpu_time_s")
    cpu = max(1, math.ceil(cpu_limit)) if cpu_limit else math.ceil(request["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (GRANDCHILD_NOFILE, GRANDCHILD_NOFILE))
    for name in ("RLIMIT_NPROC", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE"):
        limit = getattr(resource, name, None)
        if limit is not None:
            try:
                resource.setrlimit(limit, (0, 0))
            except (ValueError, OSError):  # pragma: no cover
                pass


def _grandchild(
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
        _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the worker died before PDEATHSIG was armed
            os._exit(72)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _set_limits(request)
        sys.setrecursionlimit(RECURSION_LIMIT)
        envelope = _execute(code, request)
        if envelope.get("ok"):
            payload = '{"ok":true,"result":' + envelope["result_json"] + "}"
        else:
            payload = json.dumps({"ok": False, "error": str(envelope.get("error"))[:MAX_ERROR_CHARS]})
        protocol.write_all(write_fd, payload.encode("utf-8"))
        os.close(write_fd)  # EOF for the worker now, before the (slow) address-space teardown of the exit
        status = 0
    except BaseException:  # noqa: B036 - must reach os._exit
        status = 71
    finally:
        os._exit(status)


_SIGNAL_MESSAGES = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGKILL: "killed (CPU time hard limit, memory exhaustion or external kill)",
    signal.SIGSEGV: "crashed (segmentation fault)",
    signal.SIGBUS: "crashed (bus error)",
    signal.SIGABRT: "crashed (aborted)",
    signal.SIGXFSZ: "tried to write a file",
}


class Worker:
    """The request loop of one sandbox worker process."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.cache: collections.OrderedDict[str, tuple[types.CodeType | None, list[str]]] = (
            collections.OrderedDict()
        )
        self.pid = os.getpid()
        self.pending_reap: int | None = None

    def compiled(self, source: str) -> tuple[types.CodeType | None, list[str]]:
        """Compile ``source`` under the sandbox policy, cached by SHA-256 (LRU of ``CODE_CACHE_SIZE``)."""
        key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        entry = policy.compile_source(source)
        self.cache[key] = entry
        if len(self.cache) > CODE_CACHE_SIZE:
            self.cache.popitem(last=False)
        return entry

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Execute one request in a forked grandchild and describe the outcome."""
        reply: dict[str, Any] = {"id": request.get("id"), "ok": False, "killed": False}
        try:
            source = request["source"]
            function_name = request["function_name"]
            timeout_s = float(request["timeout_s"])
            max_output = int(request["max_output_bytes"])
        except (KeyError, TypeError, ValueError) as exc:
            reply["error"] = f"bad request: {exc}"
            return reply
        name_error = policy.check_function_name(function_name)
        if name_error:
            reply["error"] = name_error
            return reply
        code, errors = self.compiled(source)
        if code is None:
            reply["error"] = "compile error: " + "; ".join(errors)
            return reply

        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # grandchild
            os.close(read_fd)
            _grandchild(code, request, write_fd, [self.in_fd, self.out_fd], self.pid)
        os.close(write_fd)
        deadline = started + timeout_s
        limit = max_output + 16384
        buf = bytearray()
        timed_out = too_big = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select([read_fd], [], [], remaining)
                if not ready:
                    continue
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > limit:
                    too_big = True
                    break
        finally:
            os.close(read_fd)
        if not (timed_out or too_big) and buf:
            try:
                envelope = json.loads(bytes(buf))
            except ValueError:
                envelope = None
            if isinstance(envelope, dict) and "ok" in envelope:
                # A complete answer: reply first, reap afterwards (see serve()).
                self.pending_reap = pid
                reply["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
                if envelope["ok"]:
                    reply.update(ok=True, result=envelope.get("result"))
                else:
                    reply["error"] = str(envelope.get("error"))
                return reply
        status = self._reap(pid, deadline if not (timed_out or too_big) else None)
        reply["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
        if timed_out:
            reply.update(error=f"timed out after {timeout_s:g} s (wall-clock limit)", killed=True)
            return reply
        if too_big:
            reply.update(error=f"output too large (limit max_output_bytes={max_output})", killed=True)
            return reply
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            text = _SIGNAL_MESSAGES.get(sig, f"killed by signal {sig}")
            try:
                text += f" [{signal.Signals(sig).name}]"
            except ValueError:  # pragma: no cover
                pass
            reply.update(error=text, killed=True)
        elif status is not None and os.WIFEXITED(status):
            reply["error"] = f"sandbox process exited with status {os.WEXITSTATUS(status)} without a result"
        else:
            reply.update(error="sandbox process did not finish", killed=True)
        return reply

    @staticmethod
    def _reap(pid: int, deadline: float | None) -> int | None:
        """Wait for the grandchild (until ``deadline``; SIGKILL it first when ``deadline`` is None or passed)."""
        if deadline is not None:
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
                time.sleep(0.0005)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover
            pass
        _, status = os.waitpid(pid, 0)
        return status

    def serve(self) -> None:
        """Answer requests until the caller closes the request pipe."""
        while True:
            try:
                request = protocol.read_frame(self.in_fd, eof_ok=True)
            except protocol.ProtocolError:
                return
            if request is None:
                return
            if not isinstance(request, dict):
                reply: dict[str, Any] = {"ok": False, "error": "bad request", "killed": False}
            elif request.get("type") == "ping":
                reply = {"id": request.get("id"), "ok": True, "pong": True}
            else:
                try:
                    reply = self.handle(request)
                except Exception as exc:  # worker-side failure: report, keep serving
                    reply = {
                        "id": request.get("id"),
                        "ok": False,
                        "killed": False,
                        "error": f"sandbox error: {exc}",
                    }
            try:
                protocol.write_frame(self.out_fd, protocol.encode_frame(reply))
            except protocol.ProtocolError:
                return
            finally:
                if self.pending_reap is not None:
                    pid, self.pending_reap = self.pending_reap, None
                    self._reap(pid, None)  # it already answered: make sure it is gone, then collect it


def main() -> None:
    """Entry point: set up, harden, say hello, serve."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for fd in (in_fd, out_fd):
        os.set_inheritable(fd, False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller shuts us down by closing the pipe
    _preload()
    info = _harden()
    status = _status()
    info.update(
        type="hello",
        pid=os.getpid(),
        python=sys.version.split()[0],
        baseline_vm_kb=status.get("VmSize"),
        baseline_rss_kb=status.get("VmRSS"),
        threads=status.get("Threads"),
        recursion_limit=RECURSION_LIMIT,
    )
    protocol.write_frame(out_fd, protocol.encode_frame(info))
    Worker(in_fd, out_fd).serve()


if __name__ == "__main__":
    main()
