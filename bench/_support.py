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
