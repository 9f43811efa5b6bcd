"""Partition pruning and the indexes of market_data, shown with EXPLAIN (ANALYZE) at N candles.

Generates, in a fresh database (migration 110: market_data partitioned by UTC month),
``--symbols`` 24/7 series of 1h candles, ``--candles`` in all (1M over 100 symbols = 10,000 bars
each, 2026-01-01 to 2027-02-21: 14 monthly partitions plus the default one; one series in ten
stops 60 days before the end, as a dead feed does), the months' partitions made first as the
loader makes them (:func:`mdq.db.partitions.ensure_partitions`),
and an unpartitioned copy ``market_data_flat`` with the same indexes for comparison. Then prints
two tables, every figure from this one run (fastest of 7 executions after one warm-up):

1. **Pruning.** Queries shaped like the checks over recent candles, each with: the partitions
   its plan executed / all partitions, its time, the time of the same query with
   ``enable_partition_pruning = off`` and on the flat copy, and the ratios.
   - *recent day, gap scan*: the calendar checks' source filter with ``check_lookback_days: 1``
     (``ts < as_of and ts >= as_of - make_interval(days => 1)``, as_of a literal as dbt renders
     it) and a ``lag()`` window per series: pruned when planned.
   - *recent day, bound from a table*: the lower bound is a scalar subquery
     (``min(watermark_at) - 1 day`` from ``backfill_watermarks``), the shape of an incremental
     check's "from the first changed candle minus the look-back": pruned at run time (the other
     partitions show as never executed).
   - *last candle per series*: ``max(ts)`` per series (staleness, ``mdq health``): no ts bound,
     so every partition's index is probed once per series (the cost of partitioning here).
   - *recent 30 days, price scan*: ``check_lookback_days: 30`` with a ``lag()`` of close (the
     price checks' shape): one or two partitions read whole instead of a part of the table.
   - *last candle, bounded 35 days*: the same look-up with ``ts >= as_of - 35 days``: pruned
     to the recent partitions (a series silent for longer needs the unbounded form).
   - *last candle, recent then all*: ``coalesce(<bounded look-up>, <unbounded look-up>)``:
     the unbounded probe of every partition runs only for a series with no candle in 35 days.
   - *last candle, default detached*: the unbounded look-up with ``market_data_default``
     detached (rolled back): without a default partition PostgreSQL scans the partitions in
     order (ordered Append) and stops at the newest one holding the series.
   - *scoped re-read (as built)*: an incremental check's read of the changed series from their
     ``read_from`` (``check_scopes``, migration 130: an ``exists`` per series), one day appended
     to every live series; *+ min bound*: the same with ``ts >= (select min(read_from) ...)``
     added, which lets the partitions before the oldest ``read_from`` be pruned at run time.
   - *one series, last 7 days*: a per-series range read (the report's series page).
2. **Indexes.** Each index of market_data, its size, the query above that uses it, and that
   query's time with the index and without it (dropped inside a transaction that is rolled
   back), with the plan node each time.

Reference run (the issue's size is 10M; this machine is shared, so 1M)::

    .venv/bin/python bench/bench_partitions.py --candles 1000000 --symbols 100

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``. The
database ``mdq_bench_<random>`` is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from _support import bench_database, insert_hourly_walk
from psycopg import sql

from mdq.db import Database, connect
from mdq.db.partitions import ensure_partitions

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    """One EXPLAIN ANALYZE: fastest time, partitions executed, the scan nodes seen."""

    ms: float
    executed: int
    planned: int
    scans: tuple[str, ...]


def generate(database: Database, candles: int, symbols: int) -> tuple[int, datetime]:
    """Insert the candles (partitions first, as the loader does) and the flat copy.

    Returns:
        (candles stored, as_of = one bar after the last candle).
    """
    bars = candles // symbols
    end = START + timedelta(hours=bars)
    with connect(database, autocommit=True) as conn:
        conn.execute("set work_mem = '256MB'")
        months = [START + timedelta(hours=h) for h in range(0, bars, 24 * 28)] + [end]
        ensure_partitions(conn, months)
        insert_hourly_walk(conn, symbols, bars, START)
        # one series in ten went silent 60 days before the end (a delisted or broken feed)
        conn.execute(
            """
            delete from market_data
            where right(symbol, 1) = '0' and ts >= %(end)s::timestamptz - interval '60 days'
            """,
            {"end": end},
        )
        conn.execute(
            """
            insert into backfill_watermarks (symbol, timeframe, watermark_at)
            select symbol, timeframe, max(ts) + interval '1 hour'
            from market_data
            group by symbol, timeframe
            """
        )
        # an incremental run's scope (migration 130): one day appended to every live series,
        # re-read from 3 candles before it
        conn.execute(
            """
            insert into check_scopes (scope_id, symbol, timeframe, read_from)
            select 'bench', symbol, timeframe, watermark_at - interval '1 day 3 hours'
            from backfill_watermarks
            where watermark_at >= %(end)s::timestamptz - interval '1 day'
            """,
            {"end": end},
        )
        conn.execute(
            """
            create table market_data_flat as select * from market_data;
            alter table market_data_flat
                add constraint market_data_flat_key unique (symbol, timeframe, ts);
            create index idx_market_data_flat_ts on market_data_flat (ts);
            """
        )
        for table in ("market_data", "market_data_flat", "backfill_watermarks", "check_scopes"):
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier(table)))
        row = conn.execute("select count(*) from market_data").fetchone()
    return (int(row[0]) if row else 0), end


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(conn: psycopg.Connection, query: sql.Composable, repeat: int = 7) -> Run:
    """EXPLAIN (ANALYZE, FORMAT JSON) ``query`` once to warm up, then ``repeat`` times; the
    fastest execution (the machine is shared: the minimum is the least disturbed)."""
    statement = sql.SQL("explain (analyze, format json) ") + query
    conn.execute(statement)
    times = []
    for _ in range(repeat):
        row = conn.execute(statement).fetchone()
        assert row is not None
        doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
        times.append(float(doc[0]["Execution Time"]))
    plan = doc[0]["Plan"]
    scanned = {}
    for node in _nodes(plan):
        relation = node.get("Relation Name")
        if relation and relation.startswith("market_data"):
            loops = int(node.get("Actual Loops", 0))
            scanned[relation] = max(scanned.get(relation, 0), loops)
            kind = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
            scanned[f"kind:{kind}"] = 1
    executed = sum(1 for k, v in scanned.items() if not k.startswith("kind:") and v > 0)
    planned = sum(1 for k in scanned if not k.startswith("kind:"))
    kinds = tuple(sorted(k[5:] for k in scanned if k.startswith("kind:")))
    return Run(min(times), executed, planned, kinds)


def _short(scans: tuple[str, ...]) -> str:
    """Plan nodes with partition names folded: 'Index Scan market_data_p*_ts_idx x14'."""
    folded: dict[str, int] = {}
    for scan in scans:
        key = re.sub(r"market_data_(p\d{4}_\d{2}|default)", "market_data_*", scan)
        folded[key] = folded.get(key, 0) + 1
    return "; ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(folded.items()))


def queries(as_of: datetime, table: str) -> dict[str, sql.Composable]:
    """The check-shaped queries, over ``table`` (market_data or market_data_flat)."""
    t = sql.Identifier(table)
    at = sql.Literal(as_of.isoformat())
    return {
        "recent day, gap scan": sql.SQL(
            """
            with recent as (
                select symbol, timeframe, ts,
                    lag(ts) over (partition by symbol, timeframe order by ts) as previous_ts
                from {t}
                where ts < {at}::timestamptz
                    and ts >= {at}::timestamptz - make_interval(days => 1)
            )
            select count(*) filter (where ts - previous_ts > interval '1 hour') from recent
            """
        ).format(t=t, at=at),
        "recent day, bound from a table": sql.SQL(
            """
            select count(*), max(close)
            from {t}
            where ts >= (select min(watermark_at) from backfill_watermarks) - interval '1 day'
            """
        ).format(t=t),
        "recent 30 days, price scan": sql.SQL(
            """
            select count(*), avg(abs(ln(close / prev_close)))
            from (
                select close,
                    lag(close) over (partition by symbol, timeframe order by ts) as prev_close
                from {t}
                where ts < {at}::timestamptz
                    and ts >= {at}::timestamptz - make_interval(days => 30)
            ) as r
            """
        ).format(t=t, at=at),
        "last candle per series": sql.SQL(
            """
            select count(*)
            from backfill_watermarks as w
            cross join lateral (
                select max(m.ts) as last_ts
                from {t} as m
                where m.symbol = w.symbol and m.timeframe = w.timeframe
            ) as l
            where l.last_ts is not null
            """
        ).format(t=t),
        "last candle, bounded 35 days": sql.SQL(
            """
            select count(*)
            from backfill_watermarks as w
            cross join lateral (
                select max(m.ts) as last_ts
                from {t} as m
                where m.symbol = w.symbol and m.timeframe = w.timeframe
                    and m.ts >= {at}::timestamptz - interval '35 days'
                    and m.ts < {at}::timestamptz
            ) as l
            where l.last_ts is not null
            """
        ).format(t=t, at=at),
        "last candle, recent then all": sql.SQL(
            """
            select count(*)
            from backfill_watermarks as w
            cross join lateral (
                select coalesce(
                    (
                        select max(m.ts)
                        from {t} as m
                        where m.symbol = w.symbol and m.timeframe = w.timeframe
                            and m.ts >= {at}::timestamptz - interval '35 days'
                    ),
                    (
                        select max(m.ts)
                        from {t} as m
                        where m.symbol = w.symbol and m.timeframe = w.timeframe
                    )
                ) as last_ts
            ) as l
            where l.last_ts is not null
            """
        ).format(t=t, at=at),
        "scoped re-read (as built)": sql.SQL(
            """
            select count(*)
            from {t} as r
            where r.ts < {at}::timestamptz
                and exists (
                    select 1 from check_scopes as s
                    where s.scope_id = 'bench' and s.symbol = r.symbol
                        and s.timeframe = r.timeframe and r.ts >= s.read_from
                )
            """
        ).format(t=t, at=at),
        "scoped re-read + min bound": sql.SQL(
            """
            select count(*)
            from {t} as r
            where r.ts < {at}::timestamptz
                and r.ts >= (
                    select min(s.read_from) from check_scopes as s where s.scope_id = 'bench'
                )
                and exists (
                    select 1 from check_scopes as s
                    where s.scope_id = 'bench' and s.symbol = r.symbol
                        and s.timeframe = r.timeframe and r.ts >= s.read_from
                )
            """
        ).format(t=t, at=at),
        "one series, last 7 days": sql.SQL(
            """
            select count(*), avg(close)
            from {t}
            where symbol = 'SYM0001' and timeframe = '1h'
                and ts >= {at}::timestamptz - interval '7 days' and ts < {at}::timestamptz
            """
        ).format(t=t, at=at),
    }


_DROP_KEY = "alter table market_data drop constraint market_data_symbol_timeframe_ts_key"

#: index of market_data -> [(query it serves, how to remove it in a rolled-back transaction)]
INDEX_USES = {
    "market_data_symbol_timeframe_ts_key": [
        ("one series, last 7 days", _DROP_KEY),
        ("last candle per series", _DROP_KEY),
    ],
    "idx_market_data_ts": [
        ("recent day, gap scan", "drop index idx_market_data_ts"),
        ("recent 30 days, price scan", "drop index idx_market_data_ts"),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    with bench_database(keep=args.keep) as database:
        print(f"generating {args.candles:,} candles over {args.symbols} symbols ...", flush=True)
        t0 = time.perf_counter()
        candles, as_of = generate(database, args.candles, args.symbols)
        generated = time.perf_counter() - t0
        with connect(database, autocommit=True) as conn:
            partitions = conn.execute(
                "select count(*) from pg_inherits where inhparent = 'market_data'::regclass"
            ).fetchone()
            in_default = conn.execute("select count(*) from market_data_default").fetchone()
            print(
                f"{candles:,} candles, {args.symbols} series of 1h bars from {START:%Y-%m-%d}"
                f" to {as_of:%Y-%m-%d %H:%M}Z; {partitions[0] if partitions else 0} partitions"
                f" (months + default; {in_default[0] if in_default else 0} rows in default);"
                f" generated in {generated:.0f} s (not measured)\n"
            )
            partitioned = queries(as_of, "market_data")
            flat = queries(as_of, "market_data_flat")
            header = (
                f"{'query':<32} {'partitions':>10} {'pruned ms':>10} {'no-prune ms':>12}"
                f" {'flat ms':>8} {'pruned/no-prune':>16} {'pruned/flat':>12}"
            )
            print("1. pruning (EXPLAIN ANALYZE, fastest of 7)")
            print(header)
            runs: dict[str, Run] = {}
            flat_runs: dict[str, Run] = {}
            off_runs: dict[str, Run] = {}
            for name, query in partitioned.items():
                on = explain(conn, query)
                runs[name] = on
                conn.execute("set enable_partition_pruning = off")
                off = explain(conn, query)
                conn.execute("reset enable_partition_pruning")
                flat_run = explain(conn, flat[name])
                flat_runs[name] = flat_run
                off_runs[name] = off
                if name == "last candle per series":
                    flat_last = flat_run
                print(
                    f"{name:<32} {f'{on.executed}/{off.executed}':>10} {on.ms:>10.1f}"
                    f" {off.ms:>12.1f} {flat_run.ms:>8.1f} {on.ms / off.ms:>16.2f}"
                    f" {on.ms / flat_run.ms:>12.2f}"
                )
            with conn.transaction(force_rollback=True):
                conn.execute("alter table market_data detach partition market_data_default")
                detached = explain(conn, partitioned["last candle per series"])
            print(
                f"{'last candle, default detached':<32} {f'{detached.executed}/{off.executed}':>10}"
                f" {detached.ms:>10.1f} {'':>12} {'':>8} {'':>16}"
                f" {detached.ms / flat_last.ms:>12.2f}"
                "   (rolled back; ordered append: newest partition first)"
            )
            print("\n   plan nodes on market_data (pruned run):")
            for name, run in runs.items():
                print(f"   {name:<32} {_short(run.scans)}")
                print(f"   {'  pruning off':<32} {_short(off_runs[name].scans)}")
                print(f"   {'  flat':<32} {_short(flat_runs[name].scans)}")

            print("\n2. indexes of market_data (the query each serves, with and without it)")
            print(
                f"{'index':<38} {'size MB':>8} {'query':<28} {'with ms':>8} {'without ms':>11}"
                f" {'without/with':>13}  plan without"
            )
            indexes = conn.execute(
                """
                select i.relname, coalesce(sum(pg_relation_size(p.indexrelid)), 0)
                from pg_index as x
                inner join pg_class as i on i.oid = x.indexrelid
                left join pg_inherits as h on h.inhparent = x.indexrelid
                left join pg_index as p on p.indexrelid = h.inhrelid
                where x.indrelid = 'market_data'::regclass
                group by i.relname
                order by i.relname
                """
            ).fetchall()
            for index, raw_size in indexes:
                size = float(raw_size)
                uses = INDEX_USES.get(str(index))
                if not uses:
                    print(f"{index:<38} {size / 1e6:>8.1f} (not measured by this script)")
                    continue
                for query_name, remove in uses:
                    with_it = runs[query_name]
                    with conn.transaction(force_rollback=True):
                        conn.execute(remove)
                        without = explain(conn, partitioned[query_name])
                    print(
                        f"{index:<38} {size / 1e6:>8.1f} {query_name:<28} {with_it.ms:>8.1f}"
                        f" {without.ms:>11.1f} {without.ms / with_it.ms:>13.2f}"
                        f"  {_short(without.scans)}"
                    )
            print(
                "\n   market_data_symbol_timeframe_ts_key is also the arbiter of the backfill's"
                " `on conflict (symbol, timeframe, ts)`: it cannot go."
            )


if __name__ == "__main__":
    main()
