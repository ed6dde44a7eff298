"""Scale-out benchmark (issue 14): three underlyings (NIFTY, BANKNIFTY, FINNIFTY chains: spot and ±15 strikes),
each routed to its own queue with its own worker (one process), with 1 and 2 bridges, on one Redis and on a
three-node Redis Cluster (each underlying on a node of its own), with Redis and RabbitMQ as the Celery broker.

Per setting: p50/p99 from XADD to the record on the output stream at ``--rate`` (default 2,000 ticks/s in all),
then the sustained ticks/s when offered ``--flood`` (more than the stack can take), and the CPU seconds each process
kind spent (bridges, workers, Redis servers) per 1,000 ticks in the flood, from /proc. Everything runs on
127.0.0.1: a Redis server (or cluster) of its own on free ports, the machine's PostgreSQL and RabbitMQ (queues of
its own), for a bounded time.

    .venv/bin/python bench/scale.py [--seconds 8] [--rate 2000] [--flood 15000] [--only single-redis-1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._stack import ROOT, bench_env, prepare  # noqa: E402
from faults.redis_cluster import LocalCluster, free_ports  # noqa: E402

DATABASE, PLAIN_DB = "signal_bench_scale", 6
SYMBOLS = {"NSE@NIFTY": 24000, "NSE@BANKNIFTY": 52000, "NSE@FINNIFTY": 23000}
QUEUES = {symbol: "bench-" + symbol.split("@")[1].lower() for symbol in SYMBOLS}
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
TICK = os.sysconf("SC_CLK_TCK")


def tagged(symbol: str, cluster: bool) -> str:
    return "{" + symbol + "}" if cluster else symbol


def instruments(symbol: str) -> list[str]:
    base = SYMBOLS[symbol]
    step = 100 if base > 40000 else 50
    return [f"{symbol}@index"] + [f"{symbol}@options@2030-06-27@{right}@{base + step * i}"
                                  for i in range(-15, 16) for right in ("call", "put")]


class Stack:
    """The data Redis (a server or a cluster), the bridges and one worker per queue, for one setting."""

    def __init__(self, cluster: bool, broker: str, bridges: int, workdir: Path):
        self.cluster, self.broker, self.bridges = cluster, broker, bridges
        self.workdir = workdir
        self.procs: dict[str, list[subprocess.Popen]] = {"bridge": [], "worker": []}
        self.redis_pids: list[int] = []
        self.nodes: LocalCluster | None = None
        self.server: subprocess.Popen | None = None

    def start_redis(self) -> str:
        if self.cluster:
            self.nodes = LocalCluster(self.workdir / "cluster")
            url = self.nodes.start(spread=[tagged(s, True) for s in SYMBOLS])
            self.redis_pids = [int((self.workdir / "cluster" / str(p) / "pid").read_text()) for p in self.nodes.ports]
            return url
        port = free_ports(1, 19100, 19500)[0]
        self.server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"], stdout=subprocess.DEVNULL)
        self.redis_pids = [self.server.pid]
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"

    def env(self, url: str) -> dict[str, str]:
        env = bench_env(DATABASE, PLAIN_DB)
        env.update({"REDIS_URL": url, "REDIS_CLUSTER": "true" if self.cluster else "false",
                    "CHANNEL_LAYER_URL": f"redis://127.0.0.1:6379/{PLAIN_DB}",
                    "CACHE_URL": f"redis://127.0.0.1:6379/{PLAIN_DB}",
                    "CELERY_BROKER_URL": AMQP if self.broker == "rabbitmq" else f"redis://127.0.0.1:6379/{PLAIN_DB + 1}",
                    "SIGNAL_QUEUE_ROUTES": ",".join(f"{s}={q}" for s, q in QUEUES.items()),
                    "SIGNAL_UNDERLYING_WAIT_MS": "0"})
        return env

    def start(self, env: dict[str, str]) -> None:
        for i in range(self.bridges):
            self.procs["bridge"].append(subprocess.Popen(
                [sys.executable, "manage.py", "stream_bridge", "--consumer", f"bench-bridge-{i}"], cwd=ROOT, env=env))
        for queue in QUEUES.values():
            self.procs["worker"].append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "signal_project", "worker", "-Q", queue, "--pool=solo",
                 "-n", f"{queue}@%h", "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=env))
        time.sleep(5.0)  # imports and connections

    def cpu_seconds(self) -> dict[str, float]:
        found = {kind: sum(_cpu(p.pid) for p in procs) for kind, procs in self.procs.items()}
        found["redis"] = sum(_cpu(pid) for pid in self.redis_pids)
        return found

    def stop(self) -> None:
        for proc in self.procs["bridge"] + self.procs["worker"]:
            proc.terminate()
        for proc in self.procs["bridge"] + self.procs["worker"]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.nodes is not None:
            self.nodes.stop()
        if self.server is not None:
            self.server.kill()
            self.server.wait()


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def offer(client: redis.Redis, cluster: bool, rate: float, seconds: float) -> int:
    """XADD ticks stamped with their send time, round-robin over the three chains, paced to ``rate`` per second."""
    names = {s: f"tick_stream:{tagged(s, cluster)}" for s in SYMBOLS}
    keys = [(names[s], k) for s in SYMBOLS for k in instruments(s)]
    keys = [keys[(i * 63) % len(keys)] for i in range(len(keys))]  # interleave the chains
    sent, started = 0, time.time()
    chunk = max(1, int(rate / 100))
    while True:
        now = time.time()
        if now - started >= seconds:
            return sent
        due = min(int((now - started) * rate) - sent, chunk)
        if due <= 0:
            time.sleep(0.001)
            continue
        pipe = client.pipeline(transaction=False)
        for i in range(due):
            stream, key = keys[(sent + i) % len(keys)]
            pipe.xadd(stream, {"data": json.dumps({"instrument_key": key, "ltp": 100.0 + (sent + i) % 50,
                                                   "ltt": now, "volume": sent + i})})
        pipe.execute()
        sent += due


def collect(client: redis.Redis, cluster: bool, symbol: str, since: float, until: float,
            out: list[tuple[float, float]]) -> None:
    """(arrival, tick time) of every record on the symbol's output stream of a tick sent after ``since``."""
    stream, last = f"signal_output_stream:{tagged(symbol, cluster)}", "$"
    while time.time() < until:
        reply = client.xread({stream: last}, count=5000, block=200)
        arrived = time.time()
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                record = json.loads(fields[b"data"])
                if record["tick_data"]["ts"] >= since:
                    out.append((arrived, record["tick_data"]["ts"]))


