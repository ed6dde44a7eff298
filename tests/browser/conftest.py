"""Browser tests (pytest-playwright) on Debian's Chromium: Playwright cannot download its own browsers here."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("SIGNAL_TEST_CHROMIUM", "/usr/bin/chromium")



@pytest.fixture(scope="session", autouse=True)
def database_between_browser_steps(django_db_setup: None) -> None:
    # Playwright's sync API keeps an event loop in the test thread until the run ends; Django would then refuse
    # the tests' own database calls (between browser steps, and the database teardown after them). Left set: the
    # browser tests run last (tests/conftest.py). The test database is created first, before Playwright's session
    # fixtures start that loop (run alone, `pytest tests/browser` otherwise failed there).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not shutil.which(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    # as root Chromium refuses to start without --no-sandbox
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}
