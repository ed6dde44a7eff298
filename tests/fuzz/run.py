"""`make fuzz`: schemathesis over the service's own OpenAPI schema, against a real stack with demo data.

Creates a database of its own (``signal_fuzz`` plus the SIGNAL_TEST_SLOT), migrates it, seeds the demo configs and a
simulated session of ticks through the real pipeline (Redis databases of the slot, flushed first: never run it
beside the test suite of the same slot), starts the ASGI app with uvicorn on a free port of 127.0.0.1, then runs
schemathesis with the server-error, status-code, content-type and response-schema checks, realistic path and query
values (the demo's instrument keys, expiries, moneyness levels, timeframes) and a random seed it prints
(``FUZZ_SEED`` repeats a run). Fails on any 5xx or schema violation; stops the server and drops the database at
the end. ``FUZZ_MAX_EXAMPLES`` (default 40) bounds the cases per operation and so the run time; ``FUZZ_ARGS`` adds
schemathesis options (e.g. ``--include-path-regex price``).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jwt
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
LEVELS = ["ATM", "ITM1", "OTM1", "ITM2", "OTM3", "ITM", "OTM", "D25", "D50"]
TIMEFRAMES = ["1m", "5m", "15m", "1h", "1d", "1w", "1M", "7m", "custom_13"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stack_env(database: str, slot: int) -> dict[str, str]:
    redis_url = f"redis://127.0.0.1:6379/{15 - 2 * slot}"
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "REDIS_URL": redis_url, "CHANNEL_LAYER_URL": redis_url, "CHANNEL_LAYER_PREFIX": f"signal-fuzz{slot}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{14 - 2 * slot}",
        "DEBUG": "false", "DJANGO_SECRET_KEY": secrets.token_hex(32), "SIGNAL_JWT_SECRET": secrets.token_hex(32),
        "ALLOWED_HOSTS": "127.0.0.1", "SIGNAL_API_RATE": "1000000/min", "SIGNAL_TIERS": "basic=0",
        "LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(ROOT),
    }


def recreate_database(name: str) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(env: dict[str, str]) -> dict[str, list[str]]:
    for url in (env["REDIS_URL"], env["CELERY_BROKER_URL"]):
        redis.Redis.from_url(url).flushdb()
    python = sys.executable
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run([python, "-m", "tests.fuzz.seed", "--ticks", "3000"], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True)
    return json.loads(seeded.stdout.strip().splitlines()[-1])


def write_config(directory: Path, demo: dict[str, list[str]], max_examples: int) -> Path:
    keys = demo["instrument_keys"] + ["NSE@NIFTY@index"]
    dictionaries = {
        "instrument_keys": keys, "options": demo["options"][:20] or keys, "underlyings": ["NSE@NIFTY@index"],
        "expiries": demo["expiries"] or ["2025-06-26"], "levels": LEVELS, "timeframes": TIMEFRAMES,
        "ids": [1, 2, 3],
    }
    lines = [f"[generation]\nmax-examples = {max_examples}\n"]
    for name, values in dictionaries.items():
        lines.append(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")
    bindings = {"path.instrument_key": "instrument_keys", "path.underlying": "underlyings", "path.level": "levels",
                "path.id": "ids", "query.expiry_date": "expiries", "query.timeframe": "timeframes",
                "query.expiry": "expiries", "query.keys": "instrument_keys"}
    lines.append("[parameters]")
    lines += [f'"{where}" = {{ dictionary = "{name}", probability = 0.8 }}' for where, name in bindings.items()]
    path = directory / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the web app exited with {server.returncode} before it answered")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the web app did not answer /health in time")


def probe_demo_data(base: str, token: str, demo: dict[str, list[str]]) -> None:
    """The seeded data is served: otherwise the fuzzer would only ever see 404s from the data endpoints."""
    option = demo["options"][0]
    expiry = option.split("@")[3]
    paths = [f"realtime/price/{demo['instrument_keys'][0]}", f"realtime/greeks/{option}",
             f"option-chain/NSE@NIFTY@index?expiry_date={expiry}",
             "historical/bars/NSE@NIFTY@index?timeframe=1m", "configs/1/"]
    for path in paths:
        request = urllib.request.Request(f"{base}/api/v2/signals/{path}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            print(f"fuzz: demo data at {path}: {response.status}", flush=True)


def main() -> int:
    slot = int(os.environ.get("SIGNAL_TEST_SLOT", "0"))
    database = f"signal_fuzz_{slot}"
    seed = int(os.environ.get("FUZZ_SEED") or random.randrange(2**31))
    max_examples = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
    print(f"fuzz: seed {seed} (repeat with FUZZ_SEED={seed}), {max_examples} examples per operation", flush=True)
    env = stack_env(database, slot)
    recreate_database(database)
    server = None
    try:
        demo = prepare(env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "signal_project.asgi:application", "--host",
                                   "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
        wait_healthy(base, server)
        token = jwt.encode({"sub": "fuzzer", "scope": "signals:write", "exp": int(time.time()) + 3600},
                           env["SIGNAL_JWT_SECRET"], algorithm="HS256")
        probe_demo_data(base, token, demo)
        with tempfile.TemporaryDirectory() as directory:
            config = write_config(Path(directory), demo, max_examples)
            command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run",
                       f"{base}/api/schema/", "--checks", CHECKS, "--seed", str(seed), "--workers", "2",
                       "--header", f"Authorization: Bearer {token}", "--phases", "examples,coverage,fuzzing",
                       "--request-timeout", "30", "--no-color", "--generation-database", "none",
                       *shlex.split(os.environ.get("FUZZ_ARGS", ""))]
            return subprocess.run(command, cwd=directory, timeout=1200).returncode
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        drop_database(database)


if __name__ == "__main__":
    sys.exit(main())
