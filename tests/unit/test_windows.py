"""Windows, cursors, watermark rules and failure decisions (plain logic, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mdq.exceptions import InvalidWindow
from mdq.windows import (
    Window,
    classify_fetch,
    next_cursor,
    next_watermark,
    pages,
    scheduled_window,
    should_alert,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_window_is_half_open() -> None:
    window = Window(utc(2024, 12, 27), utc(2025, 1, 1))
    assert window.contains(utc(2024, 12, 27))
    assert window.contains(utc(2024, 12, 31, 5))
    assert not window.contains(utc(2025, 1, 1))
    assert str(window) == "[2024-12-27T00:00:00+00:00, 2025-01-01T00:00:00+00:00)"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        pytest.param(datetime(2024, 1, 1), utc(2024, 1, 2), "has no time zone", id="naive-start"),
        pytest.param(utc(2024, 1, 1), datetime(2024, 1, 2), "has no time zone", id="naive-end"),
        pytest.param(utc(2024, 1, 2), utc(2024, 1, 2), "must be after start", id="empty"),
        pytest.param(utc(2024, 1, 3), utc(2024, 1, 2), "end is excluded", id="reversed"),
    ],
)
def test_window_rejects_bad_bounds(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(InvalidWindow, match=message):
        Window(start, end)


def test_window_normalises_offsets_to_utc() -> None:
    ny = timezone(timedelta(hours=-5))
    window = Window(datetime(2024, 12, 31, 0, tzinfo=ny), datetime(2025, 1, 1, 0, tzinfo=ny))
    assert window.start == utc(2024, 12, 31, 5)
    assert window.start.tzinfo == UTC


@pytest.mark.parametrize(
    ("last_ts", "timeframe", "expected"),
    [
        pytest.param(utc(2024, 5, 6, 0, 2), "1m", utc(2024, 5, 6, 0, 3), id="BH-03-page-overlap"),
        pytest.param(utc(2024, 12, 30, 5), "1d", utc(2024, 12, 31, 5), id="BH-04-daily-cursor"),
        pytest.param(utc(2024, 11, 3, 5), "1h", utc(2024, 11, 3, 6), id="BH-11-utc-hour"),
    ],
)
def test_next_cursor_is_last_ts_plus_timeframe(
    last_ts: datetime, timeframe: str, expected: datetime
) -> None:
    assert next_cursor(last_ts, timeframe) == expected


def test_BH_03_pages_tile_the_window_without_overlap() -> None:
    window = Window(utc(2024, 5, 6, 0, 0), utc(2024, 5, 6, 0, 5))
    got = pages(window, "1m", 3)
    assert [(p.start, p.end) for p in got] == [
        (utc(2024, 5, 6, 0, 0), utc(2024, 5, 6, 0, 3)),
        (utc(2024, 5, 6, 0, 3), utc(2024, 5, 6, 0, 5)),
    ]
    # page 2 starts at last ts of page 1 (00:02) + 1m: 00:02 is in exactly one page
    assert sum(p.contains(utc(2024, 5, 6, 0, 2)) for p in got) == 1


def test_BH_04_end_is_exclusive_so_the_last_session_needs_the_next_day() -> None:
    session_1231 = utc(2024, 12, 31, 5)  # 2024-12-31 00:00 New York
    assert not Window(utc(2024, 12, 27), utc(2024, 12, 31)).contains(session_1231)
    assert Window(utc(2024, 12, 27), utc(2025, 1, 1)).contains(session_1231)


@pytest.mark.parametrize(
    ("current", "loaded", "open_candle", "expected"),
    [
        pytest.param(
            None, (utc(2024, 1, 1), utc(2024, 2, 1)), None, utc(2024, 2, 1), id="first-load"
        ),
        pytest.param(
            utc(2024, 2, 1),
            (utc(2024, 1, 31), utc(2024, 3, 1)),
            None,
            utc(2024, 3, 1),
            id="overlapping-advances",
        ),
        pytest.param(
            utc(2024, 3, 1),
            (utc(2023, 1, 1), utc(2023, 2, 1)),
            None,
            utc(2024, 3, 1),
            id="historical-never-backwards",
        ),
        pytest.param(
            utc(2024, 3, 1),
            (utc(2024, 4, 1), utc(2024, 5, 1)),
            None,
            utc(2024, 3, 1),
            id="later-window-leaves-hole-no-advance",
        ),
        pytest.param(
            utc(2024, 3, 1),
            (utc(2024, 2, 1), utc(2024, 4, 1)),
            utc(2024, 3, 31, 23),
            utc(2024, 3, 31, 23),
            id="stops-at-open-candle",
        ),
        pytest.param(
            None,
            (utc(2024, 1, 1), utc(2024, 2, 1)),
            utc(2024, 1, 1),
            None,
            id="only-open-candle-covers-nothing",
        ),
    ],
)
def test_next_watermark(
    current: datetime | None,
    loaded: tuple[datetime, datetime],
    open_candle: datetime | None,
    expected: datetime | None,
) -> None:
    assert next_watermark(current, Window(*loaded), open_candle) == expected


def test_scheduled_window_starts_at_watermark_minus_lookback() -> None:
    now = utc(2024, 5, 10, 12, 34, 56)
    got = scheduled_window(utc(2024, 5, 1, 7), now, timedelta(hours=24), timedelta(days=30), "1h")
    assert got == Window(utc(2024, 4, 30, 7), now)


def test_scheduled_window_after_missed_runs_still_starts_at_watermark() -> None:
    # three missed daily runs: the window reaches back to the watermark, not to "yesterday"
    now = utc(2024, 5, 10)
    got = scheduled_window(utc(2024, 5, 6), now, timedelta(0), timedelta(days=30), "1d")
    assert got.start == utc(2024, 5, 6)


def test_scheduled_window_without_watermark_uses_initial_history_floored_to_grid() -> None:
    now = utc(2024, 5, 10, 12, 34, 56)
    got = scheduled_window(None, now, timedelta(hours=24), timedelta(days=2), "1h")
    assert got == Window(utc(2024, 5, 8, 12), now)


@pytest.mark.parametrize(
    ("rows", "confirms", "success", "confirmed_empty"),
    [
        pytest.param(3, False, True, False, id="rows-returned"),
        pytest.param(0, True, True, True, id="BH-07-confirmed-empty-is-not-a-failure"),
        pytest.param(0, False, False, False, id="no-progress-is-a-failure"),
    ],
)
def test_classify_fetch(rows: int, confirms: bool, success: bool, confirmed_empty: bool) -> None:
    window = Window(utc(2024, 5, 7, 14, 32), utc(2024, 5, 7, 14, 35))
    outcome = classify_fetch(rows, confirms, window)
    assert (outcome.success, outcome.confirmed_empty) == (success, confirmed_empty)
    if not success:
        assert outcome.reason == (
            "no progress: the source returned no candles in "
            "[2024-05-07T14:32:00+00:00, 2024-05-07T14:35:00+00:00)"
        )


@pytest.mark.parametrize(("streak", "expected"), [(0, False), (2, False), (3, True), (4, True)])
def test_should_alert_at_threshold(streak: int, expected: bool) -> None:
    assert should_alert(streak, 3) is expected


def test_should_alert_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="threshold must be >= 1"):
        should_alert(1, 0)
