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
