"""`functions.internal.bind`: parameters checked once, then the same results and errors as `call_internal` per call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions import internal as internal_functions
from functions.internal import FunctionError, InvalidParamsError

BARS = [{"time": f"t{i}", "open": 1.0, "high": 2.0, "low": 0.5, "close": float(c), "volume": 10.0, "oi": 5.0}
        for i, c in enumerate([10, 11, 12, 11, 13, 14, 12, 15, 16, 15])]


def test_bound_call_equals_call_internal() -> None:
    tick = {"instrument_key": "NSE@NIFTY@index", "ltp": 15.5, "timestamp": "2025-06-20T04:00:00+00:00",
            "previous": {"ltp": 15.0, "timestamp": "2025-06-20T03:59:59+00:00"}}
    for name, params in (("price", {}), ("zscore", {"length": 5}), ("vwap_deviation", {})):
        call = internal_functions.bind(name, params)
        assert call(dict(tick), list(BARS)) == internal_functions.call_internal(name, tick, BARS, params)


def test_bad_parameters_are_refused_when_binding() -> None:
    with pytest.raises(InvalidParamsError, match="length"):
        internal_functions.bind("zscore", {"length": 1})


@pytest.fixture
def boom_name() -> Iterator[str]:
    """A registration name of the test's own, dropped afterwards."""
    yield "boom_for_test"
    internal_functions.unregister("boom_for_test")


def test_a_failing_function_is_wrapped(boom_name: str) -> None:
    @internal_functions.register(boom_name, params={}, needs_bars=False)
    def boom(tick: dict, bars: list, params: dict) -> dict:
        return {"ratio": 1 / tick["ltp"]}

    call = internal_functions.bind(boom_name, {})
    assert call({"ltp": 4.0}, []) == {"ratio": 0.25}
    with pytest.raises(FunctionError, match="ZeroDivisionError"):
        call({"ltp": 0.0}, [])
