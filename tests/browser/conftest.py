"""Browser tests (pytest-playwright) on Debian's Chromium: Playwright cannot download its own browsers here."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("SIGNAL_TEST_CHROMIUM", "/usr/bin/chromium")

# Playwright's sync API runs an event loop in the test's thread; Django would then refuse the test's own database
# calls (made between browser steps, never concurrently with a request of this thread).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not shutil.which(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    # as root Chromium refuses to start without --no-sandbox
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}
