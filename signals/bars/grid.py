"""The time grid of bars: session alignment, bar buckets and cache chunks, in epoch seconds (docs/REFERENCE.md §5).

Intraday bars sit on a grid anchored at the session open (``SESSION_OPEN``, ``EXCHANGE_TIMEZONE``) of each tick's
exchange date; daily bars are exchange dates, weekly from Monday, monthly from the 1st. The Redis cache holds bars
in *chunks*: one exchange date for intraday timeframes and ``1d``, one week for ``1w``, one month for ``1M``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings

from indicators.timeframes import Timeframe, parse_timeframe


@dataclass(frozen=True)
class Alignment:
    session_open: dtime
    tz: str

    @classmethod
    def from_settings(cls) -> Alignment:
        return cls(dtime.fromisoformat(settings.SESSION_OPEN), settings.EXCHANGE_TIMEZONE)


class Grid:
    """Scalar bar and chunk arithmetic for one timeframe (epoch seconds in and out); agrees with
    `indicators.bars.bucket_start` (tested)."""

    def __init__(self, tf: Timeframe | str, alignment: Alignment):
        self.tf = parse_timeframe(tf)
        self.alignment = alignment
        self.zone = ZoneInfo(alignment.tz)
        self.size = self.tf.count * 60 if self.tf.is_intraday else None

    @property
    def name(self) -> str:
        return self.tf.name

    def local_date(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.zone).date()

    def midnight(self, day: date) -> int:
        return int(datetime.combine(day, dtime(0), tzinfo=self.zone).timestamp())

    def chunk_date(self, day: date) -> date:
        if self.tf.unit == "week":
            return day - timedelta(days=day.weekday())
        if self.tf.unit == "month":
            return day.replace(day=1)
        return day

    def chunk_of(self, ts: float) -> date:
        return self.chunk_date(self.local_date(ts))

    def next_chunk(self, chunk: date) -> date:
        if self.tf.unit == "week":
            return chunk + timedelta(days=7)
        if self.tf.unit == "month":
            return (chunk.replace(day=28) + timedelta(days=4)).replace(day=1)
        return chunk + timedelta(days=1)

    def previous_chunk(self, chunk: date) -> date:
        if self.tf.unit == "month":
            return (chunk - timedelta(days=1)).replace(day=1)
        return chunk - timedelta(days=7 if self.tf.unit == "week" else 1)

    def chunk_bounds(self, chunk: date) -> tuple[int, int]:
        return self.midnight(chunk), self.midnight(self.next_chunk(chunk))

    def bucket(self, ts: float) -> int:
        """Start of the bar containing ``ts``."""
        day = self.local_date(ts)
        if self.size is None:
            return self.midnight(self.chunk_date(day))
        opening = int(datetime.combine(day, self.alignment.session_open, tzinfo=self.zone).timestamp())
        return opening + math.floor((ts - opening) / self.size) * self.size

    def bar_end(self, start: float) -> int:
        if self.size is not None:
            return int(start) + self.size
        return self.midnight(self.next_chunk(self.local_date(start)))

    def chunks_between(self, first: date, last: date) -> list[date]:
        out = []
        chunk = self.chunk_date(first)
        while chunk <= last:
            out.append(chunk)
            chunk = self.next_chunk(chunk)
        return out


def exchange_day(ts: float, zone: ZoneInfo) -> str:
    """ISO date of epoch time ``ts`` in ``zone``."""
    return _exchange_day_of_slot(int(ts // _DAY_SLOT_S), zone)


_DAY_SLOT_S = 900  # every UTC offset in use is a multiple of 15 minutes, so a date never changes inside a slot


@lru_cache(maxsize=4096)
def _exchange_day_of_slot(slot: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(slot * _DAY_SLOT_S, zone).date().isoformat()
