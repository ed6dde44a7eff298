"""Shared helpers of the Greeks / moneyness tests: configs, tick batches, and vollib as the reference oracle."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import vollib.black.greeks.analytical as black_greeks
import vollib.black.implied_volatility as black_iv
import vollib.black_scholes_merton.greeks.analytical as bsm_greeks
import vollib.black_scholes_merton.implied_volatility as bsm_iv
from vollib.black_scholes_merton import black_scholes_merton

from feed import keys
from greeks.expiry import time_to_expiry
from tests.factories import T0, normalised, tick

SPOT = "NSE@NIFTY@index"
VIX = "NSE@INDVIX@index"
EXPIRY = "2025-06-26"
GREEKS = ("delta", "gamma", "theta", "vega", "rho")


def option_key(right: str, strike: float, expiry: str = EXPIRY) -> str:
    return f"NSE@NIFTY@options@{expiry}@{right}@{strike:g}"


def greeks_config(name: str = "chain-greeks", pattern: str = "NSE@NIFTY@options@*", **section: Any) -> dict:
    greeks = {"enabled": True, "model": "black_scholes_merton", "risk_free_rate": 0.065, "dividend_yield": 0.0,
              "price_fields": ["ltp"], "calculate": ["iv", "delta", "gamma", "theta", "vega", "rho"],
              "use_indvix": True, **section}
    return {"name": name, "version": "1.0", "instrument_key": pattern, "interval": "1m",
            "frequency": "every_tick", "option_greeks": greeks}


def batch(*bodies: dict, stream: str = "tick_stream:NSE@NIFTY", start: int = 1) -> list[dict[str, Any]]:
    return [normalised(body, f"{stream}/{start + i}-0") for i, body in enumerate(bodies)]


def at(seconds: float) -> float:
    """Epoch seconds of T0 + seconds."""
    return T0.timestamp() + seconds


def records(r: Any, config_name: str | None = None, symbol_key: str = "NSE@NIFTY") -> list[dict[str, Any]]:
    found = [json.loads(fields[b"data"]) for _, fields in r.xrange(keys.output_stream(symbol_key))]
    return [rec for rec in found if config_name is None or rec["config_name"] == config_name]


def computation(record: dict[str, Any], kind: str = "greeks") -> dict[str, Any] | None:
    return next((c for c in record["computations"] if c["computation_type"] == kind), None)


def greeks_of(r: Any, instrument_key: str, config_name: str | None = None) -> dict[str, Any]:
    """The newest greeks results (by price field) for an instrument on the output stream."""
    for rec in reversed(records(r, config_name)):
        if rec["instrument_key"] == instrument_key:
            found = computation(rec)
            if found is not None:
                return found["results"]
    raise AssertionError(f"no greeks output for {instrument_key}")


def years(ts: float, expiry: str | date) -> float:
    """Time to expiry computed independently of the service (greeks.expiry)."""
    return float(time_to_expiry(ts, expiry))


def vollib_bsm(price: float, S: float, K: float, t: float, r: float, q: float, right: str) -> dict[str, float]:
    """vollib's IV and analytical Greeks for a Black-Scholes-Merton option."""
    flag = "c" if right == "call" else "p"
    sigma = bsm_iv.implied_volatility(price, S, K, t, r, q, flag)
    return {"iv": sigma, **vollib_bsm_greeks(S, K, t, r, q, sigma, right)}


def vollib_bsm_greeks(S: float, K: float, t: float, r: float, q: float, sigma: float, right: str) -> dict[str, float]:
    flag = "c" if right == "call" else "p"
    return {name: getattr(bsm_greeks, name)(flag, S, K, t, r, sigma, q) for name in GREEKS}


def vollib_black76(price: float, F: float, K: float, t: float, r: float, right: str) -> dict[str, float]:
    flag = "c" if right == "call" else "p"
    sigma = black_iv.implied_volatility(price, F, K, r, t, flag)
    return {"iv": sigma, **{name: getattr(black_greeks, name)(flag, F, K, t, r, sigma) for name in GREEKS}}


def assert_matches(got: dict[str, Any], expected: dict[str, float], rel: float = 1e-7, abs_: float = 1e-9) -> None:
    for name, value in expected.items():
        assert got[name] is not None, f"{name} is null: {got}"
        assert abs(got[name] - value) <= max(rel * abs(value), abs_), f"{name}: {got[name]} != vollib {value}"


def spot_tick(ltp: float, seconds: float, **extra: Any) -> dict:
    return tick(SPOT, ltp, at=seconds, **extra)


def vix_tick(level: float, seconds: float) -> dict:
    return tick(VIX, level, at=seconds)


def option_tick(right: str, strike: float, ltp: float, seconds: float, expiry: str = EXPIRY, **extra: Any) -> dict:
    return tick(option_key(right, strike, expiry), ltp, at=seconds, **extra)


def when(seconds: float) -> datetime:
    from datetime import timedelta

    return T0 + timedelta(seconds=seconds)


async def close_thread_connections() -> None:
    """Close the database connection `sync_to_async` opened in its worker thread, so the test database can be
    dropped at the end of the session (an async transactional test otherwise leaves it open)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


# A five-strike demo chain priced from a smile (moneyness and WebSocket event tests).
SPOT_PRICE = 24020.0
STRIKES = (23800, 23900, 24000, 24100, 24200)
VOLS = {23800: 0.16, 23900: 0.15, 24000: 0.14, 24100: 0.135, 24200: 0.13}
TICK_AT = 1.0


def fair(right: str, strike: float, sigma: float) -> float:
    t = years(at(TICK_AT), EXPIRY)
    return round(black_scholes_merton("c" if right == "call" else "p", SPOT_PRICE, strike, t, 0.065, sigma, 0.0), 2)


def chain_ticks(broken_put: float | None = 24100) -> list[dict]:
    """A five-strike chain around a 24,020 spot, priced from a smile; the put at ``broken_put`` trades below its
    intrinsic value, so only its call solves at that strike."""
    bodies = [spot_tick(SPOT_PRICE, 0.5)]
    for k in STRIKES:
        bodies.append(option_tick("call", k, fair("call", k, VOLS[k]), TICK_AT))
        price = 50.0 if k == broken_put else fair("put", k, VOLS[k])
        bodies.append(option_tick("put", k, price, TICK_AT))
    return bodies
