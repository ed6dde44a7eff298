"""Bar alignment and a reference tick→bar resampler (no Django); :mod:`indicators.sql_buckets` aligns in SQL.

Times
    Every function takes tz-aware timestamps (any zone; naive ones are rejected) and returns bar start times as
    tz-aware **UTC** timestamps. "Exchange date" / "local" mean wall-clock time in the exchange zone ``tz``
    (default ``Asia/Kolkata``, see :mod:`indicators.timeframes`).

Alignment (docs/REFERENCE.md §5)
    * Intraday (``Nm``/``Nh``): buckets are laid on a grid anchored at the session open (default 09:15 local) of
      each tick's own exchange date: ``start = open_of_that_date + floor((t - open) / size) * size``.
      Ticks before the open on that date (pre-open session, or any early tick) use the same formula with a
      negative multiple, i.e. buckets counted **backwards from the open**: with 7m bars a tick at 09:14:59
      lands in the bucket [09:08, 09:15), never in the 09:15 bar, and no bucket straddles the open. The grid
      restarts every exchange date, so for sizes that do not divide 24 h (7m, 13m, 90m…) the bucket running
      past local midnight is cut there (ticks after midnight belong to the next date's grid).
    * ``1d``: the exchange date (bar start = local midnight). ``1w``: the exchange week starting Monday
      00:00 local. ``1M``: the calendar month starting on the 1st, 00:00 local.

Volume
    Indian feeds send ``volume``/``ttq`` as the **cumulative traded quantity of the day**. By default
    (``volume_mode="cumulative"``) :func:`resample_ticks` converts it to traded quantity per bar: within each
    exchange date the running maximum of the cumulative figure is differenced tick to tick (the first tick of a
    date contributes its whole cumulative value, since the counter restarts each day) and the increments are
    summed per bar. For an in-order feed this is exactly ``last cumulative in the bar - last cumulative of the
    previous bar of the same date`` (first bar of the date: its last cumulative value); a late tick carrying a
    smaller cumulative value cannot make a bar's volume negative. With ``volume_mode="per_tick"`` the column is
    taken as each tick's own traded quantity (e.g. ``ltq``) and summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from indicators.timeframes import EXCHANGE_TZ, SESSION_OPEN, Timeframe, parse_timeframe, session_time

__all__ = [
    "BAR_COLUMNS",
    "bar_end",
    "bucket_start",
    "merge_bars",
    "resample_ticks",
    "session_open_utc",
]

#: Column order of every bar frame produced here (``time`` = bar start, tz-aware UTC).
BAR_COLUMNS: tuple[str, ...] = ("time", "open", "high", "low", "close", "volume", "oi")

VolumeMode = Literal["cumulative", "per_tick"]

_PRICE_ALIASES = ("ltp", "price", "last")
_TIME_ALIASES = ("time", "ltt", "timestamp", "ts_exch")
_VOLUME_ALIASES = ("volume", "ttq")
_OI_ALIASES = ("oi", "OI")


def _session_offset(session_open: time | str) -> pd.Timedelta:
    t = session_time(session_open)
    return pd.Timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _input_unit(times: pd.Series | pd.DatetimeIndex | datetime) -> str:
    """Resolution of the input (``"ns"``, ``"us"``…) so outputs keep it; scalars give pandas' default ``"us"``."""
    dtype = getattr(times, "dtype", None)
    unit = getattr(dtype, "unit", None)
    return unit if isinstance(unit, str) and unit in ("s", "ms", "us", "ns") else "us"


def _to_utc_index(times: pd.Series | pd.DatetimeIndex | datetime) -> pd.DatetimeIndex:
    """Tz-aware (any zone) → UTC DatetimeIndex with nanosecond resolution; naive input is rejected."""
    if isinstance(times, pd.DatetimeIndex):
        idx = times
    elif isinstance(times, pd.Series):
        values = times if isinstance(times.dtype, pd.DatetimeTZDtype) else pd.to_datetime(times)
        idx = pd.DatetimeIndex(values)
    else:
        idx = pd.DatetimeIndex([pd.Timestamp(times)])
    if idx.tz is None:
        raise ValueError("times must be timezone-aware (naive timestamps are ambiguous); localize them first")
    return idx.tz_convert("UTC").as_unit("ns")


