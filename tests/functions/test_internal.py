"""Internal functions (functions.internal): registry behaviour and values against hand-computed numbers."""

from __future__ import annotations

import datetime
import math
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from functions import internal as internal_functions
from functions.internal import (
    FunctionError,
    InvalidParamsError,
    Param,
    ResultError,
    UnknownFunctionError,
    call_internal,
)
from functions.results import validate_result

approx = pytest.approx


# -- registry ------------------------------------------------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[str]:
    """A temporary registration name, removed afterwards."""
    name = "test_scratch_fn"
    yield name
    internal_functions.unregister(name)


def test_shipped_functions_are_registered() -> None:
    assert {"price", "vwap_deviation", "zscore", "oi_change", "put_call_ratio"} <= set(internal_functions.names())
    assert internal_functions.names() == sorted(internal_functions.names())
    assert internal_functions.get("zscore") is internal_functions.builtin_functions.zscore
    assert internal_functions.spec("zscore").description.startswith("Rolling z-score")
    assert internal_functions.needs_bars("zscore") and not internal_functions.needs_bars("price")
    assert not internal_functions.needs_bars("put_call_ratio")


def test_unknown_function() -> None:
    with pytest.raises(UnknownFunctionError) as info:
        internal_functions.get("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, FunctionError)
    assert "nope" in str(info.value) and "zscore" in str(info.value)
    with pytest.raises(UnknownFunctionError):
        call_internal("nope", {}, [], {})
    assert internal_functions.validate_params("nope", {}) == [
        f"unknown internal function 'nope'; known: {', '.join(internal_functions.names())}"
    ]


def test_register_decorator_and_call(scratch: str) -> None:
    @internal_functions.register(scratch, params={"n": Param("int", default=3, minimum=1, maximum=5)})
    def scratch_fn(
        tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, Any]:
        """Doubles n."""
        tick["mutated"] = True  # must not leak into the caller's dict
        return {"double": params["n"] * 2, "nan": float("nan")}

    assert scratch in internal_functions.names()
    assert internal_functions.spec(scratch).description == "Doubles n."
    the_tick: dict[str, Any] = {"ltp": 1.0}
    assert call_internal(scratch, the_tick, [], {}) == {"double": 6, "nan": None}
    assert call_internal(scratch, the_tick, [], {"n": 5}) == {"double": 10, "nan": None}
    assert "mutated" not in the_tick
    with pytest.raises(ValueError, match="already registered"):
        internal_functions.register(scratch)(scratch_fn)
    internal_functions.register(scratch, replace=True)(scratch_fn)  # explicit replacement is fine
    with pytest.raises(ValueError, match="invalid internal function name"):
        internal_functions.register("Bad Name")


def test_call_internal_errors(scratch: str) -> None:
    @internal_functions.register(scratch)
    def bad(tick: dict[str, Any], bars: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") == "raise":
            raise ZeroDivisionError("division by zero")
        return {"nested": [1, 2]}

    with pytest.raises(ResultError, match="'nested' has type list"):
        call_internal(scratch, {}, [], {})
    with pytest.raises(FunctionError, match="ZeroDivisionError: division by zero") as info:
        call_internal(scratch, {}, [], {"mode": "raise"})
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(InvalidParamsError) as bad_params:
        call_internal("zscore", {}, [], {"length": 1})
    assert bad_params.value.errors == ["parameter 'length' must be an integer between 2 and 10000 (got 1)"]


def test_validate_params_messages_name_the_parameter() -> None:
    assert internal_functions.validate_params("zscore", {}) == []
    assert internal_functions.validate_params("zscore", {"length": 20, "ddof": 0}) == []
    assert internal_functions.validate_params("zscore", {"length": 1}) == [
        "parameter 'length' must be an integer between 2 and 10000 (got 1)"
    ]
    assert internal_functions.validate_params("zscore", {"length": 10001})[0].startswith("parameter 'length'")
    assert internal_functions.validate_params("zscore", {"length": 2.5})[0].startswith(
        "parameter 'length' must be an int"
    )
    assert internal_functions.validate_params("zscore", {"length": True})[0].startswith("parameter 'length'")
    assert internal_functions.validate_params("zscore", {"ddof": 2}) == [
        "parameter 'ddof' must be one of 0, 1 (got 2)"
    ]
    assert internal_functions.validate_params("zscore", {"lenght": 5}) == [
        "parameter 'lenght' is not accepted by zscore (accepted: ddof, length)"
    ]
    assert internal_functions.validate_params("price", {"x": 1}) == [
        "parameter 'x' is not accepted by price (accepted: none)"
    ]
    assert internal_functions.validate_params("vwap_deviation", {"length": None}) == []
    assert internal_functions.validate_params("vwap_deviation", {"length": 0})[0].startswith("parameter 'length'")
    assert internal_functions.validate_params("put_call_ratio", {"chain": "x"})[0].startswith(
        "parameter 'chain' must be a list"
    )
    assert internal_functions.validate_params("zscore", [1]) == ["parameters must be an object"]


def test_validate_result_conventions() -> None:
    np = pytest.importorskip("numpy")
    assert validate_result({"a": 1, "b": 2.5, "c": "x", "d": True, "e": None}) == {
        "a": 1, "b": 2.5, "c": "x", "d": True, "e": None,
    }  # fmt: skip
    assert validate_result({"nan": float("nan"), "inf": float("inf"), "ninf": -math.inf}) == {
        "nan": None, "inf": None, "ninf": None,
    }  # fmt: skip
    converted = validate_result(
        {"f": np.float64(1.5), "i": np.int64(3), "b": np.bool_(True), "n": np.float32("nan")}
    )
    assert converted == {"f": 1.5, "i": 3, "b": True, "n": None}
    assert [type(v) for v in converted.values()] == [float, int, bool, type(None)]
    for bad, message in [
        ([1], "must return a dict"),
        ({"a": [1]}, "'a' has type list"),
        ({"a": {"b": 1}}, "'a' has type dict"),
        ({"a": {1, 2}}, "'a' has type set"),
        ({"a": (1,)}, "'a' has type tuple"),
        ({"a": object()}, "'a' has type object"),
        ({"a": Decimal("1.5")}, "'a' has type Decimal"),
        ({"a": datetime.date(2025, 1, 1)}, "'a' has type date"),
        ({1: 1}, "keys must be strings"),
        ({"": 1}, "non-empty"),
    ]:
        with pytest.raises(ResultError, match=message):
            validate_result(bad)


# -- price ---------------------------------------------------------------------------------------------------------


def test_price_change_since_previous_tick() -> None:
    tick = {"ltp": 101.5, "timestamp": "2025-06-26T09:15:01+05:30",
            "previous": {"ltp": 100.0, "timestamp": "2025-06-26T09:15:00+05:30"}}  # fmt: skip
    assert call_internal("price", tick, [], {}) == {
        "ltp": 101.5,
        "previous_ltp": 100.0,
        "change": 1.5,
        "change_pct": 1.5,
        "timestamp": "2025-06-26T09:15:01+05:30",
        "previous_timestamp": "2025-06-26T09:15:00+05:30",
    }
    down = call_internal("price", {"ltp": 95, "previous": {"ltp": 100, "timestamp": None}}, [], {})
    assert down["change"] == -5 and down["change_pct"] == -5.0


def test_price_without_previous_or_zero_previous() -> None:
    when = datetime.datetime(2025, 6, 26, 9, 15, tzinfo=datetime.UTC)
    first = call_internal("price", {"ltp": 100.0, "timestamp": when, "previous": None}, [], {})
    assert first == {"ltp": 100.0, "previous_ltp": None, "change": None, "change_pct": None,
                     "timestamp": "2025-06-26T09:15:00+00:00", "previous_timestamp": None}  # fmt: skip
    zero = call_internal("price", {"ltp": 0.5, "previous": {"ltp": 0.0, "timestamp": "t"}}, [], {})
    assert zero["change"] == 0.5 and zero["change_pct"] is None
    assert call_internal("price", {}, [], {})["ltp"] is None


# -- vwap_deviation ------------------------------------------------------------------------------------------------

VWAP_BARS = [
    # typical prices 10, 11, 12 with volumes 100, 200, 100 -> VWAP = 4400 / 400 = 11
    {"time": "t0", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 100, "oi": 0},
    {"time": "t1", "open": 11, "high": 12, "low": 10, "close": 11, "volume": 200, "oi": 0},
    {"time": "t2", "open": 12, "high": 13, "low": 11, "close": 12, "volume": 100, "oi": 0},
]


def test_vwap_deviation_hand_computed() -> None:
    res = call_internal("vwap_deviation", {"ltp": 12.1}, VWAP_BARS, {})
    assert res["vwap"] == approx(11.0)
    assert res["ltp"] == 12.1
    assert res["deviation"] == approx(1.1)
    assert res["deviation_pct"] == approx(10.0)
    assert res["bars_used"] == 3
    last_only = call_internal("vwap_deviation", {"ltp": 12.1}, VWAP_BARS, {"length": 1})
    assert last_only["vwap"] == approx(12.0) and last_only["deviation"] == approx(0.1)


def test_vwap_deviation_edge_cases() -> None:
    # no ltp in the tick: falls back to the last bar's close (12) -> +1 = +9.0909 %
    res = call_internal("vwap_deviation", {}, VWAP_BARS, {})
    assert res["ltp"] == 12.0 and res["deviation_pct"] == approx(100 / 11)
    # Decimal inputs (as from PostgreSQL) work; zero-volume and incomplete bars are skipped
    bars = [dict(b, high=Decimal(b["high"])) for b in VWAP_BARS] + [
        {"high": 50, "low": 40, "close": 45, "volume": 0},
        {"high": None, "low": 40, "close": 45, "volume": 10},
    ]
    assert call_internal("vwap_deviation", {"ltp": 11}, bars, {})["vwap"] == approx(11.0)
    empty = call_internal("vwap_deviation", {"ltp": 11}, [], {})
    assert empty == {"vwap": None, "ltp": 11.0, "deviation": None, "deviation_pct": None, "bars_used": 0}


# -- zscore --------------------------------------------------------------------------------------------------------


def _close_bars(closes: list[float]) -> list[dict[str, Any]]:
    return [{"time": str(i), "open": c, "high": c, "low": c, "close": c, "volume": 1, "oi": 0} for i, c in
            enumerate(closes)]  # fmt: skip


def test_zscore_hand_computed() -> None:
    bars = _close_bars([100.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # the first close falls outside a 5-bar window
    # window 1..5: mean 3; sample variance (4+1+0+1+4)/4 = 2.5 -> std 1.5811388; z = 2 / 1.5811388 = 1.2649111
    res = call_internal("zscore", {}, bars, {"length": 5})
    assert res == {"zscore": approx(1.2649110640673518), "close": 5.0, "mean": 3.0,
                   "std": approx(1.5811388300841898), "length": 5}  # fmt: skip
    # population std (ddof 0): variance 2 -> std 1.4142136; z = 1.4142136
    pop = call_internal("zscore", {}, bars, {"length": 5, "ddof": 0})
    assert pop["std"] == approx(math.sqrt(2)) and pop["zscore"] == approx(math.sqrt(2))


def test_zscore_default_length_and_insufficient_data(bars: list[dict[str, Any]]) -> None:
    # fixture closes 100.5 .. 129.5 (step 1): last 20 = 110.5..129.5, mean 120, sample std sqrt(35)
    res = call_internal("zscore", {}, bars, {})
    assert res["length"] == 20 and res["mean"] == approx(120.0)
    assert res["std"] == approx(math.sqrt(35.0)) and res["zscore"] == approx(9.5 / math.sqrt(35.0))
    short = call_internal("zscore", {}, bars[:10], {})
    assert short == {"zscore": None, "close": 109.5, "mean": None, "std": None, "length": 20}
    flat = call_internal("zscore", {}, _close_bars([7.0] * 5), {"length": 5})
    assert flat["zscore"] is None and flat["std"] == 0.0


# -- oi_change -----------------------------------------------------------------------------------------------------


def test_oi_change_hand_computed() -> None:
    bars = [{"time": str(i), "close": 1, "oi": oi} for i, oi in enumerate([1000, 1100, 1200])]
    res = call_internal("oi_change", {"oi": 1250}, bars, {})
    assert res == {
        "oi": 1250.0,
        "first_oi": 1000.0,
        "previous_oi": 1100.0,  # bars[-2]: bars[-1] is the still-open current bar
        "oi_change_first": 250.0,
        "oi_change_first_pct": 25.0,
        "oi_change_prev": 150.0,
        "oi_change_prev_pct": approx(150 / 1100 * 100),
    }
    no_tick_oi = call_internal("oi_change", {}, bars, {})
    assert no_tick_oi["oi"] == 1200.0 and no_tick_oi["oi_change_first"] == 200.0
    assert no_tick_oi["oi_change_prev"] == 100.0 and no_tick_oi["oi_change_prev_pct"] == approx(100 / 11)


def test_oi_change_edge_cases() -> None:
    one = call_internal("oi_change", {"oi": 10}, [{"oi": 0}], {})
    assert one["oi_change_first"] == 10.0 and one["oi_change_first_pct"] is None  # base 0
    assert one["previous_oi"] is None and one["oi_change_prev"] is None
    nothing = call_internal("oi_change", {}, [], {})
    assert set(nothing.values()) == {None}


# -- put_call_ratio ------------------------------------------------------------------------------------------------

CHAIN = [
    {"right": "call", "strike": 24000, "oi": 1000, "volume": 50},
    {"right": "CE", "strike": 24100, "oi": 500, "volume": 150},
    {"right": "put", "strike": 24000, "oi": 1200, "volume": 100},
    {"instrument_key": "NSE@NIFTY@options@2025-06-26@put@23900", "oi": 600, "volume": 50},
]


def test_put_call_ratio_from_tick_chain() -> None:
    res = call_internal("put_call_ratio", {"chain": CHAIN}, [], {})
    # calls: oi 1500, volume 200; puts: oi 1800, volume 150
    assert res == {"oi_pcr": approx(1.2), "volume_pcr": approx(0.75), "call_oi": 1500.0, "put_oi": 1800.0,
                   "call_volume": 200.0, "put_volume": 150.0, "contracts": 4}  # fmt: skip


def test_put_call_ratio_params_expiry_and_zero_denominator() -> None:
    from_params = call_internal("put_call_ratio", {}, [], {"chain": CHAIN})
    assert from_params["oi_pcr"] == approx(1.2)
    chain = [dict(e, expiry="2025-07-31") for e in CHAIN[:3]] + [CHAIN[3]]  # only the last is 2025-06-26
    june = call_internal("put_call_ratio", {"chain": chain}, [], {"expiry": "2025-06-26"})
    assert june["contracts"] == 1 and june["put_oi"] == 600.0 and june["oi_pcr"] is None  # no calls -> null
    puts_only = call_internal("put_call_ratio", {"chain": [{"right": "PE", "oi": 5, "volume": 0}]}, [], {})
    assert puts_only["oi_pcr"] is None and puts_only["volume_pcr"] is None
    none = call_internal("put_call_ratio", {}, [], {})
    assert none == {"oi_pcr": None, "volume_pcr": None, "call_oi": None, "put_oi": None, "call_volume": None,
                    "put_volume": None, "contracts": 0}  # fmt: skip
    with pytest.raises(FunctionError, match="chain snapshot must be a list"):
        call_internal("put_call_ratio", {"chain": "bad"}, [], {})


def test_builtins_are_registered_whichever_module_is_imported_first() -> None:
    code = "from functions.internal.registry import names; print(','.join(names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert {"price", "vwap_deviation", "zscore", "oi_change", "put_call_ratio"} <= set(out.strip().split(","))
