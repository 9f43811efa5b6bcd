"""The calendar checks' shared sessionized pass (issue 15 item 1): int_candles_sessionized.

Real PostgreSQL, real dbt, live runs through :func:`mdq.quality.run_quality_checks`, one
module database used in order:

1. every calendar check depends on the model in dbt's manifest and reads it (compiled SQL);
2. a full run builds the table whole: one row per candle;
3. an incremental run after a change to one series rewrites that series only, from its
   read_from on: the other series' rows and the changed series' older rows are the same row
   versions (xmin), a deleted candle has left the table, new candles are in it, and the table
   equals what a full rebuild writes;
4. stored candles without calendar coverage that have coverage now are re-sessionized by the
   next incremental run although their series did not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.check_scope import CONTEXT_CANDLES
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import DBT_PROJECT_DIR
from mdq.quality import run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "mdq_sess"
TABLE = f'"{SCHEMA}"."int_candles_sessionized"'
CALENDAR_CHECKS = (
    "candle_gaps",
    "candle_staleness",
    "duplicate_candles",
    "misaligned_candles",
    "out_of_session_candles",
)
#: two crypto series on different venues (exchanges): a change to one does not widen the
#: incremental scope to the other
INSTRUMENTS = [("AAA", "crypto", "EX1", "24/7"), ("BBB", "crypto", "EX2", "24/7")]
START = datetime(2026, 7, 1, tzinfo=UTC)
HOURS = 72
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def _csv(symbol: str, hours: range) -> str:
    lines = ["symbol,asset_class,timeframe,ts,open,high,low,close,volume"]
    for h in hours:
        ts = (START + timedelta(hours=h)).isoformat()
        lines.append(f"{symbol},crypto,1h,{ts},100,101,99,100.5,10")
    return "\n".join(lines) + "\n"


def _stored(conn: psycopg.Connection) -> dict[tuple[str, datetime], tuple[Any, ...]]:
    """(symbol, ts) → (xmin, every column) of the stored table."""
    rows = conn.execute(
        f"select symbol, ts, xmin::text, t.* from {TABLE} as t order by symbol, ts"  # noqa: S608
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _keys(conn: psycopg.Connection) -> set[tuple[str, datetime]]:
    return set(conn.execute("select symbol, ts from market_data").fetchall())


def _run(db: Database, seen_at: datetime, **kwargs: Any) -> Any:
    report = run_quality_checks(db, SCHEMA, use_prefect=False, seen_at=seen_at, **kwargs)
    assert report.verdict != "broken", report.broken
    return report


@pytest.fixture(scope="module")
def sdb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        apply_migrations(conn)
        conn.cursor().executemany(
            "insert into instruments (symbol, asset_class, exchange, calendar)"
            " values (%s, %s, %s, %s)",
            INSTRUMENTS,
        )
        for symbol, *_ in INSTRUMENTS:
            insert_candles(conn, _csv(symbol, range(HOURS)))
    return db


def test_a_full_run_builds_the_table_and_every_calendar_check_reads_it(sdb: Database) -> None:
    report = _run(sdb, T0)
    assert report.scope.startswith("full"), report.scope
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    tests = {
        node["test_metadata"]["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node.get("test_metadata", {}).get("name") in CALENDAR_CHECKS
        and node["attached_node"] == "model.mdq.stg_market__candles"
    }
    assert set(tests) == set(CALENDAR_CHECKS)
    for name, node in tests.items():
        assert "model.mdq.int_candles_sessionized" in node["depends_on"]["nodes"], name
        compiled = (
            DBT_PROJECT_DIR
            / "target/compiled/mdq/models/staging/market/_market__models.yml"
            / f"{node['name']}.sql"
        ).read_text()
        assert '"int_candles_sessionized"' in compiled, name
        # no own pass: the candles are not mapped to their session dates again
        assert "day_rollover_hours" not in compiled or name == "candle_gaps", name
    with connect(sdb, autocommit=True) as conn:
        stored = _stored(conn)
        assert set(stored) == _keys(conn)
        assert all(row[-3:] == (True, True, True) for row in stored.values())  # 24/7, on grid


def test_an_incremental_run_rewrites_only_the_changed_series_from_read_from(
    sdb: Database,
) -> None:
    with connect(sdb, autocommit=True) as conn:
        before = _stored(conn)
        deleted = START + timedelta(hours=HOURS - 2)
        conn.execute("delete from market_data where symbol = 'AAA' and ts = %s", (deleted,))
        insert_candles(conn, _csv("AAA", range(HOURS, HOURS + 5)))
    t1 = T0 + timedelta(days=1)
    report = _run(sdb, t1)
    assert report.scope == "incremental: 1 series re-read", report.scope
    with connect(sdb, autocommit=True) as conn:
        after = _stored(conn)
        assert set(after) == _keys(conn)
        assert ("AAA", deleted) not in after
        assert ("AAA", START + timedelta(hours=HOURS + 4)) in after
        rewritten = {key for key in after if key in before and after[key][0] != before[key][0]}
        # only AAA, from its read_from (the context candles before the first change) on
        assert {symbol for symbol, _ in rewritten} == {"AAA"}
        first = min(ts for _, ts in rewritten)
        # read_from: CONTEXT_CANDLES before the first change, and as many again before that
        # (the venue's earliest read_from, widened to its context: AAA is its venue)
        assert first == START + timedelta(hours=HOURS - 2 - 2 * CONTEXT_CANDLES)
        assert rewritten == {k for k in before if k[0] == "AAA" and k[1] >= first} - {
            ("AAA", deleted)
        }
        # the hole left by the deleted candle is a gap, found by the incremental run
        gaps = conn.execute(
            "select symbol, ts_start from data_anomalies where check_name = 'candle_gaps'"
            " and last_seen_at = %s",
            (t1,),
        ).fetchall()
        assert gaps == [("AAA", deleted)]
        incremental = {k: v[1:] for k, v in after.items()}
    t2 = T0 + timedelta(days=2)
    _run(sdb, t2, full=True)
    with connect(sdb, autocommit=True) as conn:
        assert {k: v[1:] for k, v in _stored(conn).items()} == incremental


def test_candles_that_gained_calendar_coverage_are_sessionized_again(sdb: Database) -> None:
    """As if BBB's last day had been sessionized before its sessions were enumerated (stored
    without coverage): the next incremental run, for a change to AAA only, re-sessionizes it."""
    from_ts = START + timedelta(hours=HOURS - 24)
    with connect(sdb, autocommit=True) as conn:
        bbb = {k: v[1:] for k, v in _stored(conn).items() if k[0] == "BBB"}
        conn.execute(
            f"update {TABLE} set is_covered = false, is_in_session = false,"  # noqa: S608
            " slot_ordinal = null where symbol = 'BBB' and ts >= %s",
            (from_ts,),
        )
        insert_candles(conn, _csv("AAA", range(HOURS + 5, HOURS + 6)))
        marked = _stored(conn)
    t3 = T0 + timedelta(days=3)
    report = _run(sdb, t3)
    assert report.scope == "incremental: 1 series re-read", report.scope
    with connect(sdb, autocommit=True) as conn:
        uncovered = conn.execute(
            f"select count(*) from {TABLE} where not is_covered or slot_ordinal is null"  # noqa: S608
        ).fetchone()
        assert uncovered == (0,)
        # BBB as it was before: sessionized again, from its first uncovered candle only
        stored = _stored(conn)
        assert {k: v[1:] for k, v in stored.items() if k[0] == "BBB"} == bbb
        rewritten = {
            ts
            for (symbol, ts), v in stored.items()
            if symbol == "BBB" and v[0] != marked[(symbol, ts)][0]
        }
        assert rewritten == {ts for symbol, ts in bbb if ts >= from_ts}