def measure(client: redis.Redis, cluster: bool, rate: float, seconds: float, drain_s: float = 20) -> dict[str, float]:
    arrivals: list[tuple[float, float]] = []
    since = time.time()
    readers = [threading.Thread(target=collect, args=(client, cluster, s, since, since + seconds + drain_s, arrivals))
               for s in SYMBOLS]
    for reader in readers:
        reader.start()
    time.sleep(0.3)
    started = time.time()
    sent = offer(client, cluster, rate, seconds)
    deadline = time.time() + drain_s
    while len(arrivals) < sent and time.time() < deadline:
        time.sleep(0.1)
    for reader in readers:
        reader.join()
    latencies = sorted((a - t) * 1000 for a, t in arrivals)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [float("nan")] * 99
    span = max((a for a, _ in arrivals), default=started) - started
    return {"sent": sent, "received": len(arrivals), "throughput_per_s": len(arrivals) / span if span else 0.0,
            "p50_ms": q[49], "p99_ms": q[98]}


def enable_price_config(env: dict[str, str]) -> None:
    """One `price` config over every NSE instrument (the demo's configs off): the cheapest computation, so the
    figures are the pipeline's and Redis's own costs."""
    code = ("from configs.models import SignalConfig as C; C.objects.update(enabled=False); "
            "c = C(name='scale-price', config={'name': 'scale-price', 'version': '1.0', 'instrument_key': 'NSE@*', "
            "'interval': '1m', 'frequency': 'every_tick', 'internal_functions': [{'name': 'price', "
            "'parameters': {}}]}); c.save(changed_by='bench')")
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)


def run_setting(cluster: bool, broker: str, bridges: int, args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        stack = Stack(cluster, broker, bridges, Path(tmp))
        try:
            env = stack.env(stack.start_redis())
            prepare(DATABASE, PLAIN_DB, env)
            enable_price_config(env)
            client = (RedisCluster.from_url(env["REDIS_URL"]) if cluster else redis.Redis.from_url(env["REDIS_URL"]))
            stack.start(env)
            measure(client, cluster, args.rate, 2, drain_s=5)  # warm-up
            at_rate = measure(client, cluster, args.rate, args.seconds)
            before = stack.cpu_seconds()
            flood = measure(client, cluster, args.flood, args.seconds)
            spent = {kind: after - before[kind] for kind, after in stack.cpu_seconds().items()}
        finally:
            stack.stop()
    per_1k = {kind: 1000 * s / flood["received"] if flood["received"] else float("nan") for kind, s in spent.items()}
    return {"setting": f"{'cluster' if cluster else 'single'}-{broker}-{bridges}", "p50_ms": at_rate["p50_ms"],
            "p99_ms": at_rate["p99_ms"], "rate_received": at_rate["received"], "rate_sent": at_rate["sent"],
            "sustained_per_s": flood["throughput_per_s"], "flood_received": flood["received"],
            "cpu_s_per_1k": per_1k,
            "ticks_per_cpu_s": flood["received"] / sum(spent.values()) if sum(spent.values()) else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--flood", type=float, default=15000.0)
    parser.add_argument("--only", default="", help="comma-separated settings, e.g. single-redis-1,cluster-redis-2")
    args = parser.parse_args()
    settings = [(c, b, n) for c in (False, True) for b in ("redis", "rabbitmq") for n in (1, 2)]
    wanted = set(filter(None, args.only.split(",")))
    results = []
    for cluster, broker, bridges in settings:
        name = f"{'cluster' if cluster else 'single'}-{broker}-{bridges}"
        if wanted and name not in wanted:
            continue
        results.append(run_setting(cluster, broker, bridges, args))
        report(results[-1:], args)
    print("\nall settings")
    report(results, args)
    print(json.dumps(results))


def report(results: list[dict], args: argparse.Namespace) -> None:
    print(f"{'setting':<20} {'p50 ms':>7} {'p99 ms':>7} {'recv/sent':>11} {'sustained/s':>12} {'ticks/CPU-s':>12}"
          f" {'CPU-ms per 1k ticks: bridge':>28} {'worker':>7} {'redis':>7}")
    for r in results:
        cpu = r["cpu_s_per_1k"]
        print(f"{r['setting']:<20} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['rate_received']:>5}/{r['rate_sent']:<5} "
              f"{r['sustained_per_s']:>12.0f} {r['ticks_per_cpu_s']:>12.0f} {1000 * cpu['bridge']:>28.0f} "
              f"{1000 * cpu['worker']:>7.0f} {1000 * cpu['redis']:>7.0f}")
    print(f"(rate {args.rate:.0f}/s, flood {args.flood:.0f}/s, {args.seconds:.0f} s each)")


if __name__ == "__main__":
    main()
