"""Benchmark of the Greeks engine: IV from price + five Greeks for a 1,000-option chain, against vollib.

Run from the repository root (single thread, stops by itself in ~10-20 s):

    NUMBA_NUM_THREADS=1 .venv/bin/python -m bench.greeks

The chain: spot 22,000 (index-like), strikes ±30 % of spot, expiries from 7 days to 1 year, calls and puts
alternating, prices from a realistic smile (ATM term structure + skew + curvature) priced with the engine's own
Black-Scholes-Merton price. The engine figure is the median of many :func:`greeks.engine.solve_chain` calls after
JIT warm-up; vollib is called per option (``implied_volatility`` + the five analytical Greeks) in the same run.

``run(n_options=1000) -> dict`` returns the figures so that a wider (pipeline-latency) benchmark can extend it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

SPOT = 22000.0
RATE = 0.065
DIV_YIELD = 0.012


def make_chain(n_options: int = 1000, seed: int = 20240601) -> dict[str, np.ndarray]:
    """Synthetic option chain: dict of arrays S, K, t (years), r, q, is_call, sigma (true smile vol), price."""
    from greeks import engine

    n_expiries = 10
    expiry_days = np.geomspace(7.0, 365.0, n_expiries)
    per_expiry = int(np.ceil(n_options / n_expiries))
    strikes = np.linspace(0.7 * SPOT, 1.3 * SPOT, per_expiry)
    rng = np.random.default_rng(seed)
    t = np.repeat(expiry_days / 365.0, per_expiry)[:n_options]
    K = np.tile(strikes, n_expiries)[:n_options]
    is_call = (np.arange(n_options) % 2) == 0
    k = np.log(K / SPOT)
    atm = 0.13 + 0.05 * np.exp(-t * 6.0)  # short-dated premium
    sigma = atm - 0.25 * k / np.sqrt(np.maximum(t, 0.05)) * 0.2 + 0.6 * k * k
    sigma = np.clip(sigma + rng.normal(0.0, 0.002, n_options), 0.05, None)
    price = engine.option_price(SPOT, K, t, RATE, DIV_YIELD, sigma, is_call, model="black_scholes_merton")
    return {"S": np.full(n_options, SPOT), "K": K, "t": t, "r": np.full(n_options, RATE),
            "q": np.full(n_options, DIV_YIELD), "is_call": is_call, "sigma": sigma, "price": price}


def _time_engine(chain: dict[str, np.ndarray], repeats: int) -> list[float]:
    from greeks import engine

    args = (chain["price"], chain["S"], chain["K"], chain["t"], chain["r"], chain["q"], chain["is_call"])
    engine.solve_chain(*args, model="black_scholes_merton", fallback_sigma=0.15)  # JIT warm-up / cache load
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.solve_chain(*args, model="black_scholes_merton", fallback_sigma=0.15)
        samples.append(time.perf_counter() - t0)
    return samples


def _time_kernel_only(chain: dict[str, np.ndarray], repeats: int) -> list[float]:
    """The compiled loop alone (no broadcasting/allocation in Python), to show the facade overhead."""
    from greeks import _kernels as k

    n = chain["price"].shape[0]
    fb = np.full(n, 0.15)
    outs_f = [np.empty(n) for _ in range(8)]
    src = np.empty(n, dtype=np.int8)
    st = np.empty(n, dtype=np.int8)
    a = (1, chain["price"], chain["S"], chain["K"], chain["t"], chain["r"], chain["q"], chain["is_call"], fb,
         k.DEFAULT_ITERATIONS)

    def call() -> None:
        k.chain_kernel(*a, outs_f[0], outs_f[1], src, st, *outs_f[2:])

    call()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def _time_vollib(chain: dict[str, np.ndarray], n: int, repeats: int) -> tuple[list[float], int, int]:
    """Per-option vollib timings (s) over ``repeats`` passes, the count of options for which vollib raised and the
    count for which it returned an IV more than 1e-6 (relative) away from the chain's true volatility."""
    from vollib.black_scholes_merton.greeks import analytical as an
    from vollib.black_scholes_merton.implied_volatility import implied_volatility

    rows = [(float(chain["price"][i]), float(chain["S"][i]), float(chain["K"][i]), float(chain["t"][i]),
             float(chain["r"][i]), float(chain["q"][i]), "c" if chain["is_call"][i] else "p") for i in range(n)]
    failures = 0
    wrong = 0
    samples = []
    true_sigma = chain["sigma"]
    for rep in range(repeats):
        t0 = time.perf_counter()
        for i, (price, S, K, t, r, q, flag) in enumerate(rows):
            try:
                sigma = implied_volatility(price, S, K, t, r, q, flag)
            except Exception:  # vollib raises for prices it cannot invert
                if rep == 0:
                    failures += 1
                continue
            if rep == 0 and not abs(sigma / true_sigma[i] - 1.0) <= 1e-6:
                wrong += 1
            an.delta(flag, S, K, t, r, sigma, q)
            an.gamma(flag, S, K, t, r, sigma, q)
            an.theta(flag, S, K, t, r, sigma, q)
            an.vega(flag, S, K, t, r, sigma, q)
            an.rho(flag, S, K, t, r, sigma, q)
        samples.append((time.perf_counter() - t0) / n)
    return samples, failures, wrong


