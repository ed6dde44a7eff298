"""WebSocket fan-out benchmark (issue 13): N concurrent clients on ONE web process, fed by the real pipeline.

The script starts its own stack on 127.0.0.1: a fresh database (``signal_bench_ws``, migrated, demo configs
seeded), a Redis server of its own (port 16399, so no other benchmark or test shares its databases), a stream
bridge, a Celery worker (2 processes, as the Procfile) and one web process (uvicorn, as the Procfile).

``--source pipeline`` (default) XADDs the demo feed (`feed.simulator.NiftySession`: spot, INDVIX, futures and a
2 x 2 x 31-option chain) at ``--rate`` ticks/s, each tick stamped with its send time, so a frame's latency is the
whole path: bridge, worker, Redis Pub/Sub, web process, socket. ``--source direct`` measures the web process alone:
after the pipeline has priced the chain once, the feed stops and the script publishes, at ``--rate`` option ticks/s,
the events a batch would (each option's real latest Greeks as a ``greeks`` event, and per 10 ms batch of them one
``chain`` event per expiry with their strikes), stamped with their send time. For each client count it
opens that many real WebSocket connections (one user each, spread over client processes): 90 % subscribe to the
``greeks`` topic of one option of the demo chain (spread over every option), 10 % to the whole ``chain`` channel of
the nearest expiry. Measured over ``--seconds`` once every client is subscribed:

* frames/s delivered to the clients, and how many events they stood for (``coalesced``);
* p50/p99 from a tick's time to its frame's arrival at the client;
* the web process's memory per connection (RSS after connecting and subscribing, minus before, over N);
* errors: failed connections, error frames, connections closed by the server;
* the CPU the client processes used in the window (`bench/ws_client.py`: a bare-protocol client, so they are not the
  bottleneck), and how long connecting took (at most 100 handshakes in flight per client process).

Then, once the web process is idle (under a tenth of a core, waited for at most 30 s), REST ``realtime/*`` (price,
greeks, indicators in turn) at ``--rest-rate`` requests/s, open loop over 32 keep-alive connections, latency counted
from each request's scheduled time, after 2 s at 50/s and 1 s at the measured rate not counted (the process's first
requests pay its lazy set-up, and its thread pool grows to what the rate needs), with the measuring process's own
garbage collector held off. Every phase is bounded in time; the processes are stopped at the end. The file-descriptor limit is raised to the hard limit (each client holds one
socket, the web process one per client).

    .venv/bin/python -m bench.websocket [--clients 1000,5000] [--seconds 20] [--rate 2000] [--rest-rate 500]
        [--web-processes 1]   # more: uvicorn workers behind the port, CPU and memory summed over them

Targets: ≥ 5,000 frames/s per web process; p99 < 50 ms with 1,000 clients; 5,000 clients held with no errors;
REST p99 < 20 ms at 500 requests/s. Results are printed (and recorded by hand in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import bench_env, running_stack  # noqa: E402
from bench.greeks_pipeline import send  # noqa: E402
from bench.ws_client import client_process  # noqa: E402

DATABASE, REDIS_PORT = "signal_bench_ws", 16_399
CLIENTS_PER_PROCESS = 1250
CONNECT_BUDGET_S = 120.0
# The direct source publishes what one batch of this many seconds of ticks would (the pipeline's batches: 16 ticks
# at the median, so ~8 ms at 2,000 ticks/s): one chain event per expiry and batch, as a worker sends.
DIRECT_BATCH_S = 0.01


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def own_redis() -> subprocess.Popen:
    try:
        redis.Redis(port=REDIS_PORT).ping()
        raise SystemExit(f"port {REDIS_PORT} answers: another bench/websocket.py is running")
    except redis.ConnectionError:
        pass
    proc = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--maxclients", "20000"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(port=REDIS_PORT).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("redis-server did not start")


def prepare(env: dict[str, str]) -> None:
    """Fresh database (migrated, demo configs seeded)."""
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(manage + ["seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    """A process's live children (uvicorn's worker processes)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_kib(pid: int) -> int:
    """Resident memory of a process, with its live children's."""
    own = next((int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")), 0)
    return own + sum(rss_kib(c) for c in children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, with its live children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(c) for c in children(pid))


def start_web(env: dict[str, str], port: int, processes: int = 1) -> subprocess.Popen:
    workers = ["--workers", str(processes)] if processes > 1 else []
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "signal_project.asgi:application", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off",
                             "--backlog", "8192", "--ws-per-message-deflate", "false", *workers], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the web process did not start")


def topics(count: int, first: int, expiries: list[str], options: list[str]) -> list[dict[str, Any]]:
    out = []
    for i in range(first, first + count):
        if i % 10 == 9:
            out.append({"channel": "chain", "instrument_key": "NSE@NIFTY@index",
                        "params": {"expiry_date": expiries[0]}})
        else:
            out.append({"channel": "greeks", "instrument_key": options[i % len(options)]})
    return out


# --- the driver --------------------------------------------------------------------------------------------------
def run_clients(port: int, secret: str, n: int, seconds: float, expiries: list[str], options: list[str],
                web_pid: int) -> dict[str, Any]:
    before = rss_kib(web_pid)
    launched = time.time()
    start = time.time() + min(CONNECT_BUDGET_S, 15 + n * 0.012)
    end = start + seconds
    procs = []
    for first in range(0, n, CLIENTS_PER_PROCESS):
        count = min(CLIENTS_PER_PROCESS, n - first)
        spec = {"port": port, "path": "/ws/v2/signals/", "secret": secret, "first": first,
                "topics": topics(count, first, expiries, options), "start": start, "end": end}
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.websocket", "--client-spec", json.dumps(spec)],
                                      cwd=ROOT, stdout=subprocess.PIPE, text=True))
    time.sleep(max(0.0, start - time.time()))
    during = rss_kib(web_pid)
    cpu_start = cpu_seconds(web_pid)
    time.sleep(max(0.0, end - time.time()))
    web_cpu = cpu_seconds(web_pid) - cpu_start
    results = [json.loads(proc.communicate(timeout=end - time.time() + 90)[0]) for proc in procs]
    total = {key: sum(r[key] for r in results) for key in ("connected", "late", "connect_errors", "error_frames",
                                                            "closed_by_server", "frames", "events", "coalesced_frames",
                                                            "count", "cpu_s")}
    # quantiles from each process's 0.1 % quantiles, weighted by its count
    pooled = sorted(v for r in results for v in r["latencies"] for _ in range(max(1, r["count"] // 1001)))
    q = (lambda p: pooled[int(p * (len(pooled) - 1))] * 1000) if pooled else (lambda p: float("nan"))
    return {"clients": n, **total, "frames_per_s": total["frames"] / seconds, "events_per_s": total["events"] / seconds,
            "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0), "rss_before_mib": before / 1024,
            "rss_connected_mib": during / 1024, "web_cpu_s": web_cpu, "client_cpu_s": total["cpu_s"],
            "close_codes": dict(sum((Counter(r["close_codes"]) for r in results), Counter())),
            "refused": dict(sum((Counter(r["refused"]) for r in results), Counter())),
            "connect_error_kinds": dict(sum((Counter(r["connect_error_kinds"]) for r in results), Counter())),
            "client_processes": len(procs), "connect_s": max(r["connected_at"] for r in results) - launched,
            # what one web process would deliver with a core to itself (the machine is shared)
            "frames_per_web_cpu_s": total["frames"] / web_cpu if web_cpu else float("nan"),
            "kib_per_connection": (during - before) / max(total["connected"], 1)}


async def rest_phase(port: int, token: str, rate: float, seconds: float, option: str) -> dict[str, Any]:
    paths = ["/api/v2/signals/realtime/price/NSE@NIFTY@index", f"/api/v2/signals/realtime/greeks/{option}",
             "/api/v2/signals/realtime/indicators/NSE@NIFTY@index?timeframe=1m"]
    free: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(32):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(path: str, due: float) -> None:
        reader, writer = await free.get()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                     "Accept: application/json\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - due)
        statuses[int(head.split(b" ", 2)[1])] += 1
        free.put_nowait((reader, writer))

    tasks = []
    # this process holds Django (the direct publisher): its full collections took 100-150 ms, which the latencies,
    # counted from each request's scheduled time, would charge to the web process
    gc.freeze()
    gc.disable()
    began = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = began + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    finally:
        gc.enable()
        gc.unfreeze()
    latencies.sort()
    return {"requests": len(latencies), "rate": rate, "statuses": dict(statuses),
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000, "max_ms": latencies[-1] * 1000}


def wait_until_quiet(pid: int, limit_s: float = 30.0) -> float:
    """Wait (at most ``limit_s``) until the web process uses under a tenth of a core, so REST is measured on a
    process with no fan-out backlog left; returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        used = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - used < 0.1:
            break
    return time.monotonic() - began


def feed(client: redis.Redis, rate: float, stop: threading.Event) -> None:
    while not stop.is_set():
        send(client, rate, 1.0, 15)


def wait_for_greeks(client: redis.Redis, options: list[str], timeout_s: float = 90.0) -> None:
    """Until the pipeline has priced most of the chain (a fixed wait was too short when the worker started slowly,
    and the direct publisher then had nothing to send)."""
    from feed import keys

    names = [keys.latest_result("greeks", key) for key in options]
    deadline = time.monotonic() + timeout_s
    while sum(v is not None for v in client.mget(names)) < len(names) * 0.9:
        if time.monotonic() > deadline:
            raise SystemExit("the pipeline priced too few options within the wait")
        time.sleep(0.5)


def publish_direct(options: list[str], rate: float, stop: threading.Event) -> None:
    """What a batch sends, at ``rate`` option events/s: the options' real latest Greeks (read once), restamped."""
    import django

    django.setup()
    from feed import keys
    from feed.instruments import parse_instrument_key
    from feed.redis_client import get_redis
    from signals.delivery import fanout
    from signals.delivery.events import signal_event
    from signals.delivery.ws_chain import chain_events

    entries = {key: json.loads(raw) for key in options if (raw := get_redis().get(keys.latest_result("greeks", key)))}
    if not entries:
        raise SystemExit("the pipeline priced no option: nothing to publish")
    keys_ = list(entries)
    sent, began = 0, time.time()
    while not stop.is_set():
        due = int((time.time() - began) * rate) - sent
        if due < rate * DIRECT_BATCH_S:
            time.sleep(0.001)
            continue
        stamp = datetime.now(UTC).isoformat()
        batch = []
        for i in range(sent, sent + due):
            key = keys_[i % len(keys_)]
            entry = {**entries[key], "timestamp": stamp, "ts": time.time()}
            batch.append((key, entry))
        events = [(keys.topic_group("greeks", key), signal_event("greeks", key, entry, stamp)) for key, entry in batch]
        for first in range(0, len(batch), 64):
            events += chain_events([(parse_instrument_key(k), e) for k, e in batch[first:first + 64]], {})
        fanout.publish(events)
        sent += due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1000,5000", help="client counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per client count")
    parser.add_argument("--rate", type=float, default=2000.0, help="feed ticks/s")
    parser.add_argument("--rest-rate", type=float, default=500.0, help="REST requests/s")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="uvicorn worker processes behind the port (CPU and memory summed over them)")
    parser.add_argument("--source", choices=("pipeline", "direct"), default="pipeline",
                        help="events from the real pipeline, or published straight to the web process's groups")
    parser.add_argument("--rest-without-feed", action="store_true",
                        help="stop the feed (or the direct publisher) before the REST phase")
    parser.add_argument("--client-spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    hard = raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what it started on the way out
    if args.client_spec:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(client_process(json.loads(args.client_spec)))))  # bench/ws_client.py
        return
    counts = [int(c) for c in args.clients.split(",")]
    if max(counts) * 2 + 1000 > hard:
        raise SystemExit(f"the file-descriptor hard limit ({hard}) is too low for {max(counts)} clients")
    env = bench_env(DATABASE, 0)
    env.update({"REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0", "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
                "SIGNAL_API_RATE": "1000000/min"})  # one bench user sends every REST request
    os.environ.update({k: env[k] for k in ("REDIS_URL", "DATABASE_URL", "SIGNAL_JWT_SECRET", "CHANNEL_LAYER_PREFIX",
                                           "CELERY_BROKER_URL")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "signal_project.settings"
    server = own_redis()
    try:
        prepare(env)
        measure(env, counts, args)
    finally:
        server.terminate()
        server.wait(10)


def measure(env: dict[str, str], counts: list[int], args: argparse.Namespace) -> None:
    from feed.simulator import NiftySession

    session = NiftySession(start=datetime.now(UTC), strikes_each_side=15)
    expiries = [e.isoformat() for e in session.expiry_dates]
    options = session.option_keys()
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT)
    port = 18_765
    results: dict[str, Any] = {"clients": []}
    with running_stack(env, workers=1, concurrency=2):
        web = start_web(env, port, args.web_processes)
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(client, args.rate, stop), daemon=True)
        feeder.start()
        try:
            wait_for_greeks(client, options)  # the first batches register and price the chain
            if args.source == "direct":
                stop.set()
                feeder.join()
                time.sleep(3)  # the pipeline drains; from now on only the script publishes
                stop = threading.Event()
                threading.Thread(target=publish_direct, args=(options, args.rate, stop), daemon=True).start()
            for n in counts:
                results["clients"].append(run_clients(port, env["SIGNAL_JWT_SECRET"], n, args.seconds, expiries,
                                                      options, web.pid))
                print(json.dumps(results["clients"][-1]), flush=True)
                time.sleep(3)
            token = jwt.encode({"sub": "bench-rest", "exp": int(time.time()) + 3600}, env["SIGNAL_JWT_SECRET"],
                               algorithm="HS256")
            if args.rest_without_feed:
                stop.set()
            # the first REST requests of a process pay its lazy set-up (a stall of ~250 ms here: imports, the
            # pool's first thread and its connections), which would hold up the first hundred of the measured ones;
            # then a second at the measured rate grows the thread pool to what that rate needs (each new thread held
            # up the requests of the window's first ~100 ms, up to 50 ms each, 16-50 requests of every run)
            results["rest_waited_s"] = 0.0
            try:
                asyncio.run(rest_phase(port, token, 50.0, 2.0, options[len(options) // 4]))
                asyncio.run(rest_phase(port, token, args.rest_rate, 1.0, options[len(options) // 4]))
                results["rest_waited_s"] = wait_until_quiet(web.pid)
                rest_cpu = cpu_seconds(web.pid)
                results["rest"] = asyncio.run(rest_phase(port, token, args.rest_rate, 10.0,
                                                         options[len(options) // 4]))
                results["rest"]["web_cpu_ms_per_request"] = (cpu_seconds(web.pid) - rest_cpu) * 1000 / \
                    results["rest"]["requests"]
            except TimeoutError:  # the web process is still behind on the fan-out: say so instead of a figure
                results["rest"] = {"rate": args.rest_rate, "p50_ms": float("nan"), "p99_ms": float("nan"),
                                   "statuses": "not all answered within 60 s"}
            print(json.dumps(results["rest"]), flush=True)
        finally:
            stop.set()
            web.terminate()
            web.wait(15)
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nWebSocket fan-out, one web process, {args.source} source at {args.rate:.0f}/s, "
          f"{args.seconds:.0f} s measured")
    for r in results["clients"]:
        print(f"  {r['clients']:>5} clients: connected {r['connected']} ({r['late']} after the window opened), frames/s {r['frames_per_s']:,.0f} "
              f"(events/s {r['events_per_s']:,.0f}, {r['coalesced_frames'] / max(r['frames'], 1):.0%} of frames "
              f"coalesced; {r['frames_per_web_cpu_s']:,.0f} per web CPU-second, the web process had "
              f"{r['web_cpu_s'] / args.seconds:.0%} of a core, {r['client_processes']} client processes "
              f"{r['client_cpu_s'] / args.seconds:.0%}), connecting took {r['connect_s']:.1f} s, tick→frame p50 "
              f"{r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, "
              f"{r['kib_per_connection']:.0f} KiB/connection, errors: connect {r['connect_errors']}, "
              f"error frames {r['error_frames']}, closed {r['closed_by_server']} {r['close_codes'] or ''}, "
              f"upgrades refused {r['refused'] or 0}, connect errors {r['connect_error_kinds'] or 0}")
    rest = results["rest"]
    print(f"  REST realtime/* at {rest['rate']:.0f}/s ({'feed stopped, ' if args.rest_without_feed else ''}after "
          f"waiting {results['rest_waited_s']:.0f} s for the web process to be idle): p50 {rest['p50_ms']:.1f} ms, "
          f"p99 {rest['p99_ms']:.1f} ms, {rest.get('web_cpu_ms_per_request', float('nan')):.2f} web CPU-ms per "
          f"request, statuses {rest['statuses']}")


if __name__ == "__main__":
    main()
