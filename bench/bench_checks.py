"""Time the price checks against a naive per-row rolling median, on N synthetic candles.

Generates N one-minute candles (a random walk per symbol, in SQL with generate_series) in a
fresh database, then times, on the same data:

* ``naive rolling median+MAD``: a per-row window of the previous ``--window`` log returns with
  ``percentile_cont`` in a LATERAL subquery (what a rolling median/MAD costs in PostgreSQL,
  which has no ordered-set window aggregates; 213 s at 10M candles when measured for issue 4);
* ``running-sum stddev``: a moving-frame ``stddev_samp`` window over the same rows (the
  non-robust reference, 20 s at 10M);
* the project's price models (``dbt run --full-refresh``), node by node, and an incremental
  run after appending 1 % new candles;
* the five price tests (``dbt test``) on ``stg_market__candles``.

It prints one table: seconds and the ratio to the naive rolling median.

Run (1M candles over 4 symbols: ~7 min on 2 busy cores, most of it the naive query)::

    .venv/bin/python bench/bench_checks.py --candles 1000000

At 10M, skip the naive query (it takes minutes) or give it a sample::

    .venv/bin/python bench/bench_checks.py --candles 10000000 --naive-sample 1000000

Measured here (1M candles, 4 symbols, local PostgreSQL 15, 2 cores shared with other jobs):
naive rolling median+MAD 152 s (1.00); running-sum stddev 17 s (0.11); price models full
refresh 29 s (0.19: features 14.6, block scales 5.4, fct_candles 7.6); incremental run after
1 % new candles 13.8 s (0.09; it recomputes the 4-day look-back per series, a smaller share on
longer histories); the five tests reading the precomputed judgements 18 s (0.12; price_outliers
10 s, ohlc_integrity 5 s). The cost grows linearly: no step sorts per row.

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``. The
database ``mdq_bench_<random>`` is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from mdq import embedded
from mdq.db import Database, connect, parse_url
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "bench"
PRICE_MODELS = "+fct_candles +dim_symbols +int_candles_scored"


def generate(database: Database, candles: int, symbols: int, start: str) -> None:
    """Insert ``candles`` 1m crypto candles over ``symbols`` symbols, starting at ``start``."""
    per_symbol = candles // symbols
    with connect(database, autocommit=True) as conn:
        conn.execute(
            """
            insert into market_data
                (symbol, asset_class, timeframe, ts, open, high, low, close, volume, source)
            with steps as (
                select
                    'SYM' || lpad(s::text, 4, '0') as symbol,
                    %(start)s::timestamptz + make_interval(mins => i) as ts,
                    (random() - 0.5) * 0.002 as step,
                    random() as noise
                from generate_series(1, %(symbols)s) as s,
                    generate_series(0, %(per_symbol)s - 1) as i
            ),
            walk as (
                select
                    symbol, ts, noise,
                    100 * exp(sum(step) over (partition by symbol order by ts)) as close
                from steps
            ),
            bars as (
                select
                    symbol, ts, noise, close,
                    coalesce(lag(close) over (partition by symbol order by ts), close) as open
                from walk
            )
            select
                symbol, 'crypto', '1m', ts, open,
                greatest(open, close) * (1 + noise * 0.0005),
                least(open, close) * (1 - noise * 0.0005),
                close, 1 + noise * 10, 'bench'
            from bars
            on conflict do nothing
            """,
            {"start": start, "symbols": symbols, "per_symbol": per_symbol},
        )
        conn.execute("analyze market_data")


def timed(label: str, action: Callable[[], object], results: list[tuple[str, float]]) -> None:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    results.append((label, seconds))
    print(f"  {label}: {seconds:.1f} s", flush=True)


def naive_rolling_median(database: Database, window: int, sample: int | None) -> None:
    """Per-row rolling median and MAD of log returns over the previous ``window`` candles."""
    limit = sql.SQL("") if sample is None else sql.SQL("limit {}").format(sql.Literal(sample))
    with connect(database, autocommit=True) as conn:
        conn.execute("drop table if exists bench_returns")
        conn.execute(
            sql.SQL(
                """
                create table bench_returns as
                select symbol, timeframe, ts,
                    row_number() over (partition by symbol, timeframe order by ts) as n,
                    ln(close / lag(close) over (partition by symbol, timeframe order by ts)) as r
                from (select * from market_data order by symbol, ts {}) as m
                """
            ).format(limit)
        )
        conn.execute("create index on bench_returns (symbol, timeframe, n)")
        conn.execute("analyze bench_returns")
        conn.execute(
            """
            select count(*) filter (where abs(r.r - m.med) > 10 * 1.4826 * d.mad)
            from bench_returns as r
            cross join lateral (
                select percentile_cont(0.5) within group (order by w.r) as med
                from bench_returns as w
                where w.symbol = r.symbol and w.timeframe = r.timeframe
                    and w.n between r.n - %(window)s and r.n - 1
            ) as m
            cross join lateral (
                select percentile_cont(0.5) within group (order by abs(w.r - m.med)) as mad
                from bench_returns as w
                where w.symbol = r.symbol and w.timeframe = r.timeframe
                    and w.n between r.n - %(window)s and r.n - 1
            ) as d
            """,
            {"window": window},
        )


def running_stddev(database: Database, window: int) -> None:
    """Moving-frame stddev of log returns over the previous ``window`` candles."""
    with connect(database, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                """
                select count(*) from (
                    select r, stddev_samp(r) over (
                        partition by symbol, timeframe order by ts
                        rows between {} preceding and 1 preceding
                    ) as sd
                    from (
                        select symbol, timeframe, ts,
                            ln(close / lag(close) over (
                                partition by symbol, timeframe order by ts)) as r
                        from market_data
                    ) as x
                ) as y where abs(r) > 10 * sd
                """
            ).format(sql.Literal(window))
        )


def dbt_nodes(result: object) -> list[tuple[str, float]]:
    """(node name, seconds) of a dbtRunnerResult."""
    nodes = []
    for node in getattr(result, "result", None) or []:
        status = str(node.status).lower()
        failed = status in ("error", "runtimeerr", "skipped")
        nodes.append(
            (node.node.name + (f" ({status}!)" if failed else ""), float(node.execution_time))
        )
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--window", type=int, default=100, help="rolling window, candles")
    parser.add_argument(
        "--naive-sample", type=int, default=None, help="run the naive query on this many rows"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    url = os.environ.get("MDQ_DATABASE_URL")
    started_here = False
    if url:
        server = parse_url(url)
    else:
        home = REPO_ROOT / ".mdq-bench"
        socket_dir, started_here = embedded.start(home)
        server = Database(socket_dir, 5432, "postgres", "", "postgres", embedded_home=home)
    name = f"mdq_bench_{uuid.uuid4().hex[:8]}"
    with connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    database = server.with_dbname(name)
    results: list[tuple[str, float]] = []
    try:
        with connect(database) as conn:
            apply_migrations(conn)
        print(f"generating {args.candles:,} candles over {args.symbols} symbols ...", flush=True)
        timed(
            "generate (not a check)",
            lambda: generate(database, args.candles, args.symbols, "2024-01-01T00:00:00Z"),
            results,
        )
        naive_label = f"naive rolling median+MAD ({args.window} candles)"
        if args.naive_sample:
            naive_label += f" on {args.naive_sample:,} rows"
        timed(
            naive_label,
            lambda: naive_rolling_median(database, args.window, args.naive_sample),
            results,
        )
        timed(
            f"running-sum stddev ({args.window} candles)",
            lambda: running_stddev(database, args.window),
            results,
        )
        as_of = {"as_of": "2030-01-01T00:00:00Z"}
        full = run_dbt(
            database,
            SCHEMA,
            "run",
            dbt_vars=as_of,
            extra=["--select", PRICE_MODELS, "--full-refresh"],
        )
        for node, seconds in dbt_nodes(full):
            results.append((f"model {node} (full)", seconds))
        results.append(("price models, full refresh (sum)", sum(s for _, s in dbt_nodes(full))))
        per_symbol = args.candles // args.symbols
        start_new = "2024-01-01T00:00:00Z"
        with connect(database, autocommit=True) as conn:
            (last,) = conn.execute(
                "select max(ts) + interval '1 minute' from market_data"
            ).fetchone()
            start_new = last.isoformat()
        timed(
            "append 1 % new candles (not a check)",
            lambda: generate(
                database, max(args.candles // 100, args.symbols), args.symbols, start_new
            ),
            results,
        )
        incremental = run_dbt(
            database, SCHEMA, "run", dbt_vars=as_of, extra=["--select", PRICE_MODELS]
        )
        for node, seconds in dbt_nodes(incremental):
            results.append((f"model {node} (incremental)", seconds))
        results.append(
            ("price models, incremental (sum)", sum(s for _, s in dbt_nodes(incremental)))
        )
        tests = run_dbt(
            database,
            SCHEMA,
            "test",
            dbt_vars=as_of,
            extra=[
                "--select",
                "test_name:price_outliers test_name:wick_outliers test_name:split_suspects"
                " test_name:flat_filler_candles test_name:ohlc_integrity",
            ],
        )
        for node, seconds in dbt_nodes(tests):
            results.append((f"test {node.split('_stg_')[0]}", seconds))
        del per_symbol
    finally:
        if not args.keep:
            with connect(server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
        if started_here:
            embedded.stop(REPO_ROOT / ".mdq-bench")

    naive = next(seconds for label, seconds in results if label.startswith("naive"))
    print()
    print(f"{'step':<62} {'seconds':>9} {'x naive':>8}")
    print("-" * 81)
    for label, seconds in results:
        ratio = seconds / naive if naive else float("nan")
        print(f"{label:<62} {seconds:>9.2f} {ratio:>8.3f}")


if __name__ == "__main__":
    main()
