"""Time ``mdq report`` on N symbols x D days of 1h candles with findings, and weigh its pages.

Generates, in a fresh database, ``--symbols`` 24/7 series of 1h candles over ``--days`` days (a
random walk per symbol, in SQL), then ``--findings`` findings per symbol written straight into
``data_anomalies`` (one 6-candle gap, the rest outliers spread over the year: the report reads
findings, it does not run the checks, so their cost is not part of this), then times
:func:`mdq.report.write_report` and prints one table: the generation (not part of the report),
the report's wall time, its time per series, and the page weights (the index; a series page
with its on-demand full-detail file; plotly.js, shared by every page).

Reference run (issue 14): 1,000 symbols x 365 days (8.76M candles)::

    .venv/bin/python bench/bench_report.py --symbols 1000 --days 365

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``. The
database ``mdq_bench_<random>`` is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _support import bench_database, insert_hourly_walk

from mdq.db import Database, connect
from mdq.report import write_report

START = "2024-01-01T00:00:00Z"


def generate(database: Database, symbols: int, days: int, findings: int) -> int:
    """Insert the candles and findings; returns the candle count."""
    with connect(database, autocommit=True) as conn:
        conn.execute("set work_mem = '256MB'")
        insert_hourly_walk(conn, symbols, days * 24, START)
        conn.execute(
            """
            insert into data_anomalies (
                fingerprint, check_name, anomaly_type, severity, symbol, asset_class,
                timeframe, ts_start, ts_end, observed_value, expected_value, details
            )
            select
                md5(s::text || '/' || k::text),
                case when k = 0 then 'candle_gaps' else 'price_outliers' end,
                case when k = 0 then 'gap' else 'outlier' end,
                case when k %% 3 = 0 then 'error' else 'warn' end,
                'SYM' || lpad(s::text, 4, '0'), 'crypto', '1h',
                %(start)s::timestamptz + make_interval(hours => (k * 997 + s * 13) %% %(hours)s),
                %(start)s::timestamptz
                    + make_interval(hours => (k * 997 + s * 13) %% %(hours)s + 5),
                case when k = 0 then 6 else 9.5 end,
                case when k = 0 then 0 else 6 end,
                jsonb_build_object('failure_reason', 'bench finding ' || k)
            from generate_series(1, %(symbols)s) as s, generate_series(0, %(per)s - 1) as k
            """,
            {"start": START, "symbols": symbols, "hours": days * 24, "per": findings},
        )
        conn.execute("analyze market_data")
        conn.execute("analyze data_anomalies")
        row = conn.execute("select count(*) from market_data").fetchone()
    return int(row[0]) if row else 0


def size(path: Path) -> int:
    return path.stat().st_size


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--findings", type=int, default=5, help="findings per symbol")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    with bench_database(keep=args.keep) as database:
        print(f"generating {args.symbols} symbols x {args.days} days of 1h candles ...", flush=True)
        t0 = time.perf_counter()
        candles = generate(database, args.symbols, args.days, args.findings)
        generated = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            summary = write_report(database, Path(out))
            seconds = time.perf_counter() - t0
            page = summary.series_pages[0]
            full = page.with_name(page.name.replace(".html", ".full.js"))
            plotly_js = Path(out) / "assets" / "plotly.min.js"
            rows = [
                ("candles", f"{candles:,}", ""),
                ("series", f"{summary.series:,}", ""),
                ("findings", f"{args.symbols * args.findings:,}", ""),
                ("generate (not the report)", f"{generated:.1f} s", ""),
                ("mdq report, wall", f"{seconds:.1f} s", "target <= 15 s (issue 14)"),
                ("  per series", f"{seconds / max(summary.series, 1) * 1000:.1f} ms", ""),
                ("index.html", f"{size(summary.index) / 1e6:.2f} MB", ""),
                ("a series page (.html)", f"{size(page) / 1e3:.0f} KB", "loaded on open"),
                ("its full detail (.full.js)", f"{size(full) / 1e3:.0f} KB", "loaded on zoom"),
                ("assets/plotly.min.js", f"{size(plotly_js) / 1e6:.2f} MB", "shared, cached"),
                ("whole folder", f"{folder_bytes(Path(out)) / 1e6:.0f} MB", ""),
            ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'what':<{width}}  {'measured':>12}  note")
        for what, value, note in rows:
            print(f"{what:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
