"""Vendors' candle label conventions, detected per series and mapped to the canonical ``ts``.

Plain logic (no database, no Prefect). The canonical ``ts`` of a candle is its open time in UTC
(README "Candle timestamps"); vendors label candles otherwise:

* **daily** (and longer) candles are identified by their *session*: a label at local midnight
  of the session date (canonical, ``session_midnight``), at 00:00Z of the session date
  (``utc_midnight``), at the close or any other instant of the local session date
  (``close``) all map to the session, stored at 00:00 exchange-local time of the session date
  (24/7: 00:00Z; FX: 00:00Z of the FX trading date, which rolls at 17:00 New York).
* **intraday** candles sit on a *grid*, ``session`` (anchored at the regular open: NYSE 1h at
  09:30, 10:30, ...) or ``clock`` (multiples of the timeframe from local midnight: 10:00,
  11:00, ... with a stub bar from the 09:30 open to 10:00), and carry a *label*, ``open``
  (canonical) or ``close`` (the bar's end: 09:31 for the 09:30 minute). Close labels are
  moved back one timeframe (clamped to the session open for the stub); a clock-grid stub
  labelled on the clock (09:00) moves to the open (09:30). The grid stays the series' own:
  the checks judge each series on it (table ``series_labels``).

Detection is per series from the data (the dominant phase), and a mapping's ``[labels]`` table
overrides it. Sources of the rules: the conventions of common vendor exports (Yahoo and most
brokers label bars by their open; Bloomberg/Refinitiv intraday bars and many CSV exports by
their close; Quandl/EOD files label a daily bar by its date, written as 00:00Z by many JSON APIs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mdq.validation import calendar_zone, timeframe_seconds

TDailyLabel = Literal["session_midnight", "utc_midnight", "close"]
TIntradayGrid = Literal["session", "clock"]
TIntradayLabel = Literal["open", "close"]

#: Share of a series' rows that must agree before a phase counts as dominant.
DOMINANT_SHARE = 0.5


@dataclass(frozen=True)
class Convention:
    """How one series labels its candles.

    Attributes:
        daily: daily label (None for intraday series).
        grid: intraday grid (``session`` for daily series).
        label: intraday label (``open`` for daily series).
        decided_by: ``mapping`` (the mapping's ``[labels]``), ``detected`` (from the data) or
            ``default`` (nothing to tell: the canonical convention).
    """

    daily: TDailyLabel | None
    grid: TIntradayGrid
    label: TIntradayLabel
    decided_by: Literal["mapping", "detected", "default"]


def _local_minutes(ts: pd.Series, zone: str) -> tuple[pd.Series, pd.Series]:
    """(minutes after local midnight, local date) of UTC-aware timestamps in ``zone``."""
    local = ts.dt.tz_convert(zone)
    return local.dt.hour * 60 + local.dt.minute + local.dt.second / 60.0, local.dt.date


def detect_convention(
    ts: pd.Series, timeframe: str, calendar: str | None, overrides: dict[str, str] | None = None
) -> Convention:
    """The series' convention: the mapping's ``[labels]`` where given (not ``auto``), else the
    dominant phase of the data.

    Args:
        ts: UTC-aware labels of one series as the source gave them (NaT ignored).
        timeframe: the series' timeframe.
        calendar: its calendar (``24/7``, ``FX``, an exchange code).
        overrides: the mapping's ``[labels]`` (``daily``, ``intraday_grid``,
            ``intraday_label``), values as in :data:`mdq.providers.csv_file.LABEL_OPTIONS`.

    Returns:
        The convention. Daily on an exchange: ``session_midnight`` when at least half the
        labels sit at local midnight, else ``utc_midnight`` when at least half sit at 00:00Z,
        else ``close``. Intraday on an exchange: ``clock`` when more labels sit on clock
        multiples than on open-anchored ones (only distinguishable when the open is not a clock
        multiple, e.g. 09:30 for 1h); ``close`` when the first label of most days is one
        timeframe after the open, or the last one is the close. On 24/7 and FX only the mapping
        can say ``close`` (a continuous market has no boundary that shows it).

    Raises:
        UnsupportedTimeframe: unknown timeframe.
        ValueError: unknown calendar.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v != "auto"}
    ts = ts.dropna()
    zone, open_minute = calendar_zone(calendar)
    seconds = timeframe_seconds(timeframe)
    if seconds >= 86_400:
        if "daily" in overrides:
            return Convention(overrides["daily"], "session", "open", "mapping")  # type: ignore[arg-type]
        if zone == "UTC" or len(ts) == 0:
            return Convention("session_midnight", "session", "open", "default")
        local_minutes, _ = _local_minutes(ts, zone)
        utc_minutes, _ = _local_minutes(ts, "UTC")
        if float((local_minutes == 0).mean()) >= DOMINANT_SHARE:
            return Convention("session_midnight", "session", "open", "detected")
        if float((utc_minutes == 0).mean()) >= DOMINANT_SHARE:
            return Convention("utc_midnight", "session", "open", "detected")
        return Convention("close", "session", "open", "detected")
    grid: TIntradayGrid = "session"
    label: TIntradayLabel = "open"
    decided: Literal["mapping", "detected", "default"] = "default"
    step = seconds / 60.0
    if zone != "UTC" and len(ts):
        minutes, dates = _local_minutes(ts, zone)
        on_session = np.isclose(np.mod(minutes - open_minute, step), 0) | np.isclose(
            np.mod(minutes - open_minute, step), step
        )
        on_clock = np.isclose(np.mod(minutes, step), 0) | np.isclose(np.mod(minutes, step), step)
        if open_minute % step and on_clock.mean() > on_session.mean():
            grid, decided = "clock", "detected"
        first = minutes.groupby(dates).min()
        last = minutes.groupby(dates).max()
        close_minute = _regular_close_minute(calendar)
        if grid == "session":
            after_open = float(np.isclose(first, open_minute + step).mean())
        else:
            boundary = (open_minute // step + 1) * step
            after_open = float(np.isclose(first, boundary).mean())
        at_close = float(np.isclose(last, close_minute).mean()) if close_minute is not None else 0.0
        at_open = float((np.isclose(first, open_minute) | (first < open_minute)).mean())
        ends_late = after_open >= DOMINANT_SHARE or at_close >= DOMINANT_SHARE
        if ends_late and at_open < DOMINANT_SHARE:
            label, decided = "close", "detected"
        elif decided == "default":
            decided = "detected"
    if "intraday_grid" in overrides:
        grid, decided = overrides["intraday_grid"], "mapping"  # type: ignore[assignment]
    if "intraday_label" in overrides:
        label, decided = overrides["intraday_label"], "mapping"  # type: ignore[assignment]
    return Convention(None, grid, label, decided)


def _regular_close_minute(calendar: str | None) -> float | None:
    """Minutes after local midnight of the regular close (None for 24/7 and FX)."""
    if calendar is None or calendar in ("24/7", "FX", "UTC"):
        return None
    import exchange_calendars as xcals

    close_time = xcals.get_calendar(calendar).close_times[-1][1]
    return float(close_time.hour * 60 + close_time.minute)


def canonical_ts(
    ts: pd.Series, timeframe: str, calendar: str | None, convention: Convention
) -> pd.Series:
    """The canonical open times (UTC) of labels written in ``convention``.

    Args:
        ts: UTC-aware labels (NaT stays NaT).
        timeframe: the series' timeframe.
        calendar: its calendar.
        convention: from :func:`detect_convention`.

    Returns:
        ``datetime64[ns, UTC]``, same index: daily → 00:00 local of the session date (24/7:
        00:00Z; FX: 00:00Z of the trading date rolling at 17:00 New York); intraday close
        labels → minus one timeframe; clock-grid labels before the open → the open.

    Raises:
        UnsupportedTimeframe: unknown timeframe.
        ValueError: unknown calendar.
    """
    if len(ts) == 0:
        return ts
    zone, open_minute = calendar_zone(calendar)
    seconds = timeframe_seconds(timeframe)
    if seconds >= 86_400:
        if calendar == "FX":
            roll = ts.dt.tz_convert("America/New_York") + pd.Timedelta(hours=7)
            dates = roll.dt.tz_localize(None).dt.normalize()
            return dates.dt.tz_localize("UTC").dt.as_unit("ns")
        if zone == "UTC":
            return ts.dt.floor("D")
        local = ts.dt.tz_convert(zone)
        dates = local.dt.tz_localize(None).dt.normalize()
        if convention.daily == "utc_midnight":
            at_utc_midnight = ts == ts.dt.floor("D")
            utc_dates = ts.dt.tz_localize(None).dt.normalize()
            dates = dates.where(~at_utc_midnight, utc_dates)
        return (
            dates.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
            .dt.tz_convert("UTC")
            .dt.as_unit("ns")
        )
    if convention.label == "open" and (convention.grid == "session" or zone == "UTC"):
        return ts.dt.as_unit("ns")
    step_ns = seconds * 10**9
    # a close label is the bar's end: the bar opened at the last grid point before it (a
    # session's last, shorter bar ends at the close, not one timeframe after its open)
    shifted = ts - pd.Timedelta(1, "ns") if convention.label == "close" else ts
    local = shifted.dt.tz_convert(zone).dt.tz_localize(None).dt.as_unit("ns")
    midnight = local.dt.normalize()
    since_midnight = (local - midnight).astype("int64").to_numpy()
    open_ns = int(open_minute * 60 * 10**9)
    if convention.grid == "clock" or zone == "UTC":
        floored = since_midnight - np.mod(since_midnight, step_ns)
        floored = np.where(floored < open_ns, open_ns, floored) if zone != "UTC" else floored
    else:
        floored = open_ns + (since_midnight - open_ns) // step_ns * step_ns
    opened = midnight + pd.to_timedelta(floored, unit="ns")
    return (
        opened.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        .dt.tz_convert("UTC")
        .dt.as_unit("ns")
    )
