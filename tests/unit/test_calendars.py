"""Unit tests of mdq.calendars: sessions of exchanges, 24/7 and the FX week (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from mdq.calendars import (
    CALENDAR_FX,
    build_sessions,
    calendar_info,
    refresh_range,
    sessions_24_7,
    sessions_fx,
)
from mdq.exceptions import UnknownCalendar

REAL_EURUSD = "/work/shared/data/real/gym-anytrading-2.0.0_FOREX_EURUSD_1H_ASK.csv"


def _dates(calendar: str, start: date, end: date) -> list[str]:
    return [s.session_date.isoformat() for s in build_sessions(calendar, start, end)]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(
            date(2025, 1, 7), date(2025, 1, 14),
            ["2025-01-07", "2025-01-08", "2025-01-10", "2025-01-13"],
            id="BH-09a-2025-01-09-closure-and-weekend",
        ),
        pytest.param(
            date(2024, 12, 27), date(2025, 1, 3),
            ["2024-12-27", "2024-12-30", "2024-12-31", "2025-01-02"],
            id="BH-04-new-year-holiday",
        ),
        pytest.param(
            date(2001, 9, 7), date(2001, 9, 18),
            ["2001-09-07", "2001-09-10", "2001-09-17"],
            id="2001-09-11-to-14-closed",
        ),
        pytest.param(
            date(2012, 10, 26), date(2012, 11, 1),
            ["2012-10-26", "2012-10-31"],
            id="hurricane-sandy-2012-10-29-30-closed",
        ),
        pytest.param(
            date(2006, 12, 29), date(2007, 1, 4),
            ["2006-12-29", "2007-01-03"],
            id="2007-01-02-national-day-of-mourning",
        ),
    ],
)  # fmt: skip
def test_xnys_closures(start: date, end: date, expected: list[str]) -> None:
    assert _dates("XNYS", start, end) == expected


def test_xnys_early_close_2024_11_29() -> None:
    (session,) = build_sessions("XNYS", date(2024, 11, 29), date(2024, 11, 30))
    assert session.open_at == datetime(2024, 11, 29, 14, 30, tzinfo=UTC)
    assert session.close_at == datetime(2024, 11, 29, 18, 0, tzinfo=UTC)  # 13:00 ET
    assert session.is_early_close


def test_24_7_is_one_utc_day_per_session() -> None:
    sessions = sessions_24_7(date(2024, 11, 2), date(2024, 11, 5))
    assert [(s.open_at, s.close_at) for s in sessions] == [
        (datetime(2024, 11, d, tzinfo=UTC), datetime(2024, 11, d + 1, tzinfo=UTC))
        for d in (2, 3, 4)
    ]


@pytest.mark.parametrize(
    ("friday", "close_utc_hour", "monday", "open_utc_hour"),
    [
        pytest.param(date(2024, 3, 8), 22, date(2024, 3, 11), 21, id="BH-10-us-dst-start"),
        pytest.param(date(2017, 3, 10), 22, date(2017, 3, 13), 21, id="2017-us-dst-before-eu"),
        pytest.param(date(2017, 3, 24), 21, date(2017, 3, 27), 21, id="2017-eu-dst-start"),
        pytest.param(date(2017, 10, 27), 21, date(2017, 10, 30), 21, id="2017-eu-dst-ends-first"),
        pytest.param(date(2017, 11, 3), 21, date(2017, 11, 6), 22, id="2017-us-dst-end"),
    ],
)  # fmt: skip
def test_fx_week_edges_follow_new_york(
    friday: date, close_utc_hour: int, monday: date, open_utc_hour: int
) -> None:
    sessions = {s.session_date: s for s in sessions_fx(friday, monday + timedelta(days=1))}
    assert set(sessions) == {friday, monday}  # no weekend session
    assert sessions[friday].close_at.hour == close_utc_hour
    assert sessions[monday].open_at == datetime.combine(
        monday - timedelta(days=1), datetime.min.time(), UTC
    ) + timedelta(hours=open_utc_hour)
    # daily sessions are contiguous through the week
    week = sessions_fx(monday, monday + timedelta(days=5))
    assert all(a.close_at == b.open_at for a, b in zip(week, week[1:], strict=False))


def test_fx_sessions_match_the_real_eurusd_file_with_christmas_closed() -> None:
    """Every in-session hour of 2017 has a EURUSD bar (no holiday gap), and the only bars
    outside a session are the vendor's thin Christmas-morning quotes (24 Dec 23:00Z to
    25 Dec 07:00Z): the session dated 25 December does not exist."""
    frame = pd.read_csv(REAL_EURUSD)
    stamps = set(
        pd.to_datetime(frame["Time"], format="%d.%m.%Y %H:%M:%S.%f")
        .dt.tz_localize("UTC")
        .dt.to_pydatetime()
    )
    sessions = sessions_fx(date(2017, 1, 2), date(2017, 12, 30))
    assert date(2017, 12, 25) not in {s.session_date for s in sessions}
    expected: set[datetime] = set()
    for session in sessions:
        hour = session.open_at
        while hour < session.close_at:
            expected.add(hour)
            hour += timedelta(hours=1)
    assert expected - stamps == set()
    christmas = datetime(2017, 12, 24, 23, tzinfo=UTC)
    assert sorted(stamps - expected) == [christmas + timedelta(hours=h) for h in range(9)]


@pytest.mark.parametrize(
    ("start", "end", "closed"),
    [
        pytest.param(date(2024, 12, 23), date(2024, 12, 28), date(2024, 12, 25), id="xmas-wed"),
        pytest.param(date(2024, 12, 30), date(2025, 1, 4), date(2025, 1, 1), id="new-year-wed"),
        pytest.param(date(2020, 12, 21), date(2020, 12, 27), date(2020, 12, 25), id="xmas-fri"),
    ],
)
def test_fx_closes_on_christmas_and_new_year(start: date, end: date, closed: date) -> None:
    """25 Dec and 1 Jan have no FX session whatever the weekday; the days around them trade."""
    dates = [s.session_date for s in sessions_fx(start, end)]
    weekdays = [d for d in (start + timedelta(days=i) for i in range((end - start).days))]
    assert dates == [d for d in weekdays if d.weekday() < 5 and d != closed]


def test_calendar_info() -> None:
    assert calendar_info("XNYS").timezone == "America/New_York"
    assert calendar_info("XNYS").calendar_version.startswith("exchange_calendars ")
    assert calendar_info(CALENDAR_FX).day_rollover_hours == 7
    assert calendar_info("24/7").timezone == "UTC"


def test_unknown_calendar_is_named() -> None:
    with pytest.raises(UnknownCalendar, match="'XNYZ' not supported"):
        build_sessions("XNYZ", date(2024, 1, 1), date(2024, 2, 1))


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        build_sessions("24/7", date(2024, 1, 2), date(2024, 1, 2))


def test_refresh_range_covers_data_and_today() -> None:
    start, end = refresh_range(
        datetime(2001, 9, 10, tzinfo=UTC), datetime(2013, 3, 1, tzinfo=UTC), date(2026, 8, 7)
    )
    assert (start, end) == (date(2001, 8, 27), date(2026, 8, 22))
    assert refresh_range(None, None, date(2024, 1, 10), margin_days=2) == (
        date(2024, 1, 8),
        date(2024, 1, 13),
    )
    with pytest.raises(ValueError, match="naive"):
        refresh_range(datetime(2024, 1, 1), None, date(2024, 1, 2))
