"""Fault suite, backfill outages (issue 16, point 4), run as a user runs ``mdq backfill``.

- the database stopped mid-backfill: one line, exit 2; the next run (after the short,
  heartbeat-renewed lease) closes the dead execution as failed, counts it in the streak, and
  loads everything;
- a run that could only skip (another backfill holds every series) says so and exits 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from mdq import embedded
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations

pytestmark = pytest.mark.integration

ARGS = ["backfill", "--provider", "synthetic", "--symbols", "OUT1", "--timeframe", "1m",
        "--start", "2024-01-01", "--end", "2024-01-11", "--no-prefect"]  # fmt: skip
#: 10 days of 1m candles. The run the server is stopped under writes 100 per transaction (144
#: commits, ~4 s here): long enough to stop the server under it even on a quiet machine, where
#: 500 per transaction loaded everything in ~1 s. The rerun writes them in one.
CANDLES = 10 * 24 * 60


def _env(home: Path, chunk_rows: int = 100) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    env.update(
        {
            "MDQ_HOME": str(home),
            "MDQ_BACKFILL_CHUNK_ROWS": str(chunk_rows),
            "MDQ_BACKFILL_LEASE_SECONDS": "2",
        }
    )
    return env


def _query(home: Path, sql: str) -> list[tuple[object, ...]]:
    socket_dir, _ = embedded.start(home)
    with psycopg.connect(host=socket_dir, user="postgres", dbname="mdq") as conn:
        return conn.execute(sql).fetchall()


def test_database_stopped_mid_backfill_fails_cleanly_and_the_rerun_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = subprocess.Popen(
        [sys.executable, "-m", "mdq.cli", *ARGS],
        env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # wait until some chunks are in, then stop the server under the running backfill
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if embedded.is_running(home):
            try:
                done = _query(home, "select count(*) from market_data")[0][0]
            except psycopg.Error:
                continue
            if done >= 1000:
                break
    assert first.poll() is None, "the backfill ended before the server could be stopped"
    embedded.stop(home)
    _, err = first.communicate(timeout=120)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert first.returncode == 2, err
    assert len(errors) == 1, err  # besides progress and log lines: one error line
    assert "lost during the backfill of OUT1/1m" in errors[0], err
    assert "Traceback" not in err
    time.sleep(2.5)  # the lease (2 s) has expired: nothing renews it any more
    second = subprocess.run(
        [sys.executable, "-m", "mdq.cli", *ARGS],
        env=_env(home, chunk_rows=CANDLES),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    try:
        states = _query(
            home,
            "select status, coalesce(error_message, '') from backfill_state_persistent"
            " order by created_at",
        )
        streak = _query(
            home,
            "select consecutive_failures, total_failures from symbol_failure_tracking",
        )
        loaded = _query(home, "select count(*), count(distinct ts) from market_data")
    finally:
        embedded.stop(home)
    assert [s for s, _ in states] == ["failed", "completed"]
    assert "worker presumed dead" in states[0][1]
    assert streak == [(0, 1)]  # the dead run counted once, the rerun's success reset it
    assert loaded == [(CANDLES, CANDLES)]


def test_a_run_that_skipped_every_series_says_so_and_exits_2(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()  # on the session's server: this fault needs no server of its own
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        conn.execute(
            "insert into backfill_state_persistent (execution_id, symbol, timeframe, status,"
            " provider, lease_expires_at) values (gen_random_uuid(), 'OUT1', '1m',"
            " 'in_progress', 'synthetic', now() + interval '10 minutes')"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    env.update({"MDQ_DATABASE_URL": database.url(), "MDQ_BACKFILL_LEASE_SECONDS": "600"})
    result = subprocess.run(
        [sys.executable, "-m", "mdq.cli", *ARGS],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "OUT1/1m skipped" in result.stdout
    assert "error: every series was skipped (1): another backfill holds them" in result.stderr
