"""Candle validation and timeframe parsing: plain logic, no Prefect, no database.

Owns the closed set of timeframes, the timeframe grid (where a candle's ``ts`` may fall) and the
checks a candle passes before it is written: finite numbers, positive prices, non-negative
volume, high/low consistent with open/close, ``ts`` timezone-aware and on the grid. Rows that
fail are returned with a reason so the caller quarantines them; nothing is dropped.

Grid convention (documented in README "Candle timestamps"):

* intraday timeframes on ``24/7`` and ``FX`` calendars: multiples of the timeframe since
  1970-01-01T00:00Z (a 1h candle starts on the UTC hour);
* intraday timeframes on an exchange calendar (e.g. ``XNYS``): multiples of the timeframe since
  the regular session open in exchange-local time (NYSE 1h bars start at 09:30, 10:30, ... New
  York time);
* daily candles: the session date at 00:00 exchange-local time, in UTC (NYSE: 04:00Z in
  summer, 05:00Z in winter, e.g. 2024-03-13T04:00:00Z); 00:00Z on ``24/7`` and ``FX``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from mdq.exceptions import UnsupportedTimeframe

TTimeframe = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
TIMEFRAMES: tuple[str, ...] = get_args(TTimeframe)

_TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}

#: Canonical candle columns, in order (the CSV/parquet canonical format and market_data's key).
CANONICAL_COLUMNS: tuple[str, ...] = (
    "symbol",
    "asset_class",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
)
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
NUMBER_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")

#: Exchange calendars whose zone and regular open are known without importing
#: exchange_calendars (source: the exchanges' published regular hours).
_KNOWN_EXCHANGES: dict[str, tuple[str, int]] = {
    "XNYS": ("America/New_York", 9 * 60 + 30),
    "XNAS": ("America/New_York", 9 * 60 + 30),
    "XLON": ("Europe/London", 8 * 60),
    "XETR": ("Europe/Berlin", 9 * 60),
    "XTKS": ("Asia/Tokyo", 9 * 60),
}


def parse_timeframe(value: str) -> TTimeframe:
    """Check a timeframe string.

    Args:
        value: e.g. ``"1h"``; surrounding spaces are ignored, case matters (``1M`` is not 1m).

    Returns:
        The timeframe, typed as :data:`TTimeframe`.

    Raises:
        UnsupportedTimeframe: not one of :data:`TIMEFRAMES`.
    """
    stripped = value.strip()
    if stripped not in _TIMEFRAME_SECONDS:
        raise UnsupportedTimeframe(value, TIMEFRAMES)
    return stripped  # type: ignore[return-value]


def timeframe_delta(timeframe: str) -> timedelta:
    """The length of one candle.

    Raises:
        UnsupportedTimeframe: unknown timeframe.
    """
    return timedelta(seconds=_TIMEFRAME_SECONDS[parse_timeframe(timeframe)])


def timeframe_seconds(timeframe: str) -> int:
    """The length of one candle in seconds.

    Raises:
        UnsupportedTimeframe: unknown timeframe.
    """
    return _TIMEFRAME_SECONDS[parse_timeframe(timeframe)]


@dataclass(frozen=True)
class Grid:
    """Where candles of one timeframe on one calendar may start.

    Attributes:
        zone: IANA zone the grid is anchored in (``UTC`` for 24/7 and FX).
        anchor_minutes: minutes after local midnight that intraday candles count from.
        seconds: candle length in seconds.
    """

    zone: str
    anchor_minutes: int
    seconds: int


@lru_cache(maxsize=64)
def calendar_zone(calendar: str | None) -> tuple[str, int]:
    """Zone and regular-open minute of a calendar code.

    Args:
        calendar: ``24/7``, ``FX``, None (treated as 24/7) or an exchange_calendars code.

    Returns:
        (IANA zone, minutes after local midnight of the regular open); ``("UTC", 0)`` for
        24/7, FX and None.

    Raises:
        ValueError: an exchange code exchange_calendars does not know.
    """
    if calendar is None or calendar in ("24/7", "FX", "UTC"):
        return ("UTC", 0)
    if calendar in _KNOWN_EXCHANGES:
        return _KNOWN_EXCHANGES[calendar]
    import exchange_calendars as xcals

    try:
        cal = xcals.get_calendar(calendar)
    except Exception as exc:  # exchange_calendars raises its own InvalidCalendarName
        raise ValueError(f"unknown calendar {calendar!r}: {exc}") from None
    open_time = cal.open_times[0][1]
    return (str(cal.tz), open_time.hour * 60 + open_time.minute)


def grid_for(timeframe: str, calendar: str | None) -> Grid:
    """The grid of a timeframe on a calendar (see the module docstring).

    Raises:
        UnsupportedTimeframe: unknown timeframe.
        ValueError: unknown calendar.
    """
    zone, anchor = calendar_zone(calendar)
    return Grid(zone=zone, anchor_minutes=anchor, seconds=timeframe_seconds(timeframe))


def off_grid_mask(ts: pd.Series, grid: Grid) -> np.ndarray:
    """Which timestamps are not on the grid.

    Args:
        ts: UTC-aware timestamps (``datetime64[ns, UTC]``); NaT counts as on-grid (reported
            elsewhere).
        grid: from :func:`grid_for`.

    Returns:
        Boolean array, same length as ``ts``: True where the candle start is off the grid.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    ts = ts.dt.as_unit("ns")
    if grid.zone == "UTC":
        local_ns = ts.astype("int64").to_numpy()
    else:
        local = ts.dt.tz_convert(grid.zone).dt.tz_localize(None)
        local_ns = local.astype("int64").to_numpy()
    day_ns = 86_400 * 10**9
    step_ns = grid.seconds * 10**9
    if grid.seconds >= 86_400:
        off = local_ns % day_ns != 0
    else:
        off = (local_ns - grid.anchor_minutes * 60 * 10**9) % step_ns != 0
    return np.asarray(off & ts.notna().to_numpy())


