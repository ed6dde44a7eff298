"""Sandbox worker process: ``python -m functions.sandbox.child`` (started by :mod:`functions.sandbox.workers`).

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

Step 1 is :mod:`functions.sandbox.preload`, step 2 :func:`functions.sandbox.isolation.harden`, the grandchild
:mod:`functions.sandbox.grandchild`; this module is the entry point and the request loop.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import select
import signal
import sys
import time
import types
from typing import Any

from functions.sandbox import policy, protocol
from functions.sandbox.grandchild import RECURSION_LIMIT, run_grandchild
from functions.sandbox.isolation import harden, process_status
from functions.sandbox.preload import preload

CODE_CACHE_SIZE = 256
"""Compiled sources kept per worker (LRU)."""


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
        return self._run(code, request, reply, timeout_s, max_output)

    def _run(
        self,
        code: types.CodeType,
        request: dict[str, Any],
        reply: dict[str, Any],
        timeout_s: float,
        max_output: int,
    ) -> dict[str, Any]:
        """Fork the grandchild, wait at most ``timeout_s`` for its envelope and fill ``reply`` from it."""
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # grandchild
            os.close(read_fd)
            run_grandchild(code, request, write_fd, [self.in_fd, self.out_fd], self.pid)
        os.close(write_fd)
        deadline = started + timeout_s
        buf, timed_out, too_big = _read_envelope(read_fd, deadline, max_output + 16384)
        envelope = None if timed_out or too_big else _decode_envelope(buf)
        if envelope is not None:
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
        elif too_big:
            reply.update(error=f"output too large (limit max_output_bytes={max_output})", killed=True)
        else:
            reply.update(_describe_end(status))
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


def _read_envelope(read_fd: int, deadline: float, limit: int) -> tuple[bytearray, bool, bool]:
    """Read the grandchild's pipe until EOF; returns ``(data, timed_out, too_big)`` and closes ``read_fd``."""
    buf = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return buf, True, False
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return buf, False, False
            buf += chunk
            if len(buf) > limit:
                return buf, False, True
    finally:
        os.close(read_fd)


def _decode_envelope(buf: bytearray) -> dict[str, Any] | None:
    """The grandchild's complete envelope, or None when it wrote nothing usable."""
    if not buf:
        return None
    try:
        envelope = json.loads(bytes(buf))
    except ValueError:
        return None
    return envelope if isinstance(envelope, dict) and "ok" in envelope else None


def _describe_end(status: int | None) -> dict[str, Any]:
    """``error``/``killed`` for a grandchild that ended without an envelope (signal, exit status or neither)."""
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        text = _SIGNAL_MESSAGES.get(sig, f"killed by signal {sig}")
        try:
            text += f" [{signal.Signals(sig).name}]"
        except ValueError:  # pragma: no cover
            pass
        return {"error": text, "killed": True}
    if status is not None and os.WIFEXITED(status):
        return {"error": f"sandbox process exited with status {os.WEXITSTATUS(status)} without a result"}
    return {"error": "sandbox process did not finish", "killed": True}


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
    preload()
    info = harden()
    status = process_status()
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
