"""`mdq demo`, the main job, run as a user runs it: twice, then compared with `mdq anomalies`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from mdq.db import Database

pytestmark = pytest.mark.integration

AS_OF = "2026-08-06T15:00:00Z"  # shortly after the last shipped AAPL 1m candle


def mdq(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env.update({"MDQ_DATABASE_URL": database.url(), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_demo_runs_end_to_end_twice_and_its_table_matches_mdq_anomalies(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    first = mdq(database, "demo", "--as-of", AS_OF)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "BTCUSD/1h: completed, fetched 20111, inserted 20111" in first.stdout
    assert "EURUSD/1h: completed, fetched 6225, inserted 6225" in first.stdout

    second = mdq(database, "demo", "--as-of", AS_OF)
    assert second.returncode == 0, second.stderr[-3000:]
    loaded = [line for line in second.stdout.splitlines() if ": completed, fetched" in line]
    assert len(loaded) == 8
    assert all(", inserted 0, updated 0," in line for line in loaded), loaded
    assert "anomalies: 0 new" in second.stdout

    listed = mdq(database, "anomalies", "--summary", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    counts = json.loads(listed.stdout)
    total = sum(c["count"] for c in counts)
    assert total > 0
    assert f"{total} open anomalies" in second.stdout
    table_rows = {
        tuple(cell.strip() for cell in line.strip("│ ").split("│"))
        for line in second.stdout.splitlines()
        if line.startswith("│")
    }
    expected = {
        (c["symbol"], c["timeframe"], c["anomaly_type"], c["severity"], str(c["count"]))
        for c in counts
    }
    assert table_rows == expected
