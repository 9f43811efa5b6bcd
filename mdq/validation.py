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
        clock: True for a clock grid (multiples of ``seconds`` from local midnight, plus a
            stub candle at ``anchor_minutes``, the open; :mod:`mdq.labels`).
    """

    zone: str
    anchor_minutes: int
    seconds: int
    clock: bool = False


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


def grid_for(timeframe: str, calendar: str | None, *, clock: bool = False) -> Grid:
    """The grid of a timeframe on a calendar (see the module docstring); ``clock`` for a
    series on the clock grid (:mod:`mdq.labels`).

    Raises:
        UnsupportedTimeframe: unknown timeframe.
        ValueError: unknown calendar.
    """
    zone, anchor = calendar_zone(calendar)
    return Grid(zone=zone, anchor_minutes=anchor, seconds=timeframe_seconds(timeframe), clock=clock)


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
    elif grid.clock:
        anchor_ns = grid.anchor_minutes * 60 * 10**9
        off = (local_ns % step_ns != 0) & (local_ns % day_ns != anchor_ns)
    else:
        off = (local_ns - grid.anchor_minutes * 60 * 10**9) % step_ns != 0
    return np.asarray(off & ts.notna().to_numpy())


#: Bounds every stored value must respect (documented in README "Backfill"). A value outside
#: them is quarantined (reason code ``out_of_bounds``), so that no check's arithmetic can
#: overflow: price x volume <= 1e30 and ln(price) stays small, far from double precision's
#: 1.8e308. Source of the limits: the largest real quotes (BRK.A ~ 1e6, hyperinflation-era
#: indices ~ 1e10) and volumes (~ 1e15 for meme-coin base units), with margin.
MAX_PRICE = 1e12
MAX_VOLUME = 1e18
#: Candle open times accepted: [1800-01-01, 2200-01-01) UTC (inside pandas' ns range
#: 1677-2262; older or later stamps are typos or sentinels such as 9999-12-31).
MIN_TS = pd.Timestamp("1800-01-01", tz="UTC")
MAX_TS = pd.Timestamp("2200-01-01", tz="UTC")
#: A symbol is 1 to 64 printable characters (the longest real tickers, OCC option symbols,
#: are 21); anything else (a NUL byte, a 10 MB cell) is quarantined as ``invalid_symbol``.
MAX_SYMBOL_LENGTH = 64
#: Cells longer than this are cut in quarantined raw rows (the length is kept in the text).
MAX_RAW_CELL = 200

#: Reason codes of rejected rows (``quarantined_candles.reason_code``), first failed check.
REASON_CODES: tuple[str, ...] = (
    "naive_timestamp",
    "unparseable_ts",
    "missing_ts",
    "ambiguous_local_time",
    "unparseable_number",
    "non_finite_number",
    "out_of_bounds",
    "nonpositive_price",
    "negative_volume",
    "ohlc_inconsistent",
    "off_grid",
    "unsupported_timeframe",
    "invalid_symbol",
    "conflicting_duplicate",
    "invalid_row",
)


@dataclass(frozen=True)
class Rejected:
    """One input row that will not be written.

    Attributes:
        source_row: 1-based row number in the source (file line; record index otherwise), or
            None when unknown.
        reason: one short sentence naming the column and the value.
        raw: the row as the source gave it (column → text or value).
        code: the reason's kind, one of :data:`REASON_CODES` (the first failed check).
    """

    source_row: int | None
    reason: str
    raw: dict[str, Any]
    code: str = "invalid_row"


def safe_text(value: object) -> str:
    """Text fit for a JSON/PostgreSQL text value and a one-line message.

    NUL bytes (which PostgreSQL text cannot hold) become ``\\x00``; a value longer than
    :data:`MAX_RAW_CELL` characters is cut and says how long it was.
    """
    text = str(value)
    if len(text) > MAX_RAW_CELL:
        text = f"{text[:MAX_RAW_CELL]}... ({len(text)} characters)"
    return text.replace("\x00", "\\x00")


def symbol_problem(symbol: str) -> str | None:
    """Why a symbol cannot be stored, or None when it can (1 to :data:`MAX_SYMBOL_LENGTH`
    printable characters, no leading or trailing space)."""
    if not symbol:
        return "symbol is empty"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"symbol is {len(symbol)} characters long (at most {MAX_SYMBOL_LENGTH})"
    if not symbol.isprintable():
        return f"symbol {safe_text(symbol)!r} contains a control character"
    return None


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{value}"


def validate_candles(
    candles: pd.DataFrame, grid: Grid, raw: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, list[Rejected]]:
    """Split candles into rows fit to write and rejected rows with a reason.

    Checks, in order (a row gets the reasons of every failed check, joined by ``"; "``):
    a missing or non-finite number (NaN, inf);
    a price above :data:`MAX_PRICE` or a volume above :data:`MAX_VOLUME`; a non-positive price;
    a negative volume; ``high < low``; ``high`` below max(open, close); ``low`` above
    min(open, close); a naive ``ts`` column (no time zone: every row is rejected); a missing
    ``ts``; ``ts`` outside ``[MIN_TS, MAX_TS)``; ``ts`` off the timeframe grid. The rejected
    row's ``code`` is the first failed check's (:data:`REASON_CODES`).

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
    reasons: list[tuple[np.ndarray, Any, str]] = []
    values = {c: candles[c].to_numpy(dtype="float64", na_value=np.nan) for c in NUMBER_COLUMNS}
    for col in NUMBER_COLUMNS:
        v = values[col]
        reasons.append(
            (
                ~np.isfinite(v),
                lambda i, c=col: f"{c} is not a finite number: {_fmt(values[c][i])}",
                "non_finite_number",
            )
        )
    with np.errstate(invalid="ignore"):
        for col in PRICE_COLUMNS:
            v = values[col]
            reasons.append(
                (
                    np.isfinite(v) & (v > MAX_PRICE),
                    lambda i, c=col: f"{c} {values[c][i]:g} above the bound {MAX_PRICE:g}",
                    "out_of_bounds",
                )
            )
        vol = values["volume"]
        reasons.append(
            (
                np.isfinite(vol) & (vol > MAX_VOLUME),
                lambda i: f"volume {vol[i]:g} above the bound {MAX_VOLUME:g}",
                "out_of_bounds",
            )
        )
        for col in PRICE_COLUMNS:
            v = values[col]
            reasons.append(
                (
                    v <= 0,
                    lambda i, c=col: f"non-positive price: {c}={values[c][i]}",
                    "nonpositive_price",
                )
            )
        reasons.append((vol < 0, lambda i: f"negative volume: volume={vol[i]}", "negative_volume"))
        o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
        reasons.append((h < lo, lambda i: f"high {h[i]} below low {lo[i]}", "ohlc_inconsistent"))
        reasons.append(
            (
                h < np.maximum(o, c),
                lambda i: f"high {h[i]} below max(open, close) {max(o[i], c[i])}",
                "ohlc_inconsistent",
            )
        )
        reasons.append(
            (
                lo > np.minimum(o, c),
                lambda i: f"low {lo[i]} above min(open, close) {min(o[i], c[i])}",
                "ohlc_inconsistent",
            )
        )
    ts = candles["ts"]
    if getattr(ts.dt, "tz", None) is None:  # naive: the zone is unknown, every row is suspect
        reasons.append(
            (
                np.ones(n, dtype=bool),
                lambda i: "naive timestamp (no time zone)",
                "naive_timestamp",
            )
        )
        ts = pd.Series(pd.NaT, index=candles.index, dtype="datetime64[ns, UTC]")
    ts_na = ts.isna().to_numpy()
    reasons.append((ts_na, lambda i: "ts is missing", "missing_ts"))
    out_of_range = ((ts < MIN_TS) | (ts >= MAX_TS)).to_numpy() & ~ts_na
    reasons.append(
        (
            out_of_range,
            lambda i: f"ts {ts.iloc[i].isoformat()} outside [{MIN_TS.date()}, {MAX_TS.date()})",
            "out_of_bounds",
        )
    )
    off = off_grid_mask(ts, grid) & ~out_of_range
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
            "off_grid",
        )
    )
    bad = np.zeros(n, dtype=bool)
    for mask, _, _ in reasons:
        bad |= mask
    if not bad.any():
        return candles, []
    rejected: list[Rejected] = []
    rows = candles["source_row"].to_numpy() if "source_row" in candles else np.full(n, -1)
    for i in np.flatnonzero(bad):
        failed = [(describe, code) for mask, describe, code in reasons if mask[i]]
        why = "; ".join(describe(int(i)) for describe, _ in failed)
        label = candles.index[i]
        if raw is not None and label in raw.index:
            raw_row = {k: _jsonable(v) for k, v in raw.loc[label].items()}
        else:
            raw_row = {k: _jsonable(v) for k, v in candles.iloc[i].items() if k != "source_row"}
        source_row = int(rows[i]) if rows[i] >= 0 else None
        rejected.append(Rejected(source_row, why, raw_row, failed[0][1]))
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
    if isinstance(value, str):
        return safe_text(value)
    return value if isinstance(value, int | bool) else safe_text(value)


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
