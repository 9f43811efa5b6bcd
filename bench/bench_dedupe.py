"""Benchmark ``mdq dedupe --apply``: seconds per duplicate key at growing sizes (issue 16).

Builds an adopted ``market_data`` (no unique key, naive timestamps, as a team might have it)
with ``--keys`` duplicated (symbol, timeframe, ts) keys (two rows each, one in ten with
different values) among ``--rows`` rows in all, then times the preview and the apply of
:func:`mdq.dedupe.cleanup_duplicate_records`, at 1/16, 1/4 and all of the keys. A linear
cleanup keeps the per-key cost flat: the ratio column is each size's per-key time over the
smallest size's, measured in one run.

Usage: ``python bench/bench_dedupe.py [--keys 100000] [--rows 10000000]``
(``MDQ_DATABASE_URL``, else the embedded server under ``.mdq-bench``).
"""

from __future__ import annotations

import argparse
import time
import uuid

from psycopg import sql

from mdq.config import load_settings
from mdq.db import Database, connect, open_database
from mdq.db.migrate import apply_migrations
from mdq.dedupe import cleanup_duplicate_records
from mdq.exceptions import DuplicateKeysBlockMigration

ADOPTED = """
create table market_data (
    symbol text not null, timeframe text not null, ts timestamp not null,
    open double precision, high double precision, low double precision,
    close double precision, volume double precision
)
"""


def fill(conn: object, keys: int, rows: int) -> None:
    """``rows`` rows over 100 symbols of 1m candles; the first ``keys`` keys twice."""
    unique = rows - keys
    conn.execute(  # type: ignore[attr-defined]
        """
        insert into market_data
        select 'S' || (i %% 100), '1m',
               timestamp '2020-01-01' + (i / 100) * interval '1 minute',
               100, 101, 99, 100.5, 1000
        from generate_series(0, %(unique)s - 1) as i
        """,
        {"unique": unique},
    )
    conn.execute(  # type: ignore[attr-defined]
        """
        insert into market_data
        select 'S' || (i %% 100), '1m',
               timestamp '2020-01-01' + (i / 100) * interval '1 minute',
               100, 101, 99, case when i %% 10 = 0 then 100.7 else 100.5 end, 1000
        from generate_series(0, %(keys)s - 1) as i
        """,
        {"keys": keys},
    )


def one_size(server: Database, keys: int, rows: int) -> tuple[float, float]:
    name = f"mdq_bench_dedupe_{uuid.uuid4().hex[:8]}"
    with connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        database = server.with_dbname(name)
        with connect(database, autocommit=True) as conn:
            conn.execute(ADOPTED)
            fill(conn, keys, rows)
            conn.execute("analyze market_data")
            try:  # as `mdq dedupe` does: 002 (the unique key) waits for the cleanup
                apply_migrations(conn)
            except DuplicateKeysBlockMigration:
                pass
            started = time.perf_counter()
            preview = cleanup_duplicate_records(conn, dry_run=True)
            previewed = time.perf_counter() - started
            started = time.perf_counter()
            report = cleanup_duplicate_records(conn, dry_run=False)
            applied = time.perf_counter() - started
            assert preview.duplicate_keys == keys and report.rows_to_remove == keys
            left = conn.execute("select count(*) from market_data").fetchone()
            assert left == (rows - keys,), left
        return previewed, applied
    finally:
        with connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="duplicated keys (largest)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in all (largest)")
    args = parser.parse_args()
    settings = load_settings()
    if settings.database_url is None:
        from pathlib import Path

        settings = load_settings(home=Path(__file__).resolve().parents[1] / ".mdq-bench")
    with open_database(settings) as server:
        print(f"dedupe --apply: {args.keys} duplicated keys in {args.rows} rows at most")
        print(f"{'keys':>9} {'rows':>10} {'preview s':>10} {'apply s':>9} "
              f"{'us/key':>8} {'ratio':>6}")  # fmt: skip
        base = None
        for share in (16, 4, 1):
            keys, rows = args.keys // share, args.rows // share
            previewed, applied = one_size(server, keys, rows)
            per_key = applied / keys * 1e6
            base = base or per_key
            print(
                f"{keys:>9} {rows:>10} {previewed:>10.2f} {applied:>9.2f} {per_key:>8.1f} "
                f"{per_key / base:>6.2f}"
            )


if __name__ == "__main__":
    main()
