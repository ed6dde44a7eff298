"""The service's processes, started from the Procfile's own commands (each on its own, not under honcho, which stops
every process when one dies), and supervised as a process manager would: a process that dies is started again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from faults.services import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("web", "bridge", "worker", "beat", "configs")  # the Procfile's feed is replaced by the suite's own


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """``name: command`` lines of a Procfile."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: no psutil needed)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class Process:
    """One Procfile process, run by the shell as the Procfile says (``exec``: the pid is the process itself)."""

    def __init__(self, name: str, command: str, env: dict[str, str], logdir: Path):
        self.name, self.command, self.env = name, command, env
        self.log = (logdir / f"{name}.log").open("ab")
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.unexpected_exits = 0
        self.expect_exit = False

    def start(self) -> None:
        self.expect_exit = False
        self.proc = subprocess.Popen(["bash", "-c", f"exec {self.command}"], cwd=ROOT, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, group: bool = False) -> None:
        """Send ``sig`` to the process (or its whole process group) and wait for it to end; the supervisor will not
        count the exit as a crash."""
        if not self.alive():
            return
        self.expect_exit = True
        try:
            os.killpg(self.pid, sig) if group else os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of the whole group (a Celery worker's pool children included)."""
        if self.alive():
            self.kill(signal.SIGTERM)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Stack:
    """Every process of the service, supervised: one that exits on its own is counted and started again."""

    def __init__(self, env: dict[str, str], logdir: Path, restart_delay_s: float = 1.0):
        commands = procfile()
        missing = [name for name in PROCESSES if name not in commands]
        if missing:
            raise RuntimeError(f"Procfile has no {', '.join(missing)}")
        bindir = str(Path(sys.executable).parent)
        env = {**env, "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}"}
        (ROOT / ".run").mkdir(exist_ok=True)  # the beat's pidfile
        self.processes = {name: Process(name, commands[name], env, logdir) for name in PROCESSES}
        self.restart_delay_s = restart_delay_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    def start(self) -> None:
        for process in self.processes.values():
            process.start()
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for process in self.processes.values():
                if process.alive():
                    continue
                if not process.expect_exit:
                    process.unexpected_exits += 1
                time.sleep(self.restart_delay_s)
                if not self._stop.is_set():
                    process.start()

    def restart_counts(self) -> dict[str, int]:
        return {name: p.unexpected_exits for name, p in self.processes.items()}

    def stop(self) -> None:
        self._stop.set()
        for process in self.processes.values():
            process.stop()
