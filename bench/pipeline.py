"""Pipeline benchmark (issue 2): ticks offered at a fixed rate to a running bridge + one Celery worker.

Reports sustained ticks/s (ticks out per second while offered faster than processed) and p50/p99 latency from
XADD to arrival on the output stream, for the `price` computation (demo config `nifty-price`). The stack first runs
2 s at the first rate (start-up and the ramp from idle are not a sustained rate), then each rate for ``--seconds``;
offer more than the stack can take (the default 15,000/s) to measure its sustained throughput.

    .venv/bin/python bench/pipeline.py [--rates 2000,10000,15000] [--seconds 10] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._stack import bench_env, prepare, running_stack  # noqa: E402

DATABASE, REDIS_DB = "signal_bench", 4
CONFIG = "nifty-price"
KEYS = [f"NSE@NIFTY@options@2030-06-27@{right}@{24000 + 50 * i}" for i in range(-15, 16) for right in ("call", "put")]


def offer(client: redis.Redis, rate: float, seconds: float) -> int:
    """XADD ticks stamped with their send time, paced to ``rate`` per second; returns how many were sent."""
    sent, started = 0, time.time()
    chunk = max(1, int(rate / 200))
    while True:
        now = time.time()
        if now - started >= seconds:
            return sent
        due = int((now - started) * rate) - sent
        if due <= 0:
            time.sleep(0.001)
            continue
        pipe = client.pipeline(transaction=False)
        for i in range(min(due, chunk * 4)):
            key = KEYS[(sent + i) % len(KEYS)]
            pipe.xadd("tick_stream:NSE@NIFTY", {"data": json.dumps(
                {"instrument_key": key, "ltp": 100.0 + (sent + i) % 50, "ltt": now, "volume": sent + i})})
        pipe.execute()
        sent += min(due, chunk * 4)


def collect(client: redis.Redis, expected: int, since: float, deadline: float, out: list[tuple[float, float]]) -> None:
    """Read the output stream; record (arrival time, tick time) of each `nifty-price` record of a tick sent after
    ``since`` (earlier runs' stragglers are not this run's)."""
    last = "$"
    while len(out) < expected and time.time() < deadline:
        reply = client.xread({"signal_output_stream:NSE@NIFTY": last}, count=5000, block=200)
        arrived = time.time()
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                record = json.loads(fields[b"data"])
                if record["config_name"] == CONFIG and record["tick_data"]["ts"] >= since:
                    out.append((arrived, record["tick_data"]["ts"]))


def run_rate(client: redis.Redis, rate: float, seconds: float) -> dict[str, float]:
    arrivals: list[tuple[float, float]] = []
    expected = int(rate * seconds)
    since = time.time()
    reader = threading.Thread(target=collect, args=(client, expected, since, since + seconds + 30, arrivals))
    reader.start()
    time.sleep(0.3)
    started = time.time()
    sent = offer(client, rate, seconds)
    reader.join()
    latencies = sorted((a - t) * 1000 for a, t in arrivals)
    done = [a for a, _ in arrivals]
    span = (max(done) - started) if done else float("nan")
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [float("nan")] * 99
    return {"offered_per_s": rate, "sent": sent, "received": len(arrivals), "throughput_per_s": len(arrivals) / span,
            "p50_ms": q[49], "p99_ms": q[98], "max_ms": latencies[-1] if latencies else float("nan")}


def only_config(database: str, name: str) -> None:
    """Leave only the measured demo config enabled (workers load configs when they start)."""
    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{database}", autocommit=True) as conn:
        conn.execute("UPDATE configs_signalconfig SET enabled = (name = %s)", (name,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="2000,10000,15000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="worker processes (default 2, as the Procfile's worker; 1 = solo pool)")
    args = parser.parse_args()
    env = bench_env(DATABASE, REDIS_DB)
    os.environ.update({k: env[k] for k in ("REDIS_URL",)})
    prepare(DATABASE, REDIS_DB, env)
    only_config(DATABASE, CONFIG)
    client = redis.Redis(db=REDIS_DB)
    results = []
    with running_stack(env, workers=1, concurrency=args.concurrency):
        rates = [float(x) for x in args.rates.split(",")]
        # warm-up at the first (lowest) rate: start-up and the ramp from idle are not part of a sustained rate
        run_rate(client, rates[0], 2)
        time.sleep(1.0)
        for rate in rates:
            results.append(run_rate(client, rate, args.seconds))
            time.sleep(1.0)
    print(f"bridge + one worker ({args.concurrency} process{'es' if args.concurrency > 1 else ''})")
    print(f"{'offered/s':>10} {'sent':>8} {'received':>9} {'throughput/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in results:
        print(f"{r['offered_per_s']:>10.0f} {r['sent']:>8} {r['received']:>9} {r['throughput_per_s']:>13.0f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
