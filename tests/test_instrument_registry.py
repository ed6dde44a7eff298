"""The instrument registry's per-process caches and what `clear_caches` forgets."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from signals import instrument_registry
from signals.models import InstrumentRecord

CALL = "NSE@NIFTY@options@2025-06-26@call@22500"
PUT = "NSE@NIFTY@options@2025-06-26@put@22500"


@pytest.mark.django_db
def test_registering_a_key_again_costs_no_query_until_the_caches_are_cleared(
        django_assert_num_queries: Any) -> None:
    instrument_registry.register_instruments([CALL])
    with django_assert_num_queries(0):
        instrument_registry.register_instruments([CALL])
    InstrumentRecord.objects.filter(key=CALL).delete()
    instrument_registry.clear_caches()
    instrument_registry.register_instruments([CALL])
    record = InstrumentRecord.objects.get(key=CALL)
    assert (record.underlying_key, record.expiry, record.right) == ("NSE@NIFTY@index", date(2025, 6, 26), "call")


@pytest.mark.django_db
def test_a_cached_chain_is_read_again_when_an_expected_option_is_missing() -> None:
    instrument_registry.register_instruments([CALL])
    expiry = date(2025, 6, 26)
    assert [k for k, _, _ in instrument_registry.chain_instruments("NSE@NIFTY@index", expiry)] == [CALL]
    instrument_registry.register_instruments([PUT])
    assert len(instrument_registry.chain_instruments("NSE@NIFTY@index", expiry)) == 1  # cached
    chain = instrument_registry.chain_instruments("NSE@NIFTY@index", expiry, expect={PUT})
    assert {k for k, _, _ in chain} == {CALL, PUT}
    assert instrument_registry.nearest_expiry("NSE@NIFTY@index", date(2025, 6, 1)) == expiry
    assert instrument_registry.nearest_expiry("NSE@NIFTY@index", date(2025, 6, 27)) is None


@pytest.mark.django_db
def test_live_keys_match_a_pattern_and_leave_out_expired_derivatives() -> None:
    instrument_registry.register_instruments([CALL, "NSE@NIFTY@index", "NSE@BANKNIFTY@index"])
    assert sorted(instrument_registry.live_keys("NSE@NIFTY@*", date(2025, 6, 26))) == [
        "NSE@NIFTY@index", CALL]
    assert instrument_registry.live_keys("NSE@NIFTY@*", date(2025, 6, 27)) == ["NSE@NIFTY@index"]
    assert instrument_registry.live_keys(CALL, date(2025, 6, 1)) == [CALL]
    assert len(instrument_registry.live_keys("*", date(2025, 6, 1))) == 3
