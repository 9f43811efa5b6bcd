"""Backfill write speed: first load vs a raw keyed COPY vs a rerun over unchanged data.

Usage: python bench/bench_backfill.py [--candles 2000000] [--symbols 10] [--chunk-rows 200000]

Runs against MDQ_DATABASE_URL's server (or the embedded one) in a fresh database that is dropped
at the end. Prints one table; ratios are against the keyed COPY measured in the same run:

* keyed COPY: the candles' CSV COPYed straight into an empty market_data (unique key on
  symbol, timeframe, ts) - the floor the first load should come close to;
* first load: ``load_series`` for every symbol over a fresh window (generate, validate, dedupe,
  encode, COPY, watermark, state rows);
* rerun: the same windows again (temp table + guarded upsert; rewrites 0 rows);
* correction rerun: the same windows with every 100th close changed (1 % updated).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
from psycopg import sql

from mdq.backfill_core import BackfillOptions, SeriesRequest, load_series
from mdq.config import load_settings
from mdq.db import backfill as db
from mdq.db import connect, open_database
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier
from mdq.providers.base import FetchResult
from mdq.providers.synthetic import SyntheticProvider
from mdq.validation import finality
from mdq.windows import Window


class Corrected:
    """The synthetic provider with every 100th close moved up by 0.01 % (a vendor correction)."""

    name = "synthetic"

    def __init__(self, inner: SyntheticProvider) -> None:
        self.inner = inner

    def list_series(self):  # noqa: ANN201 - bench helper
        return self.inner.list_series()

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        got = self.inner.fetch_candles(symbol, timeframe, window)
        c = got.candles.copy()
        idx = c.index[::100]
        c.loc[idx, "close"] = c.loc[idx, "close"] * 1.0001
        c.loc[idx, "high"] = c.loc[idx, ["high", "close"]].max(axis=1)
        return FetchResult(c, got.rejected, got.fetched_at, got.source, got.source_confirms_empty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=2_000_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    args = parser.parse_args()
    per_symbol = args.candles // args.symbols
    symbols = [f"B{i:03d}" for i in range(args.symbols)]
    start = datetime(2010, 1, 1, tzinfo=UTC)
    window = Window(start, start + timedelta(minutes=per_symbol))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    provider = SyntheticProvider(symbols, ["1m"], seed=1, now=now)
    options = BackfillOptions(lease_seconds=600, chunk_rows=args.chunk_rows)
    total = per_symbol * args.symbols

    settings = load_settings()
    with open_database(settings) as server:
        name = f"mdq_bench_{uuid.uuid4().hex[:8]}"
        with connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        bench = server.with_dbname(name)
        try:
            with connect(bench) as conn:
                apply_migrations(conn)
            rows: list[tuple[str, float]] = []

            # generation alone (not a write: shows what the provider costs)
            t0 = time.perf_counter()
            frames = [provider.fetch_candles(s, "1m", window).candles for s in symbols]
            rows.append(("generate (synthetic, no write)", time.perf_counter() - t0))

            # keyed COPY floor: same payload straight into an empty keyed market_data
            with connect(bench, autocommit=True) as conn:
                conn.execute("create table copy_floor (like market_data including all)")
                payloads = [
                    db._csv_bytes(
                        f.assign(is_final=finality(f["ts"], "1m", pd.Timestamp(now))), "b"
                    )
                    for f in frames
                ]
                t0 = time.perf_counter()
                with conn.transaction():
                    for payload in payloads:
                        db._copy(conn, "copy_floor", payload)
                rows.append(("keyed COPY (floor)", time.perf_counter() - t0))
                conn.execute("drop table copy_floor")

            def load(p: object, label: str) -> None:
                t = time.perf_counter()
                results = [
                    load_series(
                        bench,
                        p,
                        SeriesRequest(s, "1m", window),
                        options,  # type: ignore[arg-type]
                        notifier=RecordingNotifier(),
                    )
                    for s in symbols
                ]
                elapsed = time.perf_counter() - t
                assert all(r.status == "completed" for r in results), results
                ins = sum(r.inserted for r in results)
                upd = sum(r.updated for r in results)
                rows.append((f"{label} (inserted {ins}, updated {upd})", elapsed))

            load(provider, "first load")
            with connect(bench, autocommit=True) as conn:
                conn.execute("vacuum analyze market_data")
                before = conn.execute(
                    "select n_tup_upd, n_dead_tup from pg_stat_user_tables"
                    " where relname = 'market_data'"
                ).fetchone()
            load(provider, "rerun, unchanged")
            load(Corrected(provider), "rerun, 1% corrected")
            with connect(bench, autocommit=True) as conn:
                time.sleep(1)  # statistics are flushed asynchronously
                conn.execute("select pg_stat_clear_snapshot()")
                after = conn.execute(
                    "select n_tup_upd, n_dead_tup from pg_stat_user_tables"
                    " where relname = 'market_data'"
                ).fetchone()
        finally:
            with connect(server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )

    floor = next(sec for label, sec in rows if label.startswith("keyed COPY"))
    print(
        f"\n{total:,} candles ({args.symbols} symbols x {per_symbol:,} 1m), "
        f"chunk {args.chunk_rows:,} rows\n"
    )
    print(f"{'step':<52} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8}")
    print("-" * 81)
    for label, sec in rows:
        print(f"{label:<52} {sec:8.2f} {total / sec:10,.0f} {floor / sec:8.2f}")
    print(
        f"\nmarket_data n_tup_upd/n_dead_tup after the first load: {before}, after both reruns: "
        f"{after} (the unchanged rerun should add none; the 1% rerun adds {total // 100:,})"
    )


if __name__ == "__main__":
    main()
