"""PostgreSQL bucket expressions that align bars exactly as :func:`indicators.bars.bucket_start` (no Django).

The alignment rules (session-open grid per exchange date, exchange days/weeks/months) are described in
:mod:`indicators.bars`; these helpers reproduce them in SQL for ``date_bin`` / ``time_bucket`` / ``date_trunc``.
"""

from __future__ import annotations

from datetime import date, datetime, time

import pandas as pd

from indicators.timeframes import EXCHANGE_TZ, SESSION_OPEN, Timeframe, parse_timeframe, session_time

__all__ = ["sql_bucket_expression", "sql_bucket_params"]

_SQL_ORIGIN_DATE = date(2000, 1, 3)  # a Monday, so weekly buckets start on Mondays


def _fixed_offset_iso(local: datetime, tz: str) -> str:
    ts = pd.Timestamp(local).tz_localize(tz)
    return ts.isoformat()


def sql_bucket_params(
    tf: Timeframe | str,
    session_open: time | str = SESSION_OPEN,
    tz: str = EXCHANGE_TZ,
) -> tuple[str, str]:
    """``(stride, origin)`` for ``date_bin(stride::interval, time, origin::timestamptz)`` /
    ``time_bucket(stride, time, origin => origin)``.

    ``stride`` is a PostgreSQL interval literal (``'7 minutes'``, ``'1 day'``, ``'7 days'``, ``'1 month'``);
    ``origin`` an ISO-8601 instant with offset on 2000-01-03 (a Monday): the session open for intraday bars
    (``'2000-01-03T09:15:00+05:30'``), local midnight for 1d/1w; for 1M local midnight of 2000-01-01.

    Exactness: a constant origin reproduces :func:`bucket_start` only for a zone without DST (IST has none) and
    only when the stride divides 24 h (``tf.divides_day``: 1m…30m, 1h, 2h, 4h, 1d, 1w). For other sizes (7m, 13m,
    90m…) the per-date grid drifts against a constant origin: use :func:`sql_bucket_expression`, which uses a
    per-row origin. ``date_bin`` rejects month strides: for ``1M`` use ``time_bucket`` (TimescaleDB) or
    :func:`sql_bucket_expression` (``date_trunc``).
    """
    tf = parse_timeframe(tf)
    if tf.is_intraday:
        local = datetime.combine(_SQL_ORIGIN_DATE, session_time(session_open))
        return tf.sql_interval, _fixed_offset_iso(local, tz)
    origin_day = _SQL_ORIGIN_DATE if tf.unit != "month" else _SQL_ORIGIN_DATE.replace(day=1)
    local = datetime.combine(origin_day, time(0, 0))
    stride = {"day": "1 day", "week": "7 days", "month": "1 month"}[tf.unit]
    return stride, _fixed_offset_iso(local, tz)


def sql_bucket_expression(
    tf: Timeframe | str,
    column: str = "time",
    session_open: time | str = SESSION_OPEN,
    tz: str = EXCHANGE_TZ,
) -> str:
    """A PostgreSQL expression (``timestamptz``) equal to :func:`bucket_start` of ``column`` for every row.

    * intraday: ``date_bin(stride, col, (date_trunc('day', col AT TIME ZONE tz) + open) AT TIME ZONE tz)`` —
      the origin is the session open of the row's own exchange date, so pre-open rows count backwards and
      sizes that do not divide 24 h (7m…) restart at every date exactly as in Python (PostgreSQL ≥ 14.3 floors
      for rows before the origin);
    * 1d/1w/1M: ``date_trunc('day'|'week'|'month', col AT TIME ZONE tz) AT TIME ZONE tz`` (ISO weeks start
      on Monday).

    ``column`` and ``tz`` are inserted verbatim / as a quoted literal: pass trusted identifiers only.
    """
    tf = parse_timeframe(tf)
    if "'" in tz:
        raise ValueError("invalid time zone name")
    tzq = f"'{tz}'"
    local = f"({column} AT TIME ZONE {tzq})"
    if tf.is_intraday:
        t = session_time(session_open)
        open_iv = f"interval '{t.hour} hours {t.minute} minutes {t.second + t.microsecond / 1e6:g} seconds'"
        origin = f"((date_trunc('day', {local}) + {open_iv}) AT TIME ZONE {tzq})"
        return f"date_bin(interval '{tf.sql_interval}', {column}, {origin})"
    return f"(date_trunc('{tf.unit}', {local}) AT TIME ZONE {tzq})"
