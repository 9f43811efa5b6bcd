"""Scale benchmark of issue 15: ratios measured in one run, on N one-minute candles.

Usage::

    .venv/bin/python bench/bench_scale.py [--candles 1000000] [--symbols S] [--parts P1,P2]
        [--check] [--keep] [--shards 2]

The data: ``--candles`` 1m candles of 24/7 (crypto) symbols, a random walk per symbol, written
once as a canonical CSV file (``symbol,asset_class,timeframe,ts,open,high,low,close,volume``,
ISO ``ts`` with ``Z``), the file a vendor drop would be. The symbols default to one per 10,000
candles, at most 1,000 (the issue's reference shape: 10M candles = 1,000 symbols x ~6.9 days,
1.44M candles a day); ``--symbols`` overrides it and each series then holds N / symbols
candles.

Parts (each a function; a part other helpers add plugs into :data:`PARTS`):

* P1a ``first load / raw COPY``: ``run_backfill(provider="csv")`` of the file into an empty
  ``market_data`` (parse, validate, dedupe, write, state rows, watermarks), against the
  baseline shipped here: the same file's text COPYed straight into a table shaped like
  ``market_data`` (same columns, defaults and unique key), nothing else. Printed as
  raw COPY seconds / first load seconds, so >= 0.5 means the load runs at half COPY speed or
  better (target >= 0.5).
* P1b ``unchanged rerun / first load``: the same backfill again; rows written to
  ``market_data`` (inserted + updated, from the results and from ``pg_stat_user_tables``)
  must be 0 (target <= 0.3 and 0 rows written).
* P2 ``full check / single-pass scan``: the single-pass ``lag()`` scan shipped in
  ``bench/single_pass_scan.sql`` (key duplicates, raw gaps, spikes, last candle per series)
  timed over the loaded rows, against ``mdq check --full`` when ``--check`` is given (a full
  dbt run; minutes at 1M).
* P3 ``check after +1 day / full check``, next to new rows / all rows: ``mdq check --full``,
  then ``mdq check`` with no new data (issue 9: the repeat at least 2x faster than the
  first), then one more day of candles per series COPYed in, ``mdq check`` (incremental by
  default: only the changed series from a few candles before the new ones), and ``mdq check
  --full`` over the same rows; with the five slowest dbt nodes of each run (mdq's one line
  per node).
* P5 ``N shards at once / unsharded``: ``mdq check --full`` once unsharded and as ``--shards``
  (default 2) processes ``mdq check --full --shard i/N`` started together (each the second of
  two runs; the CSV is loaded first when P1 did not run); the wall time of the shards over
  the unsharded run's (1/N would be perfect division; the gap check reads every symbol in
  each shard, and the shards share the cores).

Peak memory is the benchmark process's maximum resident set (``ru_maxrss``), which includes the
backfill (it runs in this process); the server's memory is not included.

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``
(:mod:`bench._support`); the database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import REPO_ROOT, bench_database  # noqa: E402

from mdq.db import Database, connect  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
SCAN_SQL = REPO_ROOT / "bench" / "single_pass_scan.sql"


@dataclass
class Context:
    """What the parts share: the database, the CSV file, the shape, and the printed rows."""

    database: Database
    path: Path
    candles: int
    symbols: int
    args: argparse.Namespace
    seconds: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, part: str, measured: str, ratio: str) -> None:
        """One printed row: the part, what was measured, the ratio."""
        self.rows.append((part, measured, ratio))


def write_csv(path: Path, candles: int, symbols: int, seed: int = 1) -> int:
    """Write ``candles`` 1m candles of ``symbols`` 24/7 symbols (a random walk each) as the
    canonical CSV. Returns the rows written (``symbols * (candles // symbols)``)."""
    per = candles // symbols
    rng = np.random.default_rng(seed)
    base = np.datetime64(START.replace(tzinfo=None), "m")
    minutes = np.arange(per, dtype="int64")
    ts_text = np.datetime_as_string(base + minutes, unit="s") + "Z"
    with pacsv.CSVWriter(
        str(path),
        pa.schema(
            [
                ("symbol", pa.string()),
                ("asset_class", pa.string()),
                ("timeframe", pa.string()),
                ("ts", pa.string()),
                *((c, pa.float64()) for c in ("open", "high", "low", "close", "volume")),
            ]
        ),
    ) as writer:
        for s in range(symbols):
            steps = rng.standard_normal(per) * 0.0005
            close = 100.0 * np.exp(np.cumsum(steps))
            open_ = np.concatenate([[100.0], close[:-1]])
            wiggle = np.abs(rng.standard_normal((2, per))) * 0.0002
            high = np.maximum(open_, close) * (1 + wiggle[0])
            low = np.minimum(open_, close) * (1 - wiggle[1])
            volume = np.round(rng.random(per) * 1000, 3)
            writer.write_table(
                pa.table(
                    {
                        "symbol": pa.array(np.full(per, f"S{s:04d}")),
                        "asset_class": pa.array(np.full(per, "crypto")),
                        "timeframe": pa.array(np.full(per, "1m")),
                        "ts": pa.array(ts_text),
                        "open": np.round(open_, 6),
                        "high": np.round(high, 6),
                        "low": np.round(low, 6),
                        "close": np.round(close, 6),
                        "volume": volume,
                    }
                )
            )
    return per * symbols


def peak_mb() -> float:
    """This process's peak resident set so far, MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows_written(database: Database) -> int:
    """Rows inserted + updated into market_data (and its partitions) per the statistics."""
    time.sleep(1.0)  # statistics are flushed asynchronously
    with connect(database, autocommit=True) as conn:
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute(
            """
            with tables as (
                select 'market_data'::regclass as relid
                union all
                select inhrelid from pg_inherits where inhparent = 'market_data'::regclass
            )

            select coalesce(sum(s.n_tup_ins + s.n_tup_upd), 0)
            from pg_stat_user_tables as s
            inner join tables as t on t.relid = s.relid
            """
        ).fetchone()
    return int(row[0]) if row else 0


def raw_copy(ctx: Context) -> float:
    """The baseline: the CSV's text COPYed into a table like market_data (same columns,
    defaults, unique key), in one transaction. Returns seconds."""
    with connect(ctx.database, autocommit=True) as conn:
        conn.execute("create table raw_copy_baseline (like market_data including all)")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with (
                cur.copy(
                    "copy raw_copy_baseline (symbol, asset_class, timeframe, ts, open, high, low,"
                    " close, volume) from stdin (format csv, header true)"
                ) as copy,
                open(ctx.path, "rb") as f,
            ):
                while block := f.read(1 << 20):
                    copy.write(block)
        seconds = time.perf_counter() - started
        conn.execute("drop table raw_copy_baseline")
    return seconds


def backfill(ctx: Context) -> tuple[float, int, int]:
    """One ``run_backfill`` of the CSV. Returns (seconds, rows written per the results,
    rows written per pg_stat)."""
    from mdq.backfill_core import run_backfill

    before = rows_written(ctx.database)
    started = time.perf_counter()
    results = run_backfill("csv", path=str(ctx.path), database=ctx.database)
    seconds = time.perf_counter() - started
    bad = [r for r in results if r.status != "completed"]
    if bad:
        raise SystemExit(f"backfill failed: {bad[0].counts_line()} (+{len(bad) - 1} more)")
    stored = sum(r.stored for r in results)
    if stored != ctx.candles:
        raise SystemExit(f"backfill stored {stored} of {ctx.candles} rows")
    written = sum(r.inserted + r.updated for r in results)
    return seconds, written, rows_written(ctx.database) - before


def p1_write(ctx: Context) -> None:
    """P1a (first load vs raw COPY) and P1b (unchanged rerun vs first load, rows written)."""
    copy_s = raw_copy(ctx)
    ctx.seconds["raw COPY"] = copy_s
    first_s, first_written, _ = backfill(ctx)
    ctx.seconds["first load"] = first_s
    ctx.add(
        "P1a first load / raw COPY",
        f"COPY {copy_s:.1f} s, load {first_s:.1f} s ({first_written:,} rows written), "
        f"peak {peak_mb():.0f} MB",
        f"{copy_s / first_s:.2f} (COPY speed share, target >= 0.5)",
    )
    with connect(ctx.database, autocommit=True) as conn:
        conn.execute("vacuum analyze market_data")
    rerun_s, by_results, by_stats = backfill(ctx)
    ctx.seconds["unchanged rerun"] = rerun_s
    ctx.add(
        "P1b unchanged rerun / first load",
        f"rerun {rerun_s:.1f} s; rows written {by_results} (results), {by_stats} (pg_stat), "
        f"peak {peak_mb():.0f} MB",
        f"{rerun_s / first_s:.2f} (target <= 0.3, 0 rows)",
    )


def load_if_empty(ctx: Context) -> None:
    """Load the CSV (one backfill) when market_data is empty: P1 did not run."""
    with connect(ctx.database, autocommit=True) as conn:
        row = conn.execute("select exists (select 1 from market_data)").fetchone()
    if not (row and row[0]):
        backfill(ctx)


def p2_scan(ctx: Context) -> None:
    """P2: the single-pass scan (bench/single_pass_scan.sql) timed over market_data; against
    a full ``mdq check`` when ``--check`` is given. Loads the CSV first when P1 did not run
    (a scan of the empty table timed nothing)."""
    load_if_empty(ctx)
    text = SCAN_SQL.read_text()
    with connect(ctx.database, autocommit=True) as conn:
        conn.execute("analyze market_data")
        started = time.perf_counter()
        found = conn.execute(text).fetchall()
        scan_s = time.perf_counter() - started
    ctx.seconds["single-pass scan"] = scan_s
    summary = f"scan {scan_s:.1f} s over {len(found):,} series"
    if not ctx.args.check:
        ctx.add("P2 single-pass scan", summary + " (full check not run: --check)", "-")
        return
    check_s = full_check(ctx)
    ctx.seconds["full check"] = check_s
    ctx.add("P2 full check / single-pass scan", summary, f"{check_s / scan_s:.2f} (target <= 3)")


def full_check(ctx: Context) -> float:
    """Seconds of one full ``mdq check --full`` on the bench database (the CLI, in a
    subprocess)."""
    return mdq_check(ctx, "--full")[0]


def mdq_check(ctx: Context, *args: str) -> tuple[float, list[tuple[float, str]]]:
    """One ``mdq check`` (the CLI, in a subprocess: dbt parse, models, checks, recording).

    Returns:
        (seconds, the dbt nodes of the run as (seconds, "<type> <name>"), slowest first,
        from mdq's one line per node).

    Raises:
        SystemExit: the check could not run (exit status other than 0 and 1).
    """
    import re
    import subprocess

    env = {**os.environ, "MDQ_DATABASE_URL": ctx.database.url(), "MDQ_DBT_SCHEMA": "bench"}
    env.pop("PREFECT_API_URL", None)  # dbt's own runner: the per-node lines below
    started = time.perf_counter()
    proc = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "mdq"), "check", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1: findings; anything else: the check itself failed
        raise SystemExit(f"mdq check failed ({proc.returncode}): {proc.stderr[-2000:]}")
    nodes = [
        (float(m.group(3)), f"{m.group(1)} {m.group(2)}")
        for m in re.finditer(
            r"^\S+\s+(model|test)\s+(\S+?):?(?: \d+ rows)? \(([0-9.]+)s\)$",
            proc.stdout,
            re.MULTILINE,
        )
    ]
    return seconds, sorted(nodes, reverse=True)


def append_day(ctx: Context, seed: int = 2) -> int:
    """COPY one more day (1,440 candles) onto the end of every series, each continuing from
    its last close; returns the rows added."""
    rng = np.random.default_rng(seed)
    with connect(ctx.database, autocommit=True) as conn:
        ends = conn.execute(
            """
            select distinct on (symbol) symbol, ts, close
            from market_data
            where timeframe = '1m'
            order by symbol, ts desc
            """
        ).fetchall()
        added = 0
        with conn.cursor() as cur:
            with cur.copy(
                "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close,"
                " volume, source) from stdin"
            ) as copy:
                for symbol, last_ts, last_close in ends:
                    close = last_close * np.exp(np.cumsum(rng.standard_normal(1440) * 0.0005))
                    open_ = np.concatenate([[last_close], close[:-1]])
                    for k in range(1440):
                        hi = max(open_[k], close[k]) * 1.0001
                        lo = min(open_[k], close[k]) * 0.9999
                        copy.write_row(
                            (
                                symbol,
                                "crypto",
                                "1m",
                                last_ts + timedelta(minutes=k + 1),
                                round(float(open_[k]), 6),
                                round(float(hi), 6),
                                round(float(lo), 6),
                                round(float(close[k]), 6),
                                500.0,
                                "bench",
                            )
                        )
                    added += 1440
        conn.execute("analyze market_data")
    return added


def p3_incremental(ctx: Context) -> None:
    """P3 (issue 15) and issue 9's repeat goal: a full check, a repeat with no new data, a
    check after one more day of candles (incremental by default), and a full check of the same
    rows for comparison. Loads the CSV first when P1 did not run."""
    load_if_empty(ctx)
    first_s, first_nodes = mdq_check(ctx, "--full")
    repeat_s, repeat_nodes = mdq_check(ctx)
    added = append_day(ctx)
    with connect(ctx.database, autocommit=True) as conn:
        row = conn.execute("select count(*) from market_data").fetchone()
    total = int(row[0]) if row else 0
    day_s, day_nodes = mdq_check(ctx)
    full_s, full_nodes = mdq_check(ctx, "--full")
    ctx.seconds.update(
        {"P3 first full": first_s, "P3 repeat": repeat_s, "P3 +1 day": day_s, "P3 full": full_s}
    )
    share = added / total if total else 0.0
    ctx.add(
        "P3 check after +1 day / full check",
        f"+1 day {day_s:.1f} s, full {full_s:.1f} s; new rows {added:,} of {total:,} ({share:.3f})",
        f"{day_s / full_s:.2f} next to {share:.3f} (target <= 0.1)",
    )
    ctx.add(
        "P3 repeat, no new data / full check",
        f"first full {first_s:.1f} s, repeat {repeat_s:.1f} s",
        f"{repeat_s / first_s:.2f} (first/repeat {first_s / repeat_s:.2f}, target >= 2)",
    )
    for label, nodes in (
        ("full", full_nodes),
        ("+1 day", day_nodes),
        ("repeat", repeat_nodes),
    ):
        top = ", ".join(f"{name} {sec:.1f}s" for sec, name in nodes[:5])
        ctx.add(f"P3 slowest nodes, {label}", top or "(no node lines)", "-")


def mdq_health(ctx: Context) -> tuple[float, str]:
    """One ``mdq health`` (the CLI in a subprocess, live: it records a snapshot). Returns
    (seconds, its first output line)."""
    import subprocess

    env = {**os.environ, "MDQ_DATABASE_URL": ctx.database.url(), "MDQ_DBT_SCHEMA": "bench"}
    env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "mdq"), "health"], env=env, capture_output=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1: problems that page
        raise SystemExit(f"mdq health failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return seconds, (proc.stdout.decode().splitlines() or [""])[0]


def p4_health(ctx: Context) -> None:
    """P4: ``mdq health`` at the loaded symbols (1,000 at the reference shape), target <= 1 s.

    The first run finds no relations built by dbt in the bench database and falls back to dbt
    (the staleness models and the full-history staleness test: what every health run did
    before); the next runs judge staleness by index look-ups (mdq.health.staleness_by_index).
    Loads the CSV first when P1 did not run.
    """
    load_if_empty(ctx)
    first_s, _ = mdq_health(ctx)
    # right after the first run recorded its findings, data_anomalies has no statistics for
    # them yet: the planner nests a loop over data_anomaly_triage in open_counts (seconds)
    fresh = sorted(s for s, _ in (mdq_health(ctx) for _ in range(3)))[1]
    with connect(ctx.database, autocommit=True) as conn:
        conn.execute("analyze data_anomalies")  # what autovacuum does within a minute
    runs = [mdq_health(ctx) for _ in range(3)]
    seconds = sorted(s for s, _ in runs)[1]
    ctx.seconds["health"] = seconds
    ctx.add(
        f"P4 mdq health, {ctx.symbols:,} symbols",
        f"by index look-ups, median of 3: {seconds:.2f} s ({fresh:.2f} s before data_anomalies "
        f"was analysed); first run through dbt {first_s:.1f} s ({first_s / seconds:.0f}x); "
        f"{runs[-1][1]}",
        f"{seconds:.2f} s (target <= 1 s)",
    )


def run_shards(ctx: Context, count: int) -> tuple[float, list[float]]:
    """``mdq check --full --shard i/count`` for every i, started together as processes.

    Returns:
        (wall seconds from the first start to the last end, each shard's own seconds).

    Raises:
        SystemExit: a shard could not run (exit status other than 0 and 1).
    """
    import subprocess

    env = {**os.environ, "MDQ_DATABASE_URL": ctx.database.url(), "MDQ_DBT_SCHEMA": "bench"}
    env.pop("PREFECT_API_URL", None)
    env["DBT_QUIET"] = "1"
    mdq = str(REPO_ROOT / ".venv" / "bin" / "mdq")
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [mdq, "check", "--full", "--shard", f"{index}/{count}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(1, count + 1)
    ]
    own: list[float] = []
    for proc in procs:
        _, err = proc.communicate()
        own.append(time.perf_counter() - started)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"mdq check --shard failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - started, own


def p5_shards(ctx: Context) -> None:
    """P5: wall time of ``--shards`` shards of ``mdq check --full`` run at the same time
    ÷ one unsharded ``mdq check --full`` (each the second of two runs: the first builds the
    shard's schema and dbt's parse in its own target/)."""
    count = ctx.args.shards
    with connect(ctx.database, autocommit=True) as conn:
        row = conn.execute("select exists (select 1 from market_data)").fetchone()
    if not (row and row[0]):
        backfill(ctx)
    full_check(ctx)
    unsharded = full_check(ctx)
    run_shards(ctx, count)
    wall, own = run_shards(ctx, count)
    ctx.add(
        f"P5 {count} shards at once / unsharded (full)",
        f"unsharded {unsharded:.1f} s; {count} shards in parallel {wall:.1f} s wall "
        f"(each ended after {', '.join(f'{s:.1f}' for s in own)} s)",
        f"{wall / unsharded:.2f} (1/{count} = perfect)",
    )


#: The parts, run in this order on one database (P1 loads the data the later parts read).
PARTS: list[tuple[str, Callable[[Context], None]]] = [
    ("P1", p1_write),
    ("P2", p2_scan),
    ("P3", p3_incremental),
    ("P4", p4_health),
    ("P5", p5_shards),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=None)
    parser.add_argument("--check", action="store_true", help="P2: also run a full mdq check")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--parts", default=",".join(name for name, _ in PARTS))
    parser.add_argument("--shards", type=int, default=2, help="P5: shards run at once")
    args = parser.parse_args()
    symbols = args.symbols or max(1, min(1000, args.candles // 10_000))
    wanted = set(args.parts.split(","))
    unknown = wanted - {name for name, _ in PARTS}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; known: P1, P2, P3, P4, P5")
    with tempfile.TemporaryDirectory(prefix="mdq-bench-scale-") as tmp:
        path = Path(tmp) / "candles.csv"
        started = time.perf_counter()
        total = write_csv(path, args.candles, symbols)
        generated = time.perf_counter() - started
        with bench_database(keep=args.keep) as database:
            ctx = Context(database, path, total, symbols, args)
            for name, part in PARTS:
                if name in wanted:
                    part(ctx)
    load = os.getloadavg()
    print(
        f"\n{total:,} 1m candles: {symbols} symbols x {total // symbols:,} "
        f"({total // symbols / 1440:.1f} days); CSV written in {generated:.1f} s; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores\n"
    )
    width = max(len(r[0]) for r in ctx.rows)
    print(f"{'part':<{width}}  {'ratio':<40}  measured")
    print("-" * (width + 100))
    for part, measured, ratio in ctx.rows:
        print(f"{part:<{width}}  {ratio:<40}  {measured}")
    print(f"\npeak memory (this process): {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
