"""A realistic NIFTY session for demos, tests and benchmarks (issue 2, item 10).

Spot follows a geometric random walk whose volatility is India VIX; VIX mean-reverts; futures are priced at cost
of carry; every option of a ±N-strike chain over two weekly expiries is priced with Black-Scholes-Merton from a
volatility smile around VIX. Each tick carries OHLC of the session so far, cumulative volume and OI, in the tick
format of docs/REFERENCE.md §3.2 (a ``data`` field holding JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from scipy.special import ndtr

from feed import keys
from greeks.expiry import SECONDS_PER_YEAR

IST = ZoneInfo("Asia/Kolkata")


def expiry_instant(expiry: date) -> datetime:
    return datetime.combine(expiry, time(15, 30), IST)


def weekly_expiries(start: date, count: int, weekday: int) -> list[date]:
    """The next ``count`` weekly expiries on ``weekday`` (0=Monday) on or after ``start``."""
    first = start + timedelta(days=(weekday - start.weekday()) % 7)
    return [first + timedelta(weeks=i) for i in range(count)]


def bsm_price(S: float, K: np.ndarray, t: float, r: float, q: float, sigma: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Black-Scholes-Merton price; S, K in rupees, t in years, r, q, sigma decimal per year."""
    sqrt_t = math.sqrt(t)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma**2) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    call = S * math.exp(-q * t) * ndtr(d1) - K * math.exp(-r * t) * ndtr(d2)
    put = K * math.exp(-r * t) * ndtr(-d2) - S * math.exp(-q * t) * ndtr(-d1)
    return np.where(is_call, call, put)


@dataclass
class _Bar:
    open: float
    high: float
    low: float
    volume: int = 0
    oi: int = 0

    def update(self, price: float, traded: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.volume += traded


@dataclass
class NiftySession:
    """Generates ticks; ``rate`` is ticks per second of simulated time."""

    start: datetime
    spot: float = 24_000.0
    vix: float = 14.0
    strikes_each_side: int = 15
    strike_step: float = 50.0
    expiries: int = 2
    expiry_weekday: int = 3  # Thursday
    r: float = 0.065
    q: float = 0.0
    skew: float = -0.8
    curvature: float = 4.0
    seed: int = 7
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.expiry_dates = weekly_expiries(self.start.astimezone(IST).date() + timedelta(days=1), self.expiries,
                                            self.expiry_weekday)
        atm = round(self.spot / self.strike_step) * self.strike_step
        offsets = np.arange(-self.strikes_each_side, self.strikes_each_side + 1)
        self.strikes = atm + offsets * self.strike_step
        self.bars: dict[str, _Bar] = {}
        self.now = self.start

    # --- instrument keys --------------------------------------------------------------------------------------
    @staticmethod
    def option_key(expiry: date, right: str, strike: float) -> str:
        return f"NSE@NIFTY@options@{expiry.isoformat()}@{right}@{strike:g}"

    def option_keys(self) -> list[str]:
        return [self.option_key(e, right, k) for e in self.expiry_dates for right in ("call", "put")
                for k in self.strikes]

    def smile(self, strikes: np.ndarray, forward: float, t: float) -> np.ndarray:
        """Implied volatility by strike: VIX at the money, skewed down-and-up like index options."""
        m = np.log(strikes / forward) / max(math.sqrt(t), 0.05)
        return (self.vix / 100.0) * (1.0 + self.skew * m * 0.1 + self.curvature * (m * 0.1) ** 2)

    # --- evolution --------------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        dt = seconds / SECONDS_PER_YEAR
        sigma = self.vix / 100.0
        self.spot *= math.exp((self.r - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * self.rng.standard_normal())
        self.vix += 0.5 * (14.0 - self.vix) * dt * 50 + 0.02 * math.sqrt(seconds) * self.rng.standard_normal()
        self.vix = min(max(self.vix, 8.0), 40.0)
        self.now += timedelta(seconds=seconds)

    def _tick(self, key: str, price: float, traded: int, oi_base: int = 0) -> dict:
        price = round(max(price, 0.05), 2)
        bar = self.bars.get(key)
        if bar is None:
            bar = self.bars[key] = _Bar(price, price, price, 0, oi_base)
        bar.update(price, traded)
        if oi_base:
            bar.oi = max(0, bar.oi + int(self.rng.integers(-traded, traded + 1)))
        spread = max(0.05, round(price * 0.0005, 2))
        tick = {
            "instrument_key": key, "ltp": price, "ltt": self.now.astimezone(IST).isoformat(timespec="milliseconds"),
            "open": bar.open, "high": bar.high, "low": bar.low, "close": price, "volume": bar.volume,
            "ltq": traded, "bid": round(price - spread, 2), "ask": round(price + spread, 2), "state": "U",
        }
        if oi_base:
            tick["oi"] = bar.oi
        return tick

    def round_ticks(self, option_share: float = 1.0) -> list[tuple[str, dict]]:
        """One tick for spot, VIX and each future, plus ticks for a share of the option chain, at ``self.now``."""
        out: list[tuple[str, dict]] = [
            (keys.tick_stream("NSE@NIFTY"), self._tick("NSE@NIFTY@index", self.spot, 0)),
            (keys.tick_stream("NSE@INDVIX"), self._tick("NSE@INDVIX@index", self.vix, 0)),
        ]
        for expiry in self.expiry_dates:
            t = (expiry_instant(expiry) - self.now).total_seconds() / SECONDS_PER_YEAR
            if t <= 0:
                continue
            forward = self.spot * math.exp((self.r - self.q) * t)
            out.append((keys.tick_stream("NSE@NIFTY"),
                        self._tick(f"NSE@NIFTY@futures@{expiry.isoformat()}", forward,
                                   int(self.rng.integers(50, 500)), 10_000_000)))
            sigma = self.smile(self.strikes, forward, t)
            for right in ("call", "put"):
                is_call = np.full(self.strikes.shape, right == "call")
                prices = bsm_price(self.spot, self.strikes, t, self.r, self.q, sigma, is_call)
                for strike, price in zip(self.strikes, prices, strict=True):
                    if option_share < 1.0 and self.rng.random() > option_share:
                        continue
                    out.append((keys.tick_stream("NSE@NIFTY"),
                                self._tick(self.option_key(expiry, right, float(strike)), float(price),
                                           int(self.rng.integers(25, 1000)), 500_000)))
        return out

    def ticks(self, rate: float, clock: Callable[[], datetime] | None = None) -> Iterator[tuple[str, dict]]:
        """Endless ticks at ``rate`` per simulated second; time advances between rounds.

        With ``clock`` (live mode) the session follows that clock instead: each round is priced at the time it
        starts, never at a time still to come (ticks stamped ahead of the wall clock hide the tick-to-output
        latency)."""
        per_round = 2 + len(self.expiry_dates) * (1 + 2 * len(self.strikes))
        while True:
            if clock is not None:
                self.advance(max((clock() - self.now).total_seconds(), 0.0))
            batch = self.round_ticks()
            yield from batch
            if clock is None:
                self.advance(max(per_round / rate, 0.001))


def encode(tick: dict) -> dict[str, str]:
    """Stream entry fields for a tick: one ``data`` field holding the JSON object."""
    return {"data": json.dumps(tick)}

