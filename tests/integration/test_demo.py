"""`mdq demo`, the main job, run as a user runs it: twice, then compared with `mdq anomalies`.

The shipped files are historical: the demo checks them as of their own end (the newest
candle plus its timeframe), so its headline is the findings in the data (splits, the EURUSD
gap, bad wicks), and staleness — against that instant and against today — is printed apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from mdq.db import Database

pytestmark = pytest.mark.integration

FILES_END = "2026-08-06T14:12:00+00:00"  # the last shipped AAPL 1m candle (14:11) + 1m
STALENESS = ("stale", "future_candle")


def mdq(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env.update({"MDQ_DATABASE_URL": database.url(), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def table_rows(stdout: str) -> set[tuple[str, ...]]:
    return {
        tuple(cell.strip() for cell in line.strip("│ ").split("│"))
        for line in stdout.splitlines()
        if line.startswith("│")
    }


def test_demo_runs_end_to_end_twice_and_its_table_matches_mdq_anomalies(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    first = mdq(database, "demo")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "BTCUSD/1h: completed, fetched 20111, inserted 20111" in first.stdout
    assert "EURUSD/1h: completed, fetched 6225, inserted 6225" in first.stdout
    assert f"as of {FILES_END} (the end of the shipped files, not today" in first.stdout

    second = mdq(database, "demo")
    assert second.returncode == 0, second.stderr[-3000:]
    loaded = [line for line in second.stdout.splitlines() if ": completed, fetched" in line]
    assert len(loaded) == 8
    assert all(", inserted 0, updated 0," in line for line in loaded), loaded
    assert "anomalies: 0 new" in second.stdout
    assert "what-if" not in second.stdout  # recorded: the same instant, not a step back

    # The headline is the data's real findings: the splits, the bad wicks, the vendor's
    # Christmas-morning EURUSD quotes (FX is closed on 25 December: out of session, no gap).
    (headline,) = [line for line in second.stdout.splitlines() if "headline:" in line]
    assert "3 split_suspect (AAPL, MSFT; warn)" in headline
    assert "9 out_of_session (EURUSD; warn)" in headline
    assert " gap " not in headline
    assert "wick_outlier (AAPL, BTCUSD, IBM, MSFT; warn)" in headline
    assert "stale" not in headline
    # Staleness is apart: as of the files' end the daily stocks (2013) are stale; today all.
    (stale_line,) = [line for line in second.stdout.splitlines() if "staleness, apart" in line]
    assert "AAPL/1d" in stale_line and "AAPL/1m" not in stale_line
    assert "   AAPL/1d: last candle 2013-03-01 05:00 UTC" in second.stdout

    listed = mdq(database, "anomalies", "--summary", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    counts = [c for c in json.loads(listed.stdout) if c["anomaly_type"] not in STALENESS]
    total = sum(c["count"] for c in counts)
    assert total > 0
    assert f"{total} findings in the data" in second.stdout
    expected = {
        (c["symbol"], c["timeframe"], c["anomaly_type"], c["severity"], str(c["count"]))
        for c in counts
    }
    assert table_rows(second.stdout) == expected
