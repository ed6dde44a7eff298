"""A local Redis Cluster of three primaries, from the ``redis-server`` binary, for the cluster tests and benchmarks.

    python -m faults.redis_cluster start DIR [NSE@NIFTY,NSE@BANKNIFTY,NSE@FINNIFTY]
    # prints REDIS_URL=redis://127.0.0.1:PORT/0 (any node names it all); the optional underlyings (one per node)
    # each get a node of their own, else slots are split evenly
    python -m faults.redis_cluster stop DIR

The nodes run as daemons (they outlive the command, for a test run that follows it) with their files in DIR,
keeping nothing on disk between runs; ``stop`` shuts them down and removes DIR. Only 127.0.0.1.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import time
from binascii import crc_hqx
from pathlib import Path

import redis

from faults.services import wait_until

NODES = 3
SLOTS = 16384
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, first: int = 17000, last: int = 19000) -> list[int]:
    """``count`` ports whose bus ports are free too (so below 55536)."""
    found: list[int] = []
    for port in range(first, last):
        if _free(port) and _free(port + BUS_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} free ports for Redis Cluster nodes in {first}-{last}")


class LocalCluster:
    def __init__(self, workdir: Path, nodes: int = NODES):
        self.dir = Path(workdir)
        self.nodes = nodes
        self.ports: list[int] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, spread: list[str] | None = None) -> str:
        """Start the nodes and join them into one cluster (all 16384 slots covered); returns a node's URL.

        Slots are split evenly, or, with ``spread`` (one key per node), so that each of those keys lies on a node
        of its own: three underlyings hashed by their tags would otherwise often share a node, and a benchmark of
        three shards would measure one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = free_ports(self.nodes)
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir(exist_ok=True)
            subprocess.run(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                 "--appendonly", "no", "--save", "", "--daemonize", "yes", "--pidfile", str(node_dir / "pid"),
                 "--logfile", str(node_dir / "redis.log")], check=True)
        for port in self.ports:
            wait_until(lambda p=port: _answers(p), 30, f"redis-server on {port}")
        first = redis.Redis(port=self.ports[0])
        for port, (low, high) in zip(self.ports, slot_ranges(self.nodes, spread), strict=True):
            node = redis.Redis(port=port)
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
            node.execute_command("CLUSTER", "SET-CONFIG-EPOCH", port)
            if port != self.ports[0]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        wait_until(self.ready, 30, "Redis Cluster")
        (self.dir / "ports").write_text(" ".join(map(str, self.ports)))
        return self.url

    def ready(self) -> bool:
        """Every node sees the cluster as ok (all slots served)."""
        for port in self.ports:
            try:
                info = redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER INFO")
            except redis.RedisError:
                return False
            state = info.get("cluster_state") if isinstance(info, dict) else None
            if state not in ("ok", b"ok"):
                return False
        return True

    def stop(self) -> None:
        ports_file = self.dir / "ports"
        ports = self.ports or ([int(p) for p in ports_file.read_text().split()] if ports_file.exists() else [])
        for port in ports:
            try:
                redis.Redis(port=port, socket_timeout=2).shutdown(nosave=True)
            except redis.RedisError:
                pass  # gone already (SHUTDOWN also ends the connection: redis-py reports that as an error)
        deadline = time.monotonic() + 10
        while any(_answers(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


def slot_ranges(nodes: int, spread: list[str] | None = None) -> list[tuple[int, int]]:
    """Each node's (first, last) slot: even, or cut halfway between the slots of the ``spread`` keys."""
    if not spread:
        bounds = [round(i * SLOTS / nodes) for i in range(nodes + 1)]
    else:
        slots = sorted(key_slot(key) for key in spread)
        if len(spread) != nodes or len(set(slots)) != nodes:
            raise ValueError(f"spread needs {nodes} keys on distinct slots, got {spread}")
        bounds = [0, *((a + b + 1) // 2 for a, b in itertools.pairwise(slots)), SLOTS]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(nodes)]


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, or of the whole key without one)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc_hqx(key.encode(), 0) % SLOTS


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = LocalCluster(Path(argv[1]))
    if argv[0] == "start":
        spread = [f"{{{key}}}" for key in argv[2].split(",")] if len(argv) == 3 else None
        print(f"REDIS_URL={cluster.start(spread)}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
