"""The indicator core is pure (no Django, PostgreSQL or Redis): opt out of the suite-wide Redis reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Overrides tests/conftest.py's autouse fixture of the same name: nothing to reset here."""
    yield
