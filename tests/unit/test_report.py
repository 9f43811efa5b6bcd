"""The report's plain logic: coverage cells, weeks, slugs, the open-findings trend."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import numpy as np
import pytest

from mdq.report import (
    CELL_STATES,
    Candles,
    coverage_cells,
    downsample,
    encode_columns,
    open_trend,
    run_instants,
    series_slug,
    session_days,
    timeframe_seconds,
    to_weeks,
)


def states(codes: list[int]) -> list[str]:
    return [CELL_STATES[c] for c in codes]


def test_coverage_cells_name_every_kind_of_day() -> None:
    # Thu 2024-12-26 .. Thu 2025-01-02: BH-04's hole on 12-31, the weekend, New Year closed.
    sessions = {date(2024, 12, d) for d in (26, 27, 30, 31)} | {date(2025, 1, 2)}
    row = coverage_cells(
        date(2024, 12, 26),
        date(2025, 1, 3),
        series_first=date(2024, 12, 27),
        series_last=date(2025, 1, 2),
        counts={date(2024, 12, 27): 1, date(2024, 12, 30): 1, date(2025, 1, 2): 1},
        sessions=sessions,
        gap_days={date(2024, 12, 31)},
    )
    assert states(row) == [
        "not loaded",  # 12-26, before the first candle
        "complete",  # 12-27
        "closed",  # Sat
        "closed",  # Sun
        "complete",  # 12-30
        "partial",  # 12-31: the open gap finding
        "closed",  # New Year's Day
        "complete",  # 01-02
        "not loaded",  # 01-03, after the last candle
    ]


def test_a_session_without_candles_or_finding_is_not_called_closed() -> None:
    row = coverage_cells(
        date(2024, 5, 6),
        date(2024, 5, 8),
        series_first=date(2024, 5, 6),
        series_last=date(2024, 5, 8),
        counts={date(2024, 5, 6): 10, date(2024, 5, 8): 10},
        sessions={date(2024, 5, 6), date(2024, 5, 7), date(2024, 5, 8)},
        gap_days=set(),
    )
    assert states(row) == ["complete", "empty", "complete"]


def test_without_refreshed_sessions_an_empty_day_counts_as_closed() -> None:
    row = coverage_cells(
        date(2024, 5, 6),
        date(2024, 5, 7),
        series_first=date(2024, 5, 6),
        series_last=date(2024, 5, 7),
        counts={date(2024, 5, 6): 1},
        sessions=None,
        gap_days=set(),
    )
    assert states(row) == ["complete", "closed"]


def test_weeks_start_on_monday_and_show_their_worst_day() -> None:
    # Wed 2024-05-08 .. Tue 2024-05-14: two weeks (the first partial).
    row = [2, 2, 1, 1, 1, 4, 2]
    start, weeks = to_weeks(date(2024, 5, 8), row)
    assert start == date(2024, 5, 6)
    assert weeks == [2, 4]


def test_series_slugs_are_safe_and_never_collide() -> None:
    a, b = series_slug("BTC/USD", "1h"), series_slug("BTC_USD", "1h")
    assert a != b
    assert a.startswith("BTC_USD_1h-") and "/" not in a
    assert series_slug("../../etc", "1d").startswith(".._.._etc_1d-")
    assert "/" not in series_slug("../../etc", "1d")


@pytest.mark.parametrize(
    ("timeframe", "seconds"), [("1m", 60), ("5m", 300), ("4h", 14400), ("1d", 86400)]
)
def test_timeframe_seconds(timeframe: str, seconds: int) -> None:
    assert timeframe_seconds(timeframe) == seconds


def test_timeframe_seconds_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="timeframe '1hour' not understood"):
        timeframe_seconds("1hour")


def test_open_trend_counts_findings_open_at_each_run() -> None:
    t1, t2, t3 = (datetime(2024, 5, d, tzinfo=UTC) for d in (1, 2, 3))
    findings = [
        # seen by runs 1 and 2, resolved by run 3
        {"first_seen_at": t1, "last_seen_at": t2, "resolved_at": t3, "severity": "error"},
        # new in run 2, still open
        {"first_seen_at": t2, "last_seen_at": t3, "resolved_at": None, "severity": "warn"},
    ]
    runs = run_instants(findings)
    assert runs == [t1, t2, t3]
    assert open_trend(findings, runs) == [
        {"run": t1.isoformat(), "error": 1, "warn": 0},
        {"run": t2.isoformat(), "error": 1, "warn": 1},
        {"run": t3.isoformat(), "error": 0, "warn": 1},
    ]


def test_downsample_merges_runs_of_candles_into_ohlcv_bars() -> None:
    t = np.array([0, 60_000, 120_000, 180_000, 240_000], dtype=np.int64)
    candles = Candles(
        t=t,
        o=np.array([10.0, 11, 12, 13, 14]),
        h=np.array([11.0, 15, 13, 14, 16]),
        l=np.array([9.0, 10, 8, 12, 13]),
        c=np.array([11.0, 12, 13, 14, 15]),
        v=np.array([1.0, np.nan, 3, 4, 5]),
        starts=np.array([0, 5]),
    )
    bars = downsample(candles, candles.series(0), 2)
    assert bars["t"].tolist() == [0, 120_000, 240_000]
    assert bars["o"].tolist() == [10, 12, 14]
    assert bars["h"].tolist() == [15, 14, 16]
    assert bars["l"].tolist() == [9, 8, 13]
    assert bars["c"].tolist() == [12, 14, 15]
    assert bars["v"].tolist() == [1, 7, 5]  # a null volume counts as 0 in its bar


def test_session_days_follow_the_calendar_zone_and_roll_over() -> None:
    ms = lambda iso: int(datetime.fromisoformat(iso).timestamp() * 1000)  # noqa: E731
    day = lambda n: date(1970, 1, 1).toordinal() + int(n)  # noqa: E731
    t = np.array([ms("2024-03-14T20:00:02+00:00"), ms("2024-03-15T02:00:00+00:00")])
    ny = session_days(t, "America/New_York", 0)
    assert [date.fromordinal(day(n)) for n in ny] == [date(2024, 3, 14), date(2024, 3, 14)]
    # FX: 17:00 New York is midnight of the next trading date (Sunday 22:00Z is Monday's)
    fx = session_days(np.array([ms("2017-01-01T22:00:00+00:00")]), "America/New_York", 7)
    assert date.fromordinal(day(fx[0])) == date(2017, 1, 2)
    utc = session_days(t, "UTC", 0)
    assert [date.fromordinal(day(n)) for n in utc] == [date(2024, 3, 14), date(2024, 3, 15)]


def test_encoded_columns_are_little_endian_float64() -> None:
    encoded = encode_columns({"c": np.array([1.5, 307.25])})
    assert np.frombuffer(base64.b64decode(encoded["c"]), dtype="<f8").tolist() == [1.5, 307.25]