@dataclass(frozen=True)
class Rejected:
    """One input row that will not be written.

    Attributes:
        source_row: 1-based row number in the source (file line; record index otherwise), or
            None when unknown.
        reason: one short sentence naming the column and the value.
        raw: the row as the source gave it (column → text or value).
    """

    source_row: int | None
    reason: str
    raw: dict[str, Any]


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{value}"


def validate_candles(
    candles: pd.DataFrame, grid: Grid, raw: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, list[Rejected]]:
    """Split candles into rows fit to write and rejected rows with a reason.

    Checks, in order (a row gets the reasons of every failed check, joined by ``"; "``):
    a missing or non-finite number (NaN, inf); a non-positive price; a negative volume;
    ``high < low``; ``high`` below max(open, close); ``low`` above min(open, close); a naive
    ``ts`` column (no time zone: every row is rejected); a missing ``ts``; ``ts`` off the
    timeframe grid.

    Args:
        candles: canonical columns (``ts`` as ``datetime64[ns, UTC]``, prices and volume as
            float64) plus ``source_row`` (int); any row order.
        grid: the timeframe's grid (:func:`grid_for`).
        raw: the source rows as given, indexed like ``candles`` (used for the rejected rows'
            ``raw``); None to report the typed values.

    Returns:
        (valid rows, same columns and order as given; rejected rows, in input order).
    """
    n = len(candles)
    if n == 0:
        return candles, []
    reasons: list[tuple[np.ndarray, Any]] = []
    values = {c: candles[c].to_numpy(dtype="float64", na_value=np.nan) for c in NUMBER_COLUMNS}
    for col in NUMBER_COLUMNS:
        v = values[col]
        reasons.append(
            (~np.isfinite(v), lambda i, c=col: f"{c} is not a finite number: {_fmt(values[c][i])}")
        )
    with np.errstate(invalid="ignore"):
        for col in PRICE_COLUMNS:
            v = values[col]
            reasons.append((v <= 0, lambda i, c=col: f"non-positive price: {c}={values[c][i]}"))
        vol = values["volume"]
        reasons.append((vol < 0, lambda i: f"negative volume: volume={vol[i]}"))
        o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
        reasons.append((h < lo, lambda i: f"high {h[i]} below low {lo[i]}"))
        reasons.append(
            (
                h < np.maximum(o, c),
                lambda i: f"high {h[i]} below max(open, close) {max(o[i], c[i])}",
            )
        )
        reasons.append(
            (
                lo > np.minimum(o, c),
                lambda i: f"low {lo[i]} above min(open, close) {min(o[i], c[i])}",
            )
        )
    ts = candles["ts"]
    if getattr(ts.dt, "tz", None) is None:  # naive: the zone is unknown, every row is suspect
        reasons.append((np.ones(n, dtype=bool), lambda i: "naive timestamp (no time zone)"))
        ts = pd.Series(pd.NaT, index=candles.index, dtype="datetime64[ns, UTC]")
    ts_na = ts.isna().to_numpy()
    reasons.append((ts_na, lambda i: "ts is missing"))
    off = off_grid_mask(ts, grid)
    tf_label = next(
        (k for k, s in _TIMEFRAME_SECONDS.items() if s == grid.seconds), f"{grid.seconds}s"
    )
    reasons.append(
        (
            off,
            lambda i: (
                f"ts {ts.iloc[i].isoformat()} is not on the {tf_label} grid "
                f"({grid.zone}, anchored at {grid.anchor_minutes // 60:02d}:"
                f"{grid.anchor_minutes % 60:02d})"
            ),
        )
    )
    bad = np.zeros(n, dtype=bool)
    for mask, _ in reasons:
        bad |= mask
    if not bad.any():
        return candles, []
    rejected: list[Rejected] = []
    rows = candles["source_row"].to_numpy() if "source_row" in candles else np.full(n, -1)
    for i in np.flatnonzero(bad):
        why = "; ".join(describe(int(i)) for mask, describe in reasons if mask[i])
        label = candles.index[i]
        if raw is not None and label in raw.index:
            raw_row = {k: _jsonable(v) for k, v in raw.loc[label].items()}
        else:
            raw_row = {k: _jsonable(v) for k, v in candles.iloc[i].items() if k != "source_row"}
        source_row = int(rows[i]) if rows[i] >= 0 else None
        rejected.append(Rejected(source_row, why, raw_row))
    return candles[~bad], rejected


