"""Vendors' conventions (issue 10 points 1, 2): calendars for every instrument, and labels.

Each test uses its own symbols in a database of this module's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from mdq.backfill_core import run_backfill
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"


@pytest.fixture(scope="module")
def conv_database(make_database: Callable[[], Database]) -> Database:
    """A migrated database for this module only."""
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def cconn(conv_database: Database) -> Iterator[psycopg.Connection]:
    with connect(conv_database, autocommit=True) as connection:
        yield connection


def _mdq(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDQ_DATABASE_URL": database.url(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_every_asset_class_gets_a_calendar_and_says_how(
    conv_database: Database, cconn: psycopg.Connection, tmp_path: Path
) -> None:
    # daily candles at local midnight of each exchange (Mon 2024-03-11, Tue 03-12)
    path = tmp_path / "world.csv"
    path.write_text(
        HEADER
        + "VOD.L,stock,1d,2024-03-11T00:00:00Z,70,71,69,70.5,1000\n"
        + "VOD.L,stock,1d,2024-03-12T00:00:00Z,70,71,69,70.5,1000\n"
        + "VFIAX,fund,1d,2024-03-11T04:00:00Z,470,471,469,470.5,0\n"
        + "VFIAX,fund,1d,2024-03-12T04:00:00Z,470,471,469,470.5,0\n"
        + "FTSE,index,1d,2024-03-11T00:00:00Z,7700,7750,7650,7720,0\n"
        + "FTSE,index,1d,2024-03-12T00:00:00Z,7720,7760,7700,7740,0\n"
        + "WHEAT,commodity,1d,2024-03-11T04:00:00Z,5.5,5.6,5.4,5.55,100\n"
        + "WHEAT,commodity,1d,2024-03-12T04:00:00Z,5.5,5.6,5.4,5.55,100\n"
    )
    results = run_backfill(
        "csv", path=str(path), database=conv_database, notifier=RecordingNotifier()
    )
    assert sorted((r.symbol, r.status, r.inserted, r.quarantined) for r in results) == [
        ("FTSE", "completed", 2, 0),
        ("VFIAX", "completed", 2, 0),
        ("VOD.L", "completed", 2, 0),
        ("WHEAT", "completed", 2, 0),
    ]
    listed = _mdq(conv_database, "instruments", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {
        r["symbol"]: (r["asset_class"], r["calendar"], r["calendar_source"])
        for r in json.loads(listed.stdout)
    }
    assert rows == {
        "FTSE": ("index", "XLON", "inferred"),
        "VFIAX": ("fund", "XNYS", "inferred"),
        "VOD.L": ("stock", "XLON", "suffix"),
        "WHEAT": ("commodity", "XNYS", "inferred"),
    }
    table = _mdq(conv_database, "instruments", "list")
    assert table.returncode == 0
    line = next(row for row in table.stdout.splitlines() if "VOD.L" in row)
    assert [cell.strip() for cell in line.split("│")[1:-1]][5:8] == ["stock", "XLON", "suffix"]