def _local_midnight_utc(local_naive_days: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Local-midnight (naive wall clock) → UTC instants; DST gaps resolve forward."""
    return local_naive_days.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward").tz_convert("UTC")


def _bucket_index(
    idx_utc: pd.DatetimeIndex, tf: Timeframe, session_open: time | str, tz: str
) -> pd.DatetimeIndex:
    local_naive = idx_utc.tz_convert(tz).tz_localize(None)
    day = local_naive.normalize()
    if tf.is_intraday:
        size = pd.Timedelta(minutes=tf.count)
        open_naive = day + _session_offset(session_open)
        open_utc = open_naive.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward").tz_convert("UTC")
        size_ns = size.value
        delta_ns = (idx_utc.asi8 - open_utc.asi8).astype(np.int64)
        k = np.floor_divide(delta_ns, size_ns)
        starts = open_utc.asi8 + k * size_ns
        out = pd.DatetimeIndex(starts.astype("datetime64[ns]")).tz_localize("UTC")
    elif tf.unit == "day":
        out = _local_midnight_utc(day, tz)
    elif tf.unit == "week":
        monday = day - pd.to_timedelta(day.day_of_week, unit="D")
        out = _local_midnight_utc(pd.DatetimeIndex(monday), tz)
    else:  # month
        first = day - pd.to_timedelta(day.day - 1, unit="D")
        out = _local_midnight_utc(pd.DatetimeIndex(first), tz)
    # keep NaT where the input was NaT
    if idx_utc.hasnans:
        out = out.where(~idx_utc.isna())
    return out


def bucket_start(
    times: pd.Series | pd.DatetimeIndex | datetime,
    tf: Timeframe | str,
    session_open: time | str = SESSION_OPEN,
    tz: str = EXCHANGE_TZ,
) -> pd.Series | pd.DatetimeIndex | pd.Timestamp:
    """Start of the bar containing each time (see the module docstring for the alignment rules).

    Args:
        times: tz-aware instants (Series, DatetimeIndex or a single datetime/Timestamp).
        tf: timeframe or interval string (``"7m"``, ``"1d"``, …).
        session_open: local session open used to anchor intraday bars (``time`` or ``"HH:MM[:SS]"``).
        tz: exchange time zone (IANA name) defining exchange dates and the session open.

    Returns:
        The same shape as ``times`` (Series keeps its index and name), tz-aware UTC.
    """
    tf = parse_timeframe(tf)
    idx = _to_utc_index(times)
    out = _bucket_index(idx, tf, session_open, tz).as_unit(_input_unit(times))
    if isinstance(times, pd.Series):
        return pd.Series(out, index=times.index, name=times.name)
    if isinstance(times, pd.DatetimeIndex):
        return out.rename(times.name)
    return out[0]


def _pick(columns: pd.Index, aliases: tuple[str, ...], explicit: str | None) -> str | None:
    if explicit is not None:
        if explicit not in columns:
            raise ValueError(f"column {explicit!r} not in ticks (columns: {list(columns)})")
        return explicit
    for name in aliases:
        if name in columns:
            return name
    return None


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS[1:]})
    frame.insert(0, "time", pd.Series(pd.DatetimeIndex([], tz="UTC")))
    return frame


def _tick_columns(
    cols: pd.Index, time_col: str | None, price_col: str | None, volume_col: str | None, oi_col: str | None
) -> tuple[str, str, str | None, str | None]:
    """The tick columns read for time, price, volume and OI (explicit names, else the first alias found)."""
    t_name = _pick(cols, _TIME_ALIASES, time_col)
    p_name = _pick(cols, _PRICE_ALIASES, price_col)
    if t_name is None or p_name is None:
        raise ValueError(
            f"ticks need a time column ({'|'.join(_TIME_ALIASES)}) and a price column "
            f"({'|'.join(_PRICE_ALIASES)}); got {list(cols)}"
        )
    return t_name, p_name, _pick(cols, _VOLUME_ALIASES, volume_col), _pick(cols, _OI_ALIASES, oi_col)


def _sorted_ticks(
    ticks: pd.DataFrame, t_name: str, p_name: str, v_name: str | None, oi_name: str | None
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray] | None:
    """UTC times, price, volume and OI of the ticks with a time and a price, sorted by time; None if there are none.

    The sort is stable: open/close follow tick time, ties keep arrival (row) order.
    """
    times = _to_utc_index(ticks[t_name])
    price = pd.to_numeric(ticks[p_name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    keep = ~(times.isna() | np.isnan(price))
    if not keep.all():
        times = times[keep]
        price = price[keep]
    n = len(times)
    if n == 0:
        return None

    def _col(name: str | None) -> np.ndarray:
        if name is None:
            return np.full(n, np.nan)
        arr = pd.to_numeric(ticks[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return arr[keep] if not keep.all() else arr

    volume = _col(v_name)
    oi = _col(oi_name)
    order = np.argsort(times.asi8, kind="stable")
    return times[order], price[order], volume[order], oi[order]


def _volume_increments(times: pd.DatetimeIndex, volume: np.ndarray, tz: str) -> np.ndarray:
    """Traded quantity per tick from the day-cumulative figure (see the module docstring), ticks sorted by time."""
    local_day = times.tz_convert(tz).tz_localize(None).normalize().asi8
    day_key = pd.Series(local_day)
    running = pd.Series(volume).groupby(day_key, sort=False).cummax()
    running = running.groupby(day_key, sort=False).ffill()  # a tick without volume changes nothing
    prev = running.groupby(day_key, sort=False).shift(1).fillna(0.0)
    return (running - prev).to_numpy()


def _aggregate_bars(
    starts: pd.DatetimeIndex, price: np.ndarray, volume: np.ndarray, oi: np.ndarray, unit: str
) -> pd.DataFrame:
    """One OHLCV+OI bar per bucket start present, ``time`` at the input's resolution ``unit``."""
    frame = pd.DataFrame(
        {"time": starts, "price": price, "volume": volume, "oi": oi},
    )
    grouped = frame.groupby("time", sort=True)
    bars = pd.DataFrame(
        {
            "open": grouped["price"].first(),
            "high": grouped["price"].max(),
            "low": grouped["price"].min(),
            "close": grouped["price"].last(),
            "volume": grouped["volume"].sum(min_count=1),
            "oi": grouped["oi"].last(),
        }
    )
    bars.index.name = "time"
    bars = bars.reset_index()
    bars["time"] = pd.DatetimeIndex(bars["time"]).tz_convert("UTC").as_unit(unit)
    return bars[list(BAR_COLUMNS)]


def resample_ticks(
    ticks: pd.DataFrame,
    tf: Timeframe | str,
    *,
    session_open: time | str = SESSION_OPEN,
    tz: str = EXCHANGE_TZ,
    volume_mode: VolumeMode = "cumulative",
    time_col: str | None = None,
    price_col: str | None = None,
    volume_col: str | None = None,
    oi_col: str | None = None,
) -> pd.DataFrame:
    """Reference resampler: ticks → OHLCV+OI bars for ``tf``.

    Args:
        ticks: one row per tick, in any row order (late/out-of-order ticks are placed by their own time).
            Columns (first alias found is used unless named explicitly): time ``time|ltt|timestamp|ts_exch``
            (tz-aware), price ``ltp|price|last``, volume ``volume|ttq`` (optional), open interest ``oi|OI``
            (optional). Rows with a missing time or price are ignored.
        tf: timeframe or interval string.
        session_open, tz: alignment parameters (see :func:`bucket_start`).
        volume_mode: ``"cumulative"`` (default; day-cumulative traded quantity, as Indian feeds send) or
            ``"per_tick"`` (each tick's own traded quantity). See the module docstring.

    Returns:
        Bars sorted by ``time`` (bar start, tz-aware UTC) with columns ``time, open, high, low, close, volume,
        oi`` (float64, except time) and a RangeIndex. ``open``/``close`` are the earliest/latest ticks by time
        (ties keep row order), ``oi`` the last non-null OI in the bar. Missing volume/oi columns give NaN.
        Only buckets that contain ticks appear (no empty bars are synthesised).
    """
    tf = parse_timeframe(tf)
    if volume_mode not in ("cumulative", "per_tick"):
        raise ValueError(f"volume_mode must be 'cumulative' or 'per_tick', got {volume_mode!r}")
    t_name, p_name, v_name, oi_name = _tick_columns(ticks.columns, time_col, price_col, volume_col, oi_col)
    unit = _input_unit(ticks[t_name])
    arrays = _sorted_ticks(ticks, t_name, p_name, v_name, oi_name)
    if arrays is None:
        return _empty_bars()
    times, price, volume, oi = arrays
    increments = _volume_increments(times, volume, tz) if volume_mode == "cumulative" else volume
    starts = _bucket_index(times, tf, session_open, tz)
    return _aggregate_bars(starts, price, increments, oi, unit)


def _open_bar_frame(open_bar: Mapping[str, Any] | pd.Series | pd.DataFrame) -> pd.DataFrame:
    if isinstance(open_bar, pd.DataFrame):
        frame = open_bar.copy()
    elif isinstance(open_bar, pd.Series):
        frame = open_bar.to_frame().T
    else:
        frame = pd.DataFrame([dict(open_bar)])
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if "time" in missing:
        raise ValueError("open_bar needs a 'time' (bar start) field")
    for c in missing:
        frame[c] = np.nan
    frame["time"] = pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True))
    for c in BAR_COLUMNS[1:]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame[list(BAR_COLUMNS)].reset_index(drop=True)


