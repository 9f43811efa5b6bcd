"""Backfill windows, watermark rules and failure-streak decisions: plain logic.

No Prefect, no database. Every window is half-open ``[start, end)``: ``start`` is included,
``end`` is not (BH-04: to load the session of 2024-12-31, ask for ``end=2025-01-01``). The next
cursor after a page whose last candle opens at ``t`` is ``t + timeframe`` (BH-03), so pages
neither overlap nor leave a hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mdq.exceptions import InvalidWindow
from mdq.validation import timeframe_delta


def require_utc(value: datetime, name: str) -> datetime:
    """Reject naive datetimes and return the value converted to UTC.

    Raises:
        InvalidWindow: ``value`` has no time zone.
    """
    from datetime import UTC

    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidWindow(f"{name}={value.isoformat()} has no time zone; give an offset or Z")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)``, UTC.

    Attributes:
        start: first instant included (UTC-aware).
        end: first instant excluded (UTC-aware), after ``start``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "start"))
        object.__setattr__(self, "end", require_utc(self.end, "end"))
        if self.end <= self.start:
            raise InvalidWindow(
                f"end {self.end.isoformat()} must be after start {self.start.isoformat()} "
                "(the window is [start, end): end is excluded)"
            )

    def contains(self, ts: datetime) -> bool:
        """True when ``start <= ts < end``."""
        return self.start <= ts < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def next_cursor(last_ts: datetime, timeframe: str) -> datetime:
    """Where the next page starts after a page whose last candle opened at ``last_ts``.

    Returns:
        ``last_ts + timeframe`` (BH-03: starting at ``last_ts`` again would load it twice).
    """
    return last_ts + timeframe_delta(timeframe)


def pages(window: Window, timeframe: str, limit: int) -> list[Window]:
    """Split a window into consecutive pages of at most ``limit`` candles each.

    The pages tile the window exactly: each page's start is the previous page's end.

    Raises:
        ValueError: ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError(f"page limit must be >= 1, got {limit}")
    step = timeframe_delta(timeframe) * limit
    out: list[Window] = []
    start = window.start
    while start < window.end:
        end = min(start + step, window.end)
        out.append(Window(start, end))
        start = end
    return out


def next_watermark(
    current: datetime | None,
    loaded: Window,
    first_open_candle: datetime | None = None,
) -> datetime | None:
    """The watermark after a window was loaded successfully.

    The watermark of a (symbol, timeframe) is an exclusive bound: every candle before it has
    been loaded as final. Rules:

    * the loaded window covers up to ``loaded.end``, or up to the first candle that had not
      closed when fetched (it will be replaced later, so it is not covered yet);
    * the watermark only moves forward (an explicit historical window never moves it back);
    * it only moves when the loaded window starts at or before the current watermark (a window
      that starts later would leave a hole between them); the first load sets it.

    Args:
        current: the stored watermark, or None when there is none.
        loaded: the window that was loaded.
        first_open_candle: ``ts`` of the first candle stored with ``is_final = false``, if any.

    Returns:
        The new watermark (may equal ``current``), or None when there is none yet and the
        window covers nothing.
    """
    covered_end = loaded.end
    if first_open_candle is not None:
        covered_end = min(covered_end, first_open_candle)
    if covered_end <= loaded.start:
        return current
    if current is None:
        return covered_end
    if loaded.start > current:
        return current
    return max(current, covered_end)


def scheduled_window(
    watermark: datetime | None,
    now: datetime,
    lookback: timedelta,
    initial_history: timedelta,
    timeframe: str,
) -> Window:
    """The window a scheduled run loads: from the watermark minus a look-back up to now.

    Missed schedules leave no hole: the window always starts at (or before) the watermark,
    never at "yesterday". Without a watermark it starts ``initial_history`` before ``now``.
    The start is floored to a whole timeframe multiple since the epoch (UTC); ``end`` is
    ``now`` itself (the forming candle is loaded as not final).

    Args:
        watermark: stored watermark (UTC-aware) or None.
        now: the reference time (UTC-aware).
        lookback: how far before the watermark to re-load (vendor corrections, late candles).
        initial_history: how much history a series without a watermark loads.
        timeframe: the series' timeframe.

    Returns:
        The window ``[start, now)``.

    Raises:
        InvalidWindow: naive ``now``/``watermark``, or the window would be empty.
    """
    now = require_utc(now, "now")
    start = (require_utc(watermark, "watermark") - lookback) if watermark else now - initial_history
    step = timeframe_delta(timeframe)
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    start = epoch + ((start - epoch) // step) * step
    return Window(start, now)


@dataclass(frozen=True)
class Outcome:
    """How one (symbol, timeframe) backfill ended, as far as failure tracking cares.

    Attributes:
        success: True when it counts as a success (resets the failure streak).
        confirmed_empty: the source answered, authoritatively, with no candles (BH-07).
        reason: why it failed, when it failed.
    """

    success: bool
    confirmed_empty: bool = False
    reason: str | None = None


def classify_fetch(rows_returned: int, source_confirms_empty: bool, window: Window) -> Outcome:
    """Decide whether a fetch made progress.

    Args:
        rows_returned: rows the provider returned inside the window (valid or not).
        source_confirms_empty: the provider states the window truly has no candles (a sparse
            feed answered successfully with none).
        window: the requested window.

    Returns:
        Success when rows came back; success with ``confirmed_empty`` when none came back but
        the source confirms the window is empty (BH-07: not a failure); otherwise a failure
        "no progress" (data was expected).
    """
    if rows_returned > 0:
        return Outcome(success=True)
    if source_confirms_empty:
        return Outcome(success=True, confirmed_empty=True)
    return Outcome(success=False, reason=f"no progress: the source returned no candles in {window}")


def should_alert(consecutive_failures: int, threshold: int) -> bool:
    """True once a failure streak reaches the alert threshold (``>= threshold``).

    Whether the alert is actually sent is decided once per streak by the caller (the database
    records ``alert_sent_at``).

    Raises:
        ValueError: threshold < 1.
    """
    if threshold < 1:
        raise ValueError(f"alert threshold must be >= 1, got {threshold}")
    return consecutive_failures >= threshold
