"""Fault suite, a full disk mid-backfill (issue 16, point 4), run as a user runs ``mdq backfill``.

The disk really fills: market_data (its partitions and indexes, and those the loader creates:
the database's ``default_tablespace``) is moved to a tablespace on a small tmpfs mounted for
the test, so PostgreSQL's own write fails with ``53100 disk_full`` ("could not
extend file ...: No space left on device"), as on a volume that filled up. The rest of the
database stays on the big disk, as when market_data's volume is the one that filled: the
failure can be recorded. Then the volume grows (remount), and a rerun loads everything.

Needs root and a mount (``mount -t tmpfs``); skipped otherwise, saying which is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations

pytestmark = pytest.mark.integration

ARGS = ["backfill", "--provider", "synthetic", "--symbols", "FULL1", "--timeframe", "1m",
        "--start", "2024-03-04", "--end", "2024-03-09", "--no-prefect"]  # fmt: skip
CANDLES = 5 * 24 * 60
#: Room for about a third of the candles with their indexes (tmpfs rounds to 4 kB pages).
SMALL = "384k"


def _mdq(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    env.update({"MDQ_DATABASE_URL": database.url(), "MDQ_BACKFILL_CHUNK_ROWS": "100"})
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture()
def small_volume(
    tmp_path: Path, make_database: Callable[[], Database]
) -> Iterator[tuple[Database, Path]]:
    """A fresh, migrated database whose market_data lives on a tmpfs of :data:`SMALL`."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("filling a real disk needs root and mount (a tmpfs for the tablespace)")
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        data_directory = conn.execute("show data_directory").fetchone()
    assert data_directory is not None
    owner = Path(str(data_directory[0])).stat()  # the server's OS user (or root's mapping)
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0700,uid={owner.st_uid},"
         f"gid={owner.st_gid}", "tmpfs", str(volume)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    tablespace = f"mdq_full_{uuid.uuid4().hex[:8]}"
    try:
        with connect(database, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create tablespace {} location {}").format(
                    sql.Identifier(tablespace), sql.Literal(str(volume))
                )
            )
            relations = conn.execute(
                """
                with tree as (
                    -- the table, and its partitions if it is partitioned
                    select 'market_data'::regclass as relid
                    union select relid from pg_partition_tree('market_data')
                )
                select c.oid::regclass::text, c.relkind
                from pg_class as c
                where c.oid in (select relid from tree)
                    or c.oid in (select indexrelid from pg_index
                                 where indrelid in (select relid from tree))
                order by c.relkind desc
                """
            ).fetchall()
            # partitions the loader makes on demand (a month's first candles) land there too
            conn.execute(
                sql.SQL("alter database {} set default_tablespace = {}").format(
                    sql.Identifier(database.dbname), sql.Identifier(tablespace)
                )
            )
            for name, kind in relations:
                if kind in ("r", "p"):
                    statement = "alter table {} set tablespace {}"
                elif kind == "i":
                    statement = "alter index {} set tablespace {}"
                else:
                    continue  # a partitioned index has no storage; its partitions move
                conn.execute(
                    sql.SQL(statement).format(
                        sql.Identifier(*name.split(".")), sql.Identifier(tablespace)
                    )
                )
        yield database, volume
    finally:
        with connect(database.with_dbname("postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(database.dbname)
                )
            )
            admin.execute(
                sql.SQL("drop tablespace if exists {}").format(sql.Identifier(tablespace))
            )
        subprocess.run(["umount", str(volume)], check=True)


def test_a_full_disk_mid_backfill_fails_cleanly_and_the_rerun_loads(
    small_volume: tuple[Database, Path],
) -> None:
    database, volume = small_volume
    full = _mdq(database, *ARGS)
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert len(errors) == 1, full.stderr
    assert "No space left on device" in errors[0], full.stderr
    # PostgreSQL's HINT and CONTEXT lines stay on the line of their message
    assert not [ln for ln in full.stderr.splitlines() if ln.startswith(("HINT", "CONTEXT"))]
    assert "(DiskFull: could not extend file" in full.stdout  # the series' line says why
    with connect(database) as conn:
        loaded = conn.execute("select count(*) from market_data").fetchone()
        states = conn.execute(
            "select status, error_message from backfill_state_persistent"
        ).fetchall()
        streak = conn.execute(
            "select consecutive_failures, total_failures from symbol_failure_tracking"
        ).fetchall()
    assert loaded is not None and 0 < loaded[0] < CANDLES  # the disk filled mid-way
    assert [s for s, _ in states] == ["failed"]  # closed at once, not left in_progress
    assert "No space left on device" in states[0][1]
    assert streak == [(1, 1)]

    # the operator frees space (here: grows the volume); the rerun loads the rest
    subprocess.run(["mount", "-o", "remount,size=64m", str(volume)], check=True)
    rerun = _mdq(database, *ARGS)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with connect(database) as conn:
        loaded = conn.execute("select count(*), count(distinct ts) from market_data").fetchone()
        statuses = conn.execute(
            "select status from backfill_state_persistent order by created_at"
        ).fetchall()
        streak = conn.execute(
            "select consecutive_failures, total_failures from symbol_failure_tracking"
        ).fetchall()
    assert loaded == (CANDLES, CANDLES)
    assert statuses == [("failed",), ("completed",)]
    assert streak == [(0, 1)]
