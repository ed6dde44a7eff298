"""The Greek field list is written once (`greeks.GREEK_NAMES`); every other list of Greeks is derived from it or,
where it must be declared (the model's columns, the engine's result fields), held equal to it here."""

from __future__ import annotations

from django.db import models

from configs import validation
from greeks import GREEK_NAMES
from greeks.engine import ChainResult, Greeks
from signals import storage
from signals.models import GreeksRecord
from signals.options.pricing import Priced


def test_the_greeks_model_has_one_float_column_per_greek() -> None:
    floats = {f.name for f in GreeksRecord._meta.get_fields() if isinstance(f, models.FloatField)}
    non_greek = {"option_price", "underlying_price", "time_to_expiry", "sigma"}
    assert floats - non_greek == set(GREEK_NAMES)


def test_the_engine_and_the_pricing_return_every_greek() -> None:
    assert Greeks._fields == GREEK_NAMES[1:]
    assert set(GREEK_NAMES) <= set(ChainResult._fields)
    assert set(GREEK_NAMES) <= set(Priced.__dataclass_fields__)


def test_the_stored_columns_and_the_config_choices_are_the_list() -> None:
    assert [c for c in storage.GREEKS_COLUMNS if c in GREEK_NAMES] == list(GREEK_NAMES)
    assert len(storage.GREEKS_TYPES) == len(storage.GREEKS_COLUMNS)
    assert validation.GREEK_NAMES is GREEK_NAMES
    assert validation.GREEKS_DEFAULTS["calculate"] == list(GREEK_NAMES)


def test_rows_built_at_once_equal_each_row_with_its_reason() -> None:
    import numpy as np

    from signals.options.pricing import price_quotes

    nan = float("nan")
    # a clean solve, a price below intrinsic (INDVIX fallback), no price, no underlying
    priced = price_quotes(np.array([400.0, 0.5, nan, 80.0]), np.array([24000.0, 24500.0, 24000.0, nan]),
                          np.array([1e9, 1e9, 1e9, nan]), np.full(4, 1e9), np.array([24000.0, 24000.0, 24000.0, 24100.0]),
                          np.full(4, 1e9 + 30 * 86400), np.array([True, True, False, False]), np.array([14.0, 14.0, nan, 14.0]),
                          model="black_scholes_merton", r=0.065, q=0.0, use_indvix=True, staleness_s=5.0)
    for calculate in (GREEK_NAMES, ["delta", "iv"]):
        rows = priced.rows(calculate)
        assert rows == [priced.row(i, calculate) for i in range(len(priced))]
        assert [list(row) for row in rows] == [list(priced.row(i, calculate)) for i in range(len(priced))]  # key order
    assert {row["status"] for row in priced.rows()} >= {"ok", "no_price", "no_underlying"}
    assert "reason" in priced.rows()[1] and "reason" not in priced.rows()[0]
