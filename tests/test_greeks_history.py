"""``compute_greeks``: Greeks from stored ticks, in parallel Celery tasks, priced against the underlying's and
INDVIX's stored ticks at or before each option tick, and idempotent when re-run."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from signals.models import GreeksRecord
from signals.pipeline.batch import process_batch
from tests.factories import T0, create_config
from tests.greeks_helpers import (
    EXPIRY,
    assert_matches,
    at,
    batch,
    greeks_config,
    option_key,
    option_tick,
    spot_tick,
    vix_tick,
    vollib_bsm,
    vollib_bsm_greeks,
    years,
)

START = (T0 - timedelta(minutes=1)).isoformat()
END = (T0 + timedelta(minutes=4)).isoformat()


def store_history() -> list[dict[str, Any]]:
    """Ticks stored before any Greeks config exists (as an import or a replay would leave them)."""
    process_batch(batch(vix_tick(14.0, 0), vix_tick(16.0, 100), stream="tick_stream:NSE@INDVIX"))
    options = [
        option_tick("call", 24000, 190.0, 5),        # spot 24000 (t=0), 5 s old: stale
        option_tick("call", 24000, 230.0, 60),       # spot 24050 at exactly t=60
        option_tick("put", 24100, 150.0, 61),        # spot 24050 (t=60)
        option_tick("call", 23000, 900.0, 120),      # below intrinsic: INDVIX 14 (t=0..100) -> 16 at t=100
        option_tick("put", 24000, 160.0, 200),       # later than the last chunk? no: inside the range
    ]
    process_batch(batch(spot_tick(24000, 0), spot_tick(24050, 60), spot_tick(24100, 150), *options))
    return options


def rows(price_field: str = "ltp") -> dict[tuple[str, float], Any]:
    return {(g.instrument_key, g.time.timestamp()): g for g in GreeksRecord.objects.filter(price_field=price_field)}


def run(*extra: str) -> str:
    out = io.StringIO()
    call_command("compute_greeks", "--underlying", "nse@nifty@INDEX", "--start", START, "--end", END, *extra,
                 stdout=out)
    return out.getvalue()


def check_history_rows(found: dict[tuple[str, float], Any]) -> None:
    assert len(found) == 5
    stale = found[(option_key("call", 24000), at(5))]
    assert stale.underlying_price == 24000 and stale.status == "ok|stale_underlying"
    assert_matches({"iv": stale.iv, "delta": stale.delta},
                   {k: v for k, v in vollib_bsm(190.0, 24000, 24000, years(at(5), EXPIRY), 0.065, 0.0, "call").items()
                    if k in ("iv", "delta")})
    same_time = found[(option_key("call", 24000), at(60))]
    assert same_time.underlying_price == 24050 and same_time.status == "ok"  # at or before: equal time counts
    put = found[(option_key("put", 24100), at(61))]
    expected = vollib_bsm(150.0, 24050, 24100, years(at(61), EXPIRY), 0.065, 0.0, "put")
    assert_matches({n: getattr(put, n) for n in expected}, expected)
    fallback = found[(option_key("call", 23000), at(120))]
    assert fallback.iv is None and fallback.sigma_source == "indvix" and fallback.sigma == pytest.approx(0.16)
    assert fallback.status == "below_intrinsic|stale_underlying"  # the spot tick was 60 s earlier
    assert fallback.delta == pytest.approx(
        vollib_bsm_greeks(24050, 23000, years(at(120), EXPIRY), 0.065, 0.0, 0.16, "call")["delta"], rel=1e-9)
    assert found[(option_key("put", 24000), at(200))].underlying_price == 24100


@pytest.mark.django_db(transaction=True)
def test_compute_greeks_in_celery_tasks_and_rerun_adds_no_rows(start_worker: Any, settings: Any) -> None:
    store_history()
    assert rows() == {}
    create_config(greeks_config())
    start_worker(settings.SIGNAL_GREEKS_HISTORY_QUEUE, name="history")
    output = run("--chunk-minutes", "1")
    assert "5/5 chunk(s)" in output and "5 Greeks row(s) computed, 5 new" in output, output
    first = rows()
    check_history_rows(first)

    again = run("--chunk-minutes", "2")
    assert "5 Greeks row(s) computed, 0 new" in again, again
    assert rows().keys() == first.keys()
    assert [(r.iv, r.delta, r.status) for r in rows().values()] == [(r.iv, r.delta, r.status) for r in first.values()]


@pytest.mark.django_db
def test_history_equals_what_the_live_pipeline_computed() -> None:
    config = create_config(greeks_config(price_fields=["ltp", "close"]))
    store_history()  # the config exists: the live pipeline computes and stores the rows
    live = {key: (r.iv, r.delta, r.gamma, r.theta, r.vega, r.rho, r.sigma_source, r.status)
            for key, r in rows().items()}
    assert len(live) == 5
    out = run("--inline", "--config", config.name)
    assert "10 Greeks row(s) computed, 0 new" in out  # ltp + close (null: no close on the ticks), all present
    GreeksRecord.objects.all().delete()
    assert "10 Greeks row(s) computed, 10 new" in run("--inline")
    recomputed = {key: (r.iv, r.delta, r.gamma, r.theta, r.vega, r.rho, r.sigma_source, r.status)
                  for key, r in rows().items()}
    assert recomputed == live
    closes = GreeksRecord.objects.filter(price_field="close")
    assert {r.status for r in closes} == {"no_price"} and all(r.iv is None for r in closes)


@pytest.mark.django_db
def test_compute_greeks_rejects_bad_arguments() -> None:
    with pytest.raises(CommandError, match="--underlying"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY", "--start", START, "--end", END)
    with pytest.raises(CommandError, match="not a spot key"):
        call_command("compute_greeks", "--underlying", option_key("call", 24000), "--start", START, "--end", END)
    with pytest.raises(CommandError, match="--start must be before --end"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY@index", "--start", END, "--end", START)
    with pytest.raises(CommandError, match="--start"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY@index", "--start", "2025-06-20T09:00", "--end", END)
    with pytest.raises(CommandError, match="no enabled config"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY@index", "--start", START, "--end", END)
    create_config({"name": "no-greeks", "version": "1.0", "instrument_key": "NSE@NIFTY@*", "interval": "1m",
                   "frequency": "every_tick", "internal_functions": [{"name": "price", "parameters": {}}]})
    with pytest.raises(CommandError, match="does not have option_greeks"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY@index", "--start", START, "--end", END,
                     "--config", "no-greeks")
    with pytest.raises(CommandError, match="no config named"):
        call_command("compute_greeks", "--underlying", "NSE@NIFTY@index", "--start", START, "--end", END,
                     "--config", "missing")