def run(n_options: int = 1000, engine_repeats: int = 2000, vollib_options: int | None = None,
        vollib_repeats: int = 3) -> dict[str, Any]:
    """Measure and return the figures (µs per option, ratio, JIT load time, accuracy of the chain's IVs)."""
    t0 = time.perf_counter()
    from greeks import engine

    engine.warm_up()
    jit_load_s = time.perf_counter() - t0
    chain = make_chain(n_options)
    result = engine.solve_chain(chain["price"], chain["S"], chain["K"], chain["t"], chain["r"], chain["q"],
                                chain["is_call"], model="black_scholes_merton")
    ok = result.status == engine.Status.OK
    max_rel_iv_err = float(np.max(np.abs(result.iv[ok] / chain["sigma"][ok] - 1.0))) if ok.any() else float("nan")

    engine_samples = _time_engine(chain, engine_repeats)
    kernel_samples = _time_kernel_only(chain, engine_repeats)
    n_vollib = n_options if vollib_options is None else min(vollib_options, n_options)
    with warnings.catch_warnings():  # vollib's Greeks divide by zero at the sigma = 0 it returns for some rows
        warnings.simplefilter("ignore", RuntimeWarning)
        vollib_samples, vollib_failures, vollib_wrong = _time_vollib(chain, n_vollib, vollib_repeats)

    engine_us = statistics.median(engine_samples) / n_options * 1e6
    kernel_us = statistics.median(kernel_samples) / n_options * 1e6
    vollib_us = statistics.median(vollib_samples) * 1e6
    return {
        "n_options": n_options,
        "engine_us_per_option": engine_us,
        "engine_min_us_per_option": min(engine_samples) / n_options * 1e6,
        "kernel_us_per_option": kernel_us,
        "engine_chain_ms": statistics.median(engine_samples) * 1e3,
        "engine_repeats": engine_repeats,
        "vollib_us_per_option": vollib_us,
        "vollib_options_timed": n_vollib,
        "vollib_repeats": vollib_repeats,
        "vollib_failures": vollib_failures,
        "vollib_wrong": vollib_wrong,
        "speedup_vs_vollib": vollib_us / engine_us,
        "jit_load_s": jit_load_s,
        "status_counts": {engine.STATUS_NAMES[int(c)]: int(v)
                          for c, v in zip(*np.unique(result.status, return_counts=True), strict=True)},
        "max_rel_iv_error": max_rel_iv_err,
        "numba_num_threads": os.environ.get("NUMBA_NUM_THREADS"),
    }


def main() -> None:
    res = run()
    print(f"Greeks engine benchmark: {res['n_options']} options, IV + price + 5 Greeks (black_scholes_merton)")
    print(f"  JIT compile/cache load at start : {res['jit_load_s']:.2f} s")
    print(f"  engine solve_chain               : {res['engine_us_per_option']:.3f} us/option "
          f"(median of {res['engine_repeats']}; min {res['engine_min_us_per_option']:.3f}; "
          f"{res['engine_chain_ms']:.3f} ms per chain)")
    print(f"  compiled loop only               : {res['kernel_us_per_option']:.3f} us/option")
    print(f"  vollib per option (IV + 5 Greeks): {res['vollib_us_per_option']:.1f} us/option "
          f"(median of {res['vollib_repeats']} passes over {res['vollib_options_timed']} options, "
          f"{res['vollib_failures']} raised, {res['vollib_wrong']} returned an IV > 1e-6 off)")
    print(f"  speed-up vs vollib               : {res['speedup_vs_vollib']:.0f}x")
    print(f"  engine statuses: {res['status_counts']}; max relative IV error (ok rows) "
          f"{res['max_rel_iv_error']:.2e}")
    print(f"  NUMBA_NUM_THREADS={res['numba_num_threads']}")


if __name__ == "__main__":
    # Run as a script (`python bench/greeks.py`): this file's directory would shadow the `greeks` package.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))
    main()
