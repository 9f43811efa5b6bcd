"""Timeframes, the timeframe grid, candle validation, batch dedupe, finality."""

from __future__ import annotations

import pandas as pd
import pytest

from mdq.exceptions import UnsupportedTimeframe
from mdq.validation import (
    dedupe_batch,
    finality,
    grid_for,
    off_grid_mask,
    parse_timeframe,
    timeframe_seconds,
    validate_candles,
)
from tests.support import parse_candles

COLUMNS = ["symbol", "asset_class", "timeframe", "ts", "open", "high", "low", "close", "volume"]


def frame(csv_text: str) -> pd.DataFrame:
    rows = parse_candles(csv_text)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out["source_row"] = range(2, len(out) + 2)
    return out


def test_parse_timeframe_accepts_known_and_names_the_accepted_ones() -> None:
    assert parse_timeframe(" 1h ") == "1h"
    assert timeframe_seconds("1d") == 86400
    with pytest.raises(UnsupportedTimeframe) as info:
        parse_timeframe("2h")
    assert str(info.value) == (
        "timeframe '2h' not supported; expected one of 1m, 5m, 15m, 30m, 1h, 4h, 1d"
    )


@pytest.mark.parametrize(
    ("ts", "timeframe", "calendar", "off"),
    [
        pytest.param("2024-03-13T04:00:00Z", "1d", "XNYS", False, id="nyse-daily-summer-midnight"),
        pytest.param("2024-12-31T05:00:00Z", "1d", "XNYS", False, id="nyse-daily-winter-midnight"),
        pytest.param("2024-03-14T20:00:02Z", "1d", "XNYS", True, id="nyse-daily-live-quote-time"),
        pytest.param("2024-11-29T14:30:00Z", "1h", "XNYS", False, id="nyse-1h-on-the-half-hour"),
        pytest.param("2024-11-29T14:00:00Z", "1h", "XNYS", True, id="nyse-1h-on-the-hour"),
        pytest.param("2024-11-03T05:00:00Z", "1h", "24/7", False, id="crypto-1h"),
        pytest.param("2024-11-03T05:30:00Z", "1h", "24/7", True, id="crypto-1h-half-past"),
        pytest.param("2024-05-06T00:02:30Z", "1m", "24/7", True, id="crypto-1m-seconds"),
        pytest.param("2024-03-10T21:00:00Z", "1h", "FX", False, id="fx-1h"),
        pytest.param("2024-03-10T00:00:00Z", "1d", "24/7", False, id="crypto-daily-utc"),
    ],
)
def test_grid(ts: str, timeframe: str, calendar: str, off: bool) -> None:
    series = pd.Series(pd.to_datetime([ts], utc=True))
    assert off_grid_mask(series, grid_for(timeframe, calendar)).tolist() == [off]


BAD = """
symbol,asset_class,timeframe,ts,open,high,low,close,volume
AAA,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100
AAA,crypto,1h,2024-05-06T01:00:00Z,nan,11,9,10.5,100
AAA,crypto,1h,2024-05-06T02:00:00Z,10,inf,9,10.5,100
AAA,crypto,1h,2024-05-06T03:00:00Z,10,11,0,10.5,100
AAA,crypto,1h,2024-05-06T04:00:00Z,10,11,9,10.5,-1
AAA,crypto,1h,2024-05-06T05:00:00Z,10,10.2,9,10.5,100
AAA,crypto,1h,2024-05-06T06:00:00Z,10,11,10.2,10.5,100
AAA,crypto,1h,2024-05-06T07:00:00Z,10,9,11,10.5,100
AAA,crypto,1h,2024-05-06T08:30:00Z,10,11,9,10.5,100
"""


def test_validate_candles_names_each_reason() -> None:
    valid, rejected = validate_candles(frame(BAD), grid_for("1h", "24/7"))
    assert valid["ts"].dt.hour.tolist() == [0]
    assert [(r.source_row, r.reason) for r in rejected] == [
        (3, "open is not a finite number: nan"),
        (4, "high is not a finite number: inf"),
        (5, "non-positive price: low=0.0"),
        (6, "negative volume: volume=-1.0"),
        (7, "high 10.2 below max(open, close) 10.5"),
        (8, "low 10.2 above min(open, close) 10.0"),
        (
            9,
            "high 9.0 below low 11.0; high 9.0 below max(open, close) 10.5; "
            "low 11.0 above min(open, close) 10.0",
        ),
        (10, "ts 2024-05-06T08:30:00+00:00 is not on the 1h grid (UTC, anchored at 00:00)"),
    ]
    assert rejected[0].raw["open"] == "nan"
    assert rejected[0].raw["ts"] == "2024-05-06T01:00:00+00:00"


def test_BH_03_dedupe_batch_keeps_five_of_six_and_counts_one_duplicate() -> None:
    pages = frame(
        """
ETHX,crypto,1m,2024-05-06T00:00:00Z,3100.0,3101.5,3099.0,3101.0,12.4
ETHX,crypto,1m,2024-05-06T00:01:00Z,3101.0,3102.0,3100.2,3100.8,9.1
ETHX,crypto,1m,2024-05-06T00:02:00Z,3100.8,3103.0,3100.5,3102.7,15.0
ETHX,crypto,1m,2024-05-06T00:02:00Z,3100.8,3103.0,3100.5,3102.7,15.0
ETHX,crypto,1m,2024-05-06T00:03:00Z,3102.7,3104.1,3102.0,3103.9,11.3
ETHX,crypto,1m,2024-05-06T00:04:00Z,3103.9,3104.0,3101.8,3102.2,8.7
"""
    )
    got = dedupe_batch(pages)
    assert len(got.candles) == 5
    assert got.exact_duplicates == 1
    assert got.conflicting.empty
    assert got.candles["ts"].is_monotonic_increasing


def test_dedupe_batch_keeps_the_later_of_conflicting_rows() -> None:
    rows = frame(
        """
AAA,crypto,1m,2024-05-06T00:00:00Z,10,11,9,10,1
AAA,crypto,1m,2024-05-06T00:00:00Z,10,11,9,10.5,2
"""
    )
    got = dedupe_batch(rows)
    assert got.candles["close"].tolist() == [10.5]
    assert got.exact_duplicates == 0
    assert got.conflicting["close"].tolist() == [10.0]


def test_finality_marks_a_candle_still_forming_at_fetch_time() -> None:
    ts = pd.Series(pd.to_datetime(["2024-01-01T09:00Z", "2024-01-01T10:00Z"], utc=True))
    fetched = pd.Timestamp("2024-01-01T10:30Z")
    assert finality(ts, "1h", fetched).tolist() == [True, False]


def test_naive_timestamps_are_rejected_not_assumed_utc() -> None:
    candles = frame("AAA,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100")
    candles["ts"] = candles["ts"].dt.tz_localize(None)
    valid, rejected = validate_candles(candles, grid_for("1h", "24/7"))
    assert valid.empty
    assert [r.reason for r in rejected] == ["naive timestamp (no time zone); ts is missing"]
