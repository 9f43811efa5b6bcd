"""Fault suite, concurrency (issue 16, point 9): one ``mdq check`` at a time per database.

Two checks at once used to fail one of them (``relation ... already exists``: both built dbt's
tables) and inflate ``times_seen``. Now the second one says another check is running (one
line, exit 2) and the counters stay exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from mdq.db import Database, connect
from mdq.db.locks import check_lock
from mdq.db.migrate import apply_migrations
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

BAD_TICK = """
TICK,stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
TICK,stock,1d,2024-06-07T04:00:00Z,120.10,121.20,119.60,120.40,4200000
TICK,stock,1d,2024-06-10T04:00:00Z,120.50,121.30,60.20,60.90,4300000
TICK,stock,1d,2024-06-11T04:00:00Z,120.90,121.50,120.60,121.20,4100000
TICK,stock,1d,2024-06-12T04:00:00Z,121.20,121.90,120.80,121.50,3900000
"""


def _check(database: Database) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    env.update({"MDQ_DATABASE_URL": database.url(), "MDQ_DBT_SCHEMA": "concurrent"})
    return subprocess.Popen(
        [sys.executable, "-m", "mdq.cli", "check"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_one_check_at_a_time_and_times_seen_stays_exact(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, BAD_TICK)
    # while another run holds the lock, a check refuses at once
    with check_lock(database):
        held = _check(database)
        _, err = held.communicate(timeout=300)
    assert held.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "another mdq check is running on " in lines[0], err
    # two at once: one runs, the other says another check is running
    pair = [_check(database), _check(database)]
    outputs = [p.communicate(timeout=600) for p in pair]
    codes = sorted(p.returncode for p in pair)
    assert codes == [1, 2], outputs
    refused = next(err for (_, err), p in zip(outputs, pair, strict=True) if p.returncode == 2)
    assert "another mdq check is running on " in refused
    with connect(database) as conn:
        seen = conn.execute(
            "select anomaly_type, times_seen from data_anomalies"
            " where symbol = 'TICK' and anomaly_type = 'outlier'"
        ).fetchall()
    assert seen == [("outlier", 1)]  # the refused run counted nothing


def test_dedupe_apply_gives_up_on_a_held_lock_instead_of_waiting_forever(
    make_database: Callable[[], Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cleanup's transaction carries lock and statement timeouts (issue 16, point 8)."""
    import time

    import psycopg.errors

    from mdq.db import dedupe as dedupe_db
    from mdq.dedupe import cleanup_duplicate_records

    monkeypatch.setitem(dedupe_db.CLEANUP_TIMEOUTS, "lock_timeout", "1s")
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
    with connect(database) as holder, connect(database, autocommit=True) as conn:
        holder.execute("lock table market_data in access exclusive mode")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            cleanup_duplicate_records(conn, dry_run=False)
        assert time.monotonic() - started < 10
        settings = conn.execute(
            "select current_setting('lock_timeout'), current_setting('statement_timeout')"
        ).fetchone()
    # set local: the session's own settings are untouched after the transaction
    assert settings == ("0", "0")
