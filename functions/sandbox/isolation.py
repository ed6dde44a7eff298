"""OS isolation of the sandbox worker and of each forked grandchild (rlimits, namespaces, privileges).

The worker hardens itself once (:func:`harden`, each step best-effort and reported in its ``hello`` frame); every
grandchild then sets its own *hard* per-call limits (:func:`set_call_limits`) that nothing in it can raise again.
Linux only: ``/proc``, ``prctl`` and ``unshare`` through libc.
"""

from __future__ import annotations

import ctypes
import math
import os
import pwd
import resource
import signal
from typing import Any

GRANDCHILD_NOFILE = 16
"""RLIMIT_NOFILE in the grandchild (it needs no new files; lazily read data files still fit)."""

MEMORY_SLACK_BYTES = 16 * 1024 * 1024
"""Hard RLIMIT_AS sits this much above the soft limit, so a MemoryError can still be reported."""

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38

_libc: Any = None


def libc_call(name: str, *args: int) -> int:
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


def process_status() -> dict[str, int]:
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


def vm_bytes() -> int:
    """Current address-space size of this process in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except OSError:  # pragma: no cover
        return 0


def harden() -> dict[str, Any]:
    """Best-effort isolation of the worker itself; returns what was achieved (sent in the hello frame)."""
    info: dict[str, Any] = {}
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):  # pragma: no cover
        pass
    os.umask(0o077)
    err = libc_call("unshare", _CLONE_NEWNET)
    if err and os.geteuid() != 0:
        err = libc_call("unshare", _CLONE_NEWUSER | _CLONE_NEWNET)
    info["network_isolated"] = err == 0
    info["privileges_dropped"] = False
    if os.geteuid() == 0:
        try:
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
    info["no_new_privs"] = libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
    info["uid"], info["gid"] = os.getuid(), os.getgid()
    return info


def set_call_limits(request: dict[str, Any]) -> None:
    """Apply the per-call hard limits to this grandchild (cannot be raised again by anything in it)."""
    memory = int(request["memory_limit_mb"]) * 1024 * 1024
    soft_as = vm_bytes() + memory
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


def release_memory_slack() -> None:
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    except (ValueError, OSError):  # pragma: no cover
        pass


def die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGKILL when the parent (the worker) dies; False when it is already gone (then exit at once)."""
    libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent_pid
