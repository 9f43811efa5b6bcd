"""What the benchmark scripts share: a fresh, migrated database for one run.

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``
(started if needed, stopped at the end if this run started it). The database
``mdq_bench_<random>`` is dropped at the end unless ``keep``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from mdq import embedded
from mdq.db import Database, connect, parse_url
from mdq.db.migrate import apply_migrations

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def bench_database(*, keep: bool = False) -> Iterator[Database]:
    """Yield a fresh database with every migration applied (see the module docstring)."""
    url = os.environ.get("MDQ_DATABASE_URL")
    home = REPO_ROOT / ".mdq-bench"
    started_here = False
    if url:
        server = parse_url(url)
    else:
        socket_dir, started_here = embedded.start(home)
        server = Database(socket_dir, 5432, "postgres", "", "postgres", embedded_home=home)
    name = f"mdq_bench_{uuid.uuid4().hex[:8]}"
    with connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    database = server.with_dbname(name)
    try:
        with connect(database) as conn:
            apply_migrations(conn)
        yield database
    finally:
        if not keep:
            with connect(server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
        if started_here:
            embedded.stop(home)


def insert_hourly_walk(conn: psycopg.Connection, symbols: int, hours: int, start: object) -> None:
    """Insert ``symbols`` x ``hours`` 1h crypto candles (symbols SYM0001, ...) from ``start``:
    a random walk of log steps up to +-0.5 % with small wicks, volume 1,000-1,500, source
    'bench'. One set-based statement; partitions, if wanted, are the caller's business."""
    conn.execute(
        """
        insert into market_data
            (symbol, asset_class, timeframe, ts, open, high, low, close, volume, source)
        with steps as (
            select
                'SYM' || lpad(s::text, 4, '0') as symbol,
                %(start)s::timestamptz + make_interval(hours => i) as ts,
                (random() - 0.5) * 0.01 as step,
                random() as noise
            from generate_series(1, %(symbols)s) as s,
                generate_series(0, %(hours)s - 1) as i
        ),
        walk as (
            select
                symbol, ts, noise,
                100 * exp(sum(step) over (partition by symbol order by ts)) as close
            from steps
        )
        select
            symbol, 'crypto', '1h', ts,
            close * (1 - noise * 0.001), close * (1 + noise * 0.003),
            close * (1 - noise * 0.004), close, 1000 + noise * 500, 'bench'
        from walk
        """,
        {"start": start, "symbols": symbols, "hours": hours},
    )