def _jsonable(value: object) -> Any:
    """A JSON-friendly version of one cell (NaN/inf as text, timestamps as ISO text)."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if np.isfinite(f) else str(f)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        if pd.isna(value):  # type: ignore[call-overload]
            return None
    except (TypeError, ValueError):
        pass
    return value if isinstance(value, str | int | bool) else str(value)


@dataclass(frozen=True)
class DedupResult:
    """Outcome of removing duplicate keys inside one fetched batch.

    Attributes:
        candles: one row per ts (the last occurrence of each key in input order).
        exact_duplicates: rows dropped because an identical row with the same ts followed.
        conflicting: rows dropped whose key repeated with different values (also quarantined
            by the caller, so the replaced values are kept).
    """

    candles: pd.DataFrame
    exact_duplicates: int
    conflicting: pd.DataFrame


def dedupe_batch(candles: pd.DataFrame) -> DedupResult:
    """Keep one row per ``ts`` in one (symbol, timeframe) batch (BH-03: overlapping pages).

    The last occurrence wins (a later page or a corrected row). Exact copies are counted;
    earlier rows with different values are returned separately so they can be quarantined.

    Args:
        candles: validated canonical rows of one (symbol, timeframe).

    Returns:
        See :class:`DedupResult`; ``candles`` is sorted by ``ts`` ascending.
    """
    dup = candles.duplicated("ts", keep="last").to_numpy()
    if not dup.any():
        return DedupResult(candles.sort_values("ts", kind="stable"), 0, candles.iloc[0:0])
    exact = candles.duplicated(["ts", *NUMBER_COLUMNS], keep="last").to_numpy()
    kept = candles[~dup].sort_values("ts", kind="stable")
    conflicting = candles[dup & ~exact]
    return DedupResult(kept, int((dup & exact).sum()), conflicting)


def finality(ts: pd.Series, timeframe: str, fetched_at: pd.Timestamp) -> np.ndarray:
    """Whether each candle had closed when it was fetched (``ts + timeframe <= fetched_at``).

    Args:
        ts: UTC-aware candle open times.
        timeframe: their timeframe.
        fetched_at: UTC-aware fetch time.

    Returns:
        Boolean array: True for a closed (final) candle.
    """
    return np.asarray((ts + timeframe_delta(timeframe)) <= fetched_at)