def merge_bars(
    db_bars: pd.DataFrame,
    open_bar: Mapping[str, Any] | pd.Series | pd.DataFrame | None,
) -> pd.DataFrame:
    """Merge the still-open bar (e.g. from Redis) into bars read from the database.

    Args:
        db_bars: closed (and possibly a partial last) bars with the :data:`BAR_COLUMNS`, ``time`` tz-aware.
        open_bar: the live bar for the current bucket — a mapping (``time`` as tz-aware datetime, ISO-8601
            string with offset, or Timestamp), a Series, a one-row DataFrame, or None.

    Rules, per bar start ``time``: a bucket present only on one side is kept as is; when both sides have it
    (the database holds the stored ticks of the bucket so far, the open bar the live view) they are combined as
    ``open`` = database open (its ticks go back to the bucket start), ``high`` = max, ``low`` = min,
    ``close`` and ``oi`` = open bar's (the most recent; database values where the open bar has none),
    ``volume`` = the larger of the two (both measure the same bucket; the later snapshot is larger).
    The result is sorted by ``time`` (tz-aware UTC), RangeIndex, columns :data:`BAR_COLUMNS`.
    """
    base = db_bars.copy()
    if "time" not in base.columns:
        raise ValueError("db_bars needs a 'time' column")
    for c in BAR_COLUMNS[1:]:
        if c not in base.columns:
            base[c] = np.nan
    base["time"] = pd.DatetimeIndex(pd.to_datetime(base["time"], utc=True))
    for c in BAR_COLUMNS[1:]:
        base[c] = pd.to_numeric(base[c], errors="coerce").astype("float64")
    base = base[list(BAR_COLUMNS)]
    if open_bar is None or (isinstance(open_bar, pd.DataFrame) and open_bar.empty):
        return base.sort_values("time", kind="stable").reset_index(drop=True)
    live = _open_bar_frame(open_bar)
    base = base.set_index("time")
    for row in live.itertuples(index=False):
        t = row.time
        if t in base.index:
            old = base.loc[t]
            base.loc[t] = [
                old["open"] if not np.isnan(old["open"]) else row.open,
                np.nanmax([old["high"], row.high]),
                np.nanmin([old["low"], row.low]),
                row.close if not np.isnan(row.close) else old["close"],
                np.nanmax([old["volume"], row.volume]),
                row.oi if not np.isnan(row.oi) else old["oi"],
            ]
        else:
            base.loc[t] = [row.open, row.high, row.low, row.close, row.volume, row.oi]
    base = base.sort_index(kind="stable")
    base.index.name = "time"
    out = base.reset_index()
    out["time"] = pd.DatetimeIndex(out["time"]).tz_convert("UTC")
    return out[list(BAR_COLUMNS)]


def session_open_utc(
    day: date, session_open: time | str = SESSION_OPEN, tz: str = EXCHANGE_TZ
) -> pd.Timestamp:
    """The session-open instant (tz-aware UTC) of an exchange date."""
    local = datetime.combine(day, session_time(session_open))
    return pd.Timestamp(local).tz_localize(tz).tz_convert("UTC")


def bar_end(start: pd.Timestamp, tf: Timeframe | str, tz: str = EXCHANGE_TZ) -> pd.Timestamp:
    """Exclusive end of the bar starting at ``start`` (tz-aware UTC), ignoring the midnight cut of odd sizes."""
    tf = parse_timeframe(tf)
    if tf.is_intraday:
        return start + timedelta(minutes=tf.count)
    local = start.tz_convert(tz).tz_localize(None)
    if tf.unit == "day":
        nxt = local + pd.DateOffset(days=1)
    elif tf.unit == "week":
        nxt = local + pd.DateOffset(weeks=1)
    else:
        nxt = local + pd.DateOffset(months=1)
    return pd.Timestamp(nxt).tz_localize(tz).tz_convert("UTC")
