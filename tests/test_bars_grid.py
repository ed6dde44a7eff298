"""The exchange-day arithmetic of the bars grid against the zone's own calendar."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from signals.bars.grid import exchange_day


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe"])
def test_exchange_day_matches_the_zones_calendar_around_midnights_and_clock_changes(zone: str) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    # every 7 minutes 13 seconds over 300 days: crosses each local midnight and both clock changes
    for ts in np.arange(start, start + 300 * 86400, 433.0):
        assert exchange_day(float(ts), tz) == datetime.fromtimestamp(float(ts), tz).date().isoformat()
