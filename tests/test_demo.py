"""The demo feed and demo seed: realistic, parseable ticks and idempotent setup."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command

from feed import keys
from feed.simulator import IST, NiftySession, bsm_price, expiry_instant
from feed.ticks import decode_fields, parse_tick


def test_simulated_session_covers_spot_vix_futures_and_the_chain() -> None:
    session = NiftySession(start=datetime(2025, 6, 20, 3, 45, tzinfo=UTC), seed=1)
    ticks = session.round_ticks()
    kinds = Counter(t["instrument_key"].split("@")[2] for _, t in ticks)
    assert kinds == {"index": 2, "futures": 2, "options": 2 * 2 * 31}
    assert len(session.expiry_dates) == 2 and session.expiry_dates[0].weekday() == 3
    strikes = session.strikes
    assert len(strikes) == 31 and set(strikes[1:] - strikes[:-1]) == {50.0}
    streams = {stream for stream, _ in ticks}
    assert streams == {keys.tick_stream("NSE@NIFTY"), keys.tick_stream("NSE@INDVIX")}


def test_option_prices_come_from_the_smile_and_respect_no_arbitrage() -> None:
    session = NiftySession(start=datetime(2025, 6, 20, 3, 45, tzinfo=UTC), seed=2)
    ticks = {t["instrument_key"]: t for _, t in session.round_ticks()}
    expiry = session.expiry_dates[0]
    t = (expiry_instant(expiry) - session.now).total_seconds() / (365 * 86400)
    for strike in session.strikes:
        call = ticks[session.option_key(expiry, "call", float(strike))]["ltp"]
        put = ticks[session.option_key(expiry, "put", float(strike))]["ltp"]
        # put-call parity holds to the tick rounding (prices are rounded to paise, floored at 0.05)
        parity = session.spot - strike * math.exp(-session.r * t)
        if call > 0.05 and put > 0.05:
            assert call - put == pytest.approx(parity, abs=0.02)
        assert call >= max(session.spot - strike * math.exp(-session.r * t), 0) - 0.01
    import numpy as np

    forward = session.spot * math.exp(session.r * t)
    sigma = session.smile(session.strikes, forward, t)
    assert sigma.min() > 0.05 and np.argmin(sigma) > 0  # a smile, lowest near the money
    expected = bsm_price(session.spot, session.strikes, t, session.r, 0.0, sigma, np.full(31, True))
    got = [ticks[session.option_key(expiry, "call", float(k))]["ltp"] for k in session.strikes]
    assert np.allclose(np.maximum(np.round(expected, 2), 0.05), got)


def test_simulator_ticks_are_valid_spec_messages(r: Any) -> None:
    call_command("simulate_ticks", "--start", "2025-06-20T09:15:00+05:30", "--max-ticks", "300", "--rate", "1000")
    entries = r.xrange(keys.tick_stream("NSE@NIFTY")) + r.xrange(keys.tick_stream("NSE@INDVIX"))
    assert len(entries) == 300
    parsed = [parse_tick(decode_fields(fields)) for _, fields in entries]
    assert {p["symbol_key"] for p in parsed} == {"NSE@NIFTY", "NSE@INDVIX"}
    first = min(p["ts"] for p in parsed)
    assert datetime.fromtimestamp(first, IST).strftime("%H:%M") == "09:15"
    option = next(p for p in parsed if "@options@" in p["instrument_key"])
    assert option["oi"] is not None and option["volume"] is not None and option["high"] >= option["low"]


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    from django.contrib.auth import get_user_model

    from configs.models import SignalConfig

    call_command("seed_demo")
    first = {c.name: c.revision for c in SignalConfig.objects.all()}
    call_command("seed_demo")
    assert {c.name: c.revision for c in SignalConfig.objects.all()} == first
    assert "nifty-price" in first
    assert get_user_model().objects.filter(username="admin", is_superuser=True).count() == 1
    price = SignalConfig.objects.get(name="nifty-price")
    assert price.instrument_key == "NSE@NIFTY@*" and price.frequency == "every_tick"
    assert all(price.config["output"][k] for k in ("redis_list", "redis_stream", "store_to_database", "websocket"))
