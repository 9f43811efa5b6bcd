"""Time the calendar checks (dbt tests) on synthetic candles and print a table.

Usage: MDQ_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
    python bench/bench_calendar_checks.py [--keep] [ROWS ...]

For each size, a fresh database gets ROWS 1m crypto candles (24/7, 20 symbols, one 60-minute
hole per symbol per day) plus the same number of XNYS 1m stock candles (regular sessions only,
built from trading_sessions), then dbt builds the calendar models and runs the five checks
twice in the same database: each check sessionizing the candles itself (var
calendar_checks_use_model false), then all reading the shared model int_candles_sessionized
(built whole, counted in its total). The table shows dbt's execution time per node, the
totals and their ratio, and the time of a bare lag() scan over the same rows (the floor a
set-based gap check can reach) with each time's ratio to it. The database is
dropped afterwards unless --keep is given (its name is printed, e.g. to EXPLAIN the compiled
tests against it).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, date, datetime

from psycopg import sql

from mdq.db import connect, parse_url
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt

CHECKS = [
    "candle_gaps",
    "candle_staleness",
    "duplicate_candles",
    "misaligned_candles",
    "out_of_session_candles",
]
SYMBOLS = 20
CALENDAR_SELECTION = [f"+{check}_stg_market__candles" for check in CHECKS]
BARE_LAG_SCAN = """
    select count(*)
    from (
        select ts - lag(ts) over (partition by symbol, timeframe order by ts) as step
        from market_data
    ) as steps
    where step > interval '1 minute'
"""


def load(conn, rows: int) -> None:  # type: ignore[no-untyped-def]
    per_symbol = rows // SYMBOLS
    conn.execute(
        """
        insert into market_data (symbol, asset_class, timeframe, ts, open, high, low, close,
            volume)
        select 'C' || s, 'crypto', '1m', t, 1, 1.1, 0.9, 1, 1
        from generate_series(1, %(symbols)s) as s,
            generate_series(
                '2020-01-01T00:00Z'::timestamptz,
                '2020-01-01T00:00Z'::timestamptz + (%(n)s - 1) * interval '1 minute',
                interval '1 minute'
            ) as t
        where extract(hour from t at time zone 'UTC') <> 6
        """,
        {"symbols": SYMBOLS, "n": per_symbol},
    )
    conn.execute(
        """
        insert into market_data (symbol, asset_class, timeframe, ts, open, high, low, close,
            volume)
        select 'S' || s, 'stock', '1m', t, 1, 1.1, 0.9, 1, 1
        from generate_series(1, %(symbols)s) as s,
            trading_sessions as ts,
            generate_series(ts.open_at, ts.close_at - interval '1 minute', interval '1 minute')
                as t
        where ts.calendar = 'XNYS' and ts.session_date >= '2020-01-01'
            and ts.session_date < '2020-01-01'::date + (%(n)s / 390)
        """,
        {"symbols": SYMBOLS, "n": per_symbol},
    )
    conn.execute("analyze")


def main(sizes: list[int], keep: bool = False) -> None:
    url = os.environ.get("MDQ_DATABASE_URL")
    if not url:
        sys.exit("set MDQ_DATABASE_URL to a PostgreSQL server (a database is created there)")
    server = parse_url(url)
    print(f"{'rows':>10} {'check':<44} {'seconds':>8} {'x lag':>8}")
    for size in sizes:
        name = f"mdq_bench_{uuid.uuid4().hex[:8]}"
        with connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        database = server.with_dbname(name)
        try:
            with connect(database, autocommit=True) as conn:
                apply_migrations(conn)
                conn.execute(
                    "insert into instruments (symbol, asset_class, calendar) values"
                    " ('_X', 'stock', 'XNYS'), ('_C', 'crypto', '24/7')"
                )
            with connect(database) as conn:
                refresh_calendars(
                    conn, today=date(2020, 1, 1), start=date(2019, 12, 1), end=date(2026, 1, 1)
                )
            with connect(database, autocommit=True) as conn:
                started = time.perf_counter()
                load(conn, size)
                loaded = conn.execute("select count(*) from market_data").fetchone()[0]
            print(f"{loaded:>10} {'(load)':<44} {time.perf_counter() - started:>8.1f}")
            with connect(database, autocommit=True) as conn:
                started = time.perf_counter()
                conn.execute(BARE_LAG_SCAN).fetchone()
                lag_seconds = time.perf_counter() - started
            print(f"{loaded:>10} {'(bare lag scan)':<44} {lag_seconds:>8.1f} {1.0:>8.1f}")
            as_of = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
            totals = {}
            # each check's own pass first, then the shared pass (int_candles_sessionized,
            # built whole: no scope) that the checks read by default
            for mode, use_model in (("own pass", False), ("shared pass", True)):
                result = run_dbt(
                    database,
                    "bench",
                    "build",
                    dbt_vars={"as_of": as_of, "calendar_checks_use_model": use_model},
                    extra=["--select", *CALENDAR_SELECTION, "--indirect-selection", "cautious"],
                )
                if result.exception is not None or result.result is None:  # findings are fine
                    sys.exit(f"dbt build could not run ({mode}): {result.exception}")
                totals[mode] = 0.0
                for node in result.result or []:
                    check = node.node.name.removesuffix("_stg_market__candles")
                    if check in CHECKS or node.node.name == "int_candles_sessionized":
                        seconds = node.execution_time
                        if check in CHECKS or use_model:
                            totals[mode] += seconds
                        label = f"{check} ({mode})"
                        print(
                            f"{loaded:>10} {label:<44} {seconds:>8.1f} "
                            f"{seconds / lag_seconds:>8.1f}"
                        )
            for mode, seconds in totals.items():
                label = f"total, five checks ({mode})"
                print(f"{loaded:>10} {label:<44} {seconds:>8.1f} {seconds / lag_seconds:>8.1f}")
            print(
                f"{loaded:>10} {'shared / own':<44} "
                f"{totals['shared pass'] / totals['own pass']:>8.2f}"
            )
        finally:
            if keep:
                print(f"kept database {name}")
            else:
                with connect(server, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("drop database if exists {} with (force)").format(
                            sql.Identifier(name)
                        )
                    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main([int(arg) for arg in args if arg != "--keep"] or [200_000, 1_000_000], "--keep" in args)
