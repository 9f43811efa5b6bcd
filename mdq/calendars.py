"""Trading calendars: the expected sessions of every calendar an instrument can name.

Plain logic (no database, no Prefect). A calendar code is one of:

- an exchange_calendars code (``XNYS``, ``XLON``, ...): regular sessions with holidays,
  unscheduled closures (NYSE 2025-01-09, 2001-09-11..14, 2012-10-29/30) and early closes
  (2024-11-29 13:00 ET) from the maintained library, never a hand-written list;
- ``24/7``: one session per UTC day, ``[d 00:00Z, d+1 00:00Z)``;
- ``FX``: the FX week, Sunday 17:00 to Friday 17:00 America/New_York, cut into daily sessions
  Monday..Friday, session *d* = ``[d-1 17:00 NY, d 17:00 NY)``. Its UTC edges move with US daylight
  saving (21:00Z in summer, 22:00Z in winter), whatever Europe does (the real EURUSD file's weekend
  gaps run Fri 21:00/22:00Z to Sun 21:00/22:00Z). Source of the 17:00 NY roll: the convention of
  the interbank FX market (CLS/NY close). Closures: the sessions dated 25 December and
  1 January do not exist (``FX_CLOSED_DAYS``), the two days every major venue (EBS, Refinitiv
  Matching, CME FX, the retail platforms) is closed for; exchange_calendars has no FX calendar, so
  this is a documented rule, not a library's holiday list. Candles a vendor still prints on those
  days (the real EURUSD file has thin quotes until 07:00Z on 2017-12-25) are outside any session:
  never a gap, reported as out-of-session (warn).

Every calendar also has a time zone and a *day roll-over*: a candle's session date is the local
date of ``ts + roll-over`` in that zone (0 h for exchanges and 24/7, 7 h for FX, so that Sunday
17:00 NY belongs to Monday's session). The SQL checks use the same rule.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mdq.exceptions import UnknownCalendar

#: Calendar codes that are not exchange_calendars codes.
CALENDAR_24_7 = "24/7"
CALENDAR_FX = "FX"

#: Calendar used for candles whose symbol has no ``instruments`` row, by asset class. The dbt var
#: ``calendar_by_asset_class`` (dbt_project.yml) mirrors this mapping; keep them equal.
DEFAULT_CALENDAR_BY_ASSET_CLASS: dict[str, str] = {
    "stock": "XNYS",
    "etf": "XNYS",
    "fund": "XNYS",
    "index": "XNYS",
    "bond": "XNYS",
    "crypto": CALENDAR_24_7,
    "forex": CALENDAR_FX,
}

_NEW_YORK = ZoneInfo("America/New_York")
#: FX day roll-over: 17:00 New York is midnight of the next trading date.
_FX_ROLL_HOUR = 17
#: (month, day) of the FX session dates every major venue is closed for: Christmas Day and New
#: Year's Day, whatever the weekday (no "observed" shift: the 26th and 2nd trade normally).
FX_CLOSED_DAYS: frozenset[tuple[int, int]] = frozenset({(12, 25), (1, 1)})


@dataclass(frozen=True)
class Session:
    """One expected trading session.

    Attributes:
        calendar: the calendar code, e.g. ``XNYS``.
        session_date: the exchange-local session date.
        open_at: first instant of the session, UTC-aware.
        close_at: end of the session, UTC-aware, exclusive (half-open ``[open_at, close_at)``).
        is_early_close: True for a scheduled half-day (close earlier than the regular close).
    """

    calendar: str
    session_date: date
    open_at: datetime
    close_at: datetime
    is_early_close: bool


@dataclass(frozen=True)
class CalendarInfo:
    """What the SQL needs to map a candle timestamp to a session date.

    Attributes:
        calendar: the calendar code.
        timezone: IANA zone of the calendar, e.g. ``America/New_York``.
        day_rollover_hours: a ``ts`` belongs to the session dated
            ``((ts at time zone timezone) + day_rollover_hours)::date`` (0 except FX: 7).
        calendar_version: the library and version that produced the sessions, e.g.
            ``exchange_calendars 4.13.0``; ``mdq <version>`` for 24/7 and FX.
    """

    calendar: str
    timezone: str
    day_rollover_hours: int
    calendar_version: str


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _check_range(start: date, end: date) -> None:
    if end <= start:
        raise ValueError(f"calendar range [{start}, {end}) is empty: end must be after start")


def _is_exchange_code(calendar: str) -> bool:
    import exchange_calendars

    return calendar in exchange_calendars.get_calendar_names(include_aliases=True)


def calendar_info(calendar: str) -> CalendarInfo:
    """Time zone, day roll-over and library version of a calendar.

    Args:
        calendar: ``24/7``, ``FX`` or an exchange_calendars code.

    Returns:
        The calendar's info.

    Raises:
        UnknownCalendar: the code is none of these.
    """
    if calendar == CALENDAR_24_7:
        return CalendarInfo(calendar, "UTC", 0, f"mdq {_mdq_version()}")
    if calendar == CALENDAR_FX:
        return CalendarInfo(
            calendar, "America/New_York", 24 - _FX_ROLL_HOUR, f"mdq {_mdq_version()}"
        )
    if not _is_exchange_code(calendar):
        raise UnknownCalendar(calendar)
    import exchange_calendars

    tz = str(exchange_calendars.get_calendar(calendar).tz)
    return CalendarInfo(calendar, tz, 0, f"exchange_calendars {_library_version()}")


def calendar_version(calendar: str) -> str:
    """The ``calendar_version`` a refresh of ``calendar`` writes, without building the calendar.

    Cheap (package metadata only: exchange_calendars is not imported), so a check can tell
    whether its stored sessions are current (:func:`mdq.db.calendars.ensure_sessions`).

    Args:
        calendar: ``24/7``, ``FX`` or an exchange_calendars code.

    Returns:
        ``mdq <version>`` for 24/7 and FX, ``exchange_calendars <version>`` otherwise (the code
        itself is not validated here; :func:`calendar_info` does that).
    """
    if calendar in (CALENDAR_24_7, CALENDAR_FX):
        return f"mdq {_mdq_version()}"
    return f"exchange_calendars {_library_version()}"


def _library_version() -> str:
    return importlib.metadata.version("exchange_calendars")


def _mdq_version() -> str:
    try:
        return importlib.metadata.version("mdq")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0"


def _days(start: date, end: date) -> Iterable[date]:
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


def sessions_24_7(start: date, end: date) -> list[Session]:
    """One session per UTC day.

    Args:
        start: first session date (inclusive).
        end: last session date (exclusive).

    Returns:
        Sessions ``[d 00:00Z, d+1 00:00Z)`` for every d in ``[start, end)``, sorted by date.

    Raises:
        ValueError: ``end <= start``.
    """
    _check_range(start, end)
    return [
        Session(
            CALENDAR_24_7,
            day,
            datetime.combine(day, time(0), UTC),
            datetime.combine(day + timedelta(days=1), time(0), UTC),
            False,
        )
        for day in _days(start, end)
    ]


def sessions_fx(start: date, end: date) -> list[Session]:
    """The FX week as daily sessions Monday..Friday, each ending 17:00 America/New_York.

    Session *d* is ``[d-1 17:00 NY, d 17:00 NY)``; Monday's opens Sunday 17:00 NY. Converted to
    UTC per instant, so the edges follow US daylight saving (e.g. 2024-03-08, EST: closes
    22:00Z; 2024-03-10, EDT: opens 21:00Z). No session is dated 25 December or 1 January
    (``FX_CLOSED_DAYS``).

    Args:
        start: first session date (inclusive).
        end: last session date (exclusive).

    Returns:
        Sessions for the weekdays in ``[start, end)``, sorted by date.

    Raises:
        ValueError: ``end <= start``.
    """
    _check_range(start, end)
    sessions = []
    roll = time(_FX_ROLL_HOUR)
    for day in _days(start, end):
        if day.weekday() >= 5 or (day.month, day.day) in FX_CLOSED_DAYS:
            continue
        open_local = datetime.combine(day - timedelta(days=1), roll, _NEW_YORK)
        close_local = datetime.combine(day, roll, _NEW_YORK)
        sessions.append(Session(CALENDAR_FX, day, _utc(open_local), _utc(close_local), False))
    return sessions


def sessions_exchange(calendar: str, start: date, end: date) -> list[Session]:
    """Regular sessions of an exchange from exchange_calendars.

    Holidays and unscheduled closures have no session; early closes end at their early close.
    Lunch breaks (e.g. XHKG) are not modelled: the session runs from open to close.

    Args:
        calendar: an exchange_calendars code, e.g. ``XNYS``.
        start: first session date (inclusive).
        end: last session date (exclusive).

    Returns:
        Sessions in ``[start, end)`` clipped to the library's bounds for that calendar, sorted
        by date.

    Raises:
        UnknownCalendar: not an exchange_calendars code.
        ValueError: ``end <= start``.
    """
    _check_range(start, end)
    if not _is_exchange_code(calendar):
        raise UnknownCalendar(calendar)
    import exchange_calendars
    import pandas as pd

    factory = exchange_calendars.calendar_utils.global_calendar_dispatcher
    calendar_class = type(factory.get_calendar(calendar))
    first = pd.Timestamp(start)
    last = pd.Timestamp(end - timedelta(days=1))
    bound_min, bound_max = calendar_class.bound_min(), calendar_class.bound_max()
    if bound_min is not None:
        first = max(first, pd.Timestamp(bound_min).normalize())
    if bound_max is not None:
        last = min(last, pd.Timestamp(bound_max).normalize())
    if last < first:
        return []
    # the library refuses start == end: ask a week more (within its bounds), then cut back
    query_end = last + pd.Timedelta(days=7)
    if bound_max is not None:
        query_end = min(query_end, pd.Timestamp(bound_max).normalize())
    if query_end <= first:
        return []
    cal = exchange_calendars.get_calendar(calendar, start=first, end=query_end)
    schedule = cal.schedule.loc[first:last]
    early = set(cal.early_closes)
    sessions = []
    for label, row in schedule.iterrows():
        sessions.append(
            Session(
                calendar,
                label.date(),
                row["open"].to_pydatetime().astimezone(UTC),
                row["close"].to_pydatetime().astimezone(UTC),
                label in early,
            )
        )
    return sessions


def build_sessions(calendar: str, start: date, end: date) -> list[Session]:
    """Expected sessions of any supported calendar.

    Args:
        calendar: ``24/7``, ``FX`` or an exchange_calendars code.
        start: first session date (inclusive).
        end: last session date (exclusive).

    Returns:
        The sessions with a date in ``[start, end)``, sorted by date; unique on session_date.

    Raises:
        UnknownCalendar: the code is not supported.
        ValueError: ``end <= start``.
    """
    if calendar == CALENDAR_24_7:
        return sessions_24_7(start, end)
    if calendar == CALENDAR_FX:
        return sessions_fx(start, end)
    return sessions_exchange(calendar, start, end)


def refresh_range(
    data_start: datetime | None,
    data_end: datetime | None,
    today: date,
    *,
    margin_days: int = 14,
) -> tuple[date, date]:
    """The session-date range ``[start, end)`` a refresh should cover.

    The data's range plus ``margin_days`` on both sides, extended to ``today + margin_days`` so
    staleness can be judged up to now.

    Args:
        data_start: first candle ts (UTC-aware) or None when there is no data.
        data_end: last candle ts (UTC-aware) or None.
        today: the current UTC date.
        margin_days: days added on each side (>= 1).

    Returns:
        ``(start, end)``, end exclusive.

    Raises:
        ValueError: a naive datetime, or ``margin_days < 1``.
    """
    if margin_days < 1:
        raise ValueError(f"margin_days must be >= 1, got {margin_days}")
    for value in (data_start, data_end):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be UTC-aware")
    margin = timedelta(days=margin_days)
    first = data_start.astimezone(UTC).date() if data_start else today
    last = data_end.astimezone(UTC).date() if data_end else today
    return first - margin, max(last, today) + margin + timedelta(days=1)
