"""Shards that run at the same time on one database (issue 15 item 5, "past one machine").

``mdq check --shard 1/2`` and ``--shard 2/2`` started together as two processes (real
PostgreSQL, real dbt) both hold their locks at the same instant (seen in ``pg_locks``), each
builds its own dbt schema, and the union of their findings is an unsharded run's, including a
venue outage whose two legs fall in different shards. A run of the whole project started
while they run refuses with the usual one line (exit 2). The lock rules themselves are checked
directly on the database first.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mdq.db import Database, connect
from mdq.db.check_scope import Shard, shard_of, shard_schema
from mdq.db.locks import check_lock, shard_lock_key
from mdq.db.migrate import apply_migrations
from mdq.exceptions import CheckAlreadyRunning
from mdq.quality import run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "par"
#: shard 1 of 2: BTCUSD, XRPUSD; shard 2 of 2: ETHUSD, SOLUSD (first 32 bits of md5, mod 2)
SYMBOLS = ("BTCUSD", "XRPUSD", "ETHUSD", "SOLUSD")
START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 10 * 24
#: symbol → the hourly slots cut out (hours after START)
HOLES = {
    # a venue outage: BTCUSD (shard 1) and ETHUSD (shard 2) miss overlapping hours
    "BTCUSD": range(100, 104),
    "ETHUSD": range(102, 106),
    # a plain gap, alone on the venue
    "SOLUSD": range(150, 153),
}
#: XRPUSD's candle whose high lies below its low (ohlc_integrity)
BAD_HIGH = ("XRPUSD", 60)


def _csv() -> str:
    lines = []
    for number, symbol in enumerate(SYMBOLS):
        price = 100.0 * (number + 1)
        for hour in range(HOURS):
            price *= math.exp(0.004 * math.sin(hour * (number + 1.7)))
            if hour in HOLES.get(symbol, ()):
                continue
            high, low = price * 1.003, price * 0.997
            if (symbol, hour) == BAD_HIGH:
                high = low * 0.99
            ts = (START + timedelta(hours=hour)).isoformat()
            lines.append(f"{symbol},crypto,1h,{ts},{price},{high},{low},{price},{1000 + hour}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sdb(make_database: Callable[[], Database]) -> Database:
    assert [shard_of(s, 2) for s in SYMBOLS] == [0, 0, 1, 1]
    db = make_database()
    with connect(db, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, _csv())
    return db


def test_the_lock_rules_of_shards(sdb: Database) -> None:
    one, two = Shard(1, 2), Shard(2, 2)
    with check_lock(sdb, shard=one), check_lock(sdb, shard=two):
        # both shards hold their locks; the same shard again, a shard of another count and
        # the whole project are refused
        for other in (one, Shard(1, 3), None):
            with pytest.raises(CheckAlreadyRunning, match="another mdq check is running"):
                with check_lock(sdb, shard=other):
                    pass
    with check_lock(sdb):
        with pytest.raises(CheckAlreadyRunning):
            with check_lock(sdb, shard=two):
                pass
    # everything released: another count may run now
    with check_lock(sdb, shard=Shard(3, 3)):
        pass


def _check(database: Database, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    env.update({"MDQ_DATABASE_URL": database.url(), "MDQ_DBT_SCHEMA": SCHEMA, "DBT_QUIET": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "mdq.cli", "check", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _findings(conn: psycopg.Connection, seen_after: datetime) -> dict[tuple[Any, ...], datetime]:
    """(check, type, symbol, timeframe, ts_start) → last_seen_at of the open findings seen
    after ``seen_after``."""
    rows = conn.execute(
        """
        select check_name, anomaly_type, symbol, timeframe, ts_start, last_seen_at
        from data_anomalies
        where status = 'open' and last_seen_at > %s
        """,
        (seen_after,),
    ).fetchall()
    return {tuple(row[:5]): row[5] for row in rows}


def _both_shard_locks_held(conn: psycopg.Connection) -> list[int]:
    """The backends holding the locks of shards 1/2 and 2/2 right now (one snapshot of
    pg_locks), or [] unless both are held."""
    keys = [shard_lock_key(Shard(1, 2)), shard_lock_key(Shard(2, 2))]
    rows = conn.execute(
        """
        select ((classid::bigint << 32) | objid::bigint) as key, pid
        from pg_locks
        where locktype = 'advisory' and granted and objsubid = 1
            and ((classid::bigint << 32) | objid::bigint) = any(%s)
        """,
        (keys,),
    ).fetchall()
    holders = {int(key): int(pid) for key, pid in rows}
    return [holders[key] for key in keys] if len(holders) == 2 else []


def test_two_shard_processes_run_at_once_and_find_what_one_run_finds(sdb: Database) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    whole = run_quality_checks(sdb, SCHEMA, full=True, use_prefect=False)
    assert whole.verdict == "anomalies", whole.summary()
    with connect(sdb, autocommit=True) as conn:
        unsharded = _findings(conn, before)
        assert {k[1] for k in unsharded if k[0] == "candle_gaps"} == {"venue_outage", "gap"}
        venue = {k[2] for k in unsharded if k[1] == "venue_outage"}
        assert venue == {"BTCUSD", "ETHUSD"}  # one leg in each shard
        after_whole = max(unsharded.values())

        shards = [_check(sdb, "--full", "--shard", f"{i}/2") for i in (1, 2)]
        overlap: list[int] = []
        refused: tuple[int, str] | None = None
        deadline = time.monotonic() + 600
        while any(p.poll() is None for p in shards) and time.monotonic() < deadline:
            if not overlap:
                overlap = _both_shard_locks_held(conn)
                if overlap:
                    # the whole project, while both shards run: one line, exit 2
                    whole_run = _check(sdb)
                    _, err = whole_run.communicate(timeout=300)
                    refused = (whole_run.returncode, err)
            time.sleep(0.05)
        outputs = [p.communicate(timeout=60) for p in shards]
        codes = [p.returncode for p in shards]
        assert codes == [1, 1], outputs  # both ran and report their open errors
        assert len(set(overlap)) == 2, "never saw both shard locks held at once"
        assert refused is not None and refused[0] == 2, refused
        lines = refused[1].strip().splitlines()
        assert len(lines) == 1 and "another mdq check is running on " in lines[0], refused

        by_shards = _findings(conn, after_whole)
        # the union of the shards' findings is the unsharded run's, each seen by its shard
        assert set(by_shards) == set(unsharded)
        seen_at = set(by_shards.values())
        assert len(seen_at) == 2  # two runs
        for when in seen_at:
            symbols = {k[2] for k, v in by_shards.items() if v == when}
            owners = {shard_of(s, 2) for s in symbols}
            assert len(owners) == 1, symbols
        # each shard built its own schema, whose models hold only its symbols
        for index in (1, 2):
            schema = shard_schema(SCHEMA, Shard(index, 2))
            for model in ("int_candle_features_computed", "int_candles_sessionized"):
                held = conn.execute(
                    sql.SQL("select distinct symbol from {} order by 1").format(
                        sql.Identifier(schema, model)
                    )
                ).fetchall()
                assert [r[0] for r in held] == sorted(
                    s for s in SYMBOLS if shard_of(s, 2) == index - 1
                ), (schema, model)


def test_a_new_shard_count_takes_over_the_findings_of_the_symbols_it_now_owns(
    sdb: Database,
) -> None:
    """After the runs above (a whole-project run, then shards of 2), the checks move to 3
    shards: XRPUSD moves from shard 1/2 to 2/3. Its ohlc_integrity finding, recorded by 1/2, is
    repaired in the data and resolved by 2/3's first run, which is incremental from the
    whole-project run and builds its new schema from scratch; nothing but that candle's
    findings is resolved."""
    assert (shard_of("XRPUSD", 2), shard_of("XRPUSD", 3)) == (0, 1)
    symbol, hour = BAD_HIGH
    bad_ts = START + timedelta(hours=hour)
    with connect(sdb, autocommit=True) as conn:
        (bad_id,) = conn.execute(
            """
            select anomaly_id from data_anomalies
            where status = 'open' and check_name = 'ohlc_integrity' and symbol = %s
            """,
            (symbol,),
        ).fetchone() or (None,)
        assert bad_id is not None
        open_before = {
            row[0]
            for row in conn.execute("select anomaly_id from data_anomalies where status = 'open'")
        }
        conn.execute(
            "update market_data set high = greatest(open, close) * 1.003"
            " where symbol = %s and timeframe = '1h' and ts = %s",
            (symbol, bad_ts),
        )
    started = datetime.now(UTC)
    seen: dict[int, datetime] = {}
    for index in (1, 2, 3):
        seen[index] = started + timedelta(seconds=index)
        report = run_quality_checks(
            sdb, SCHEMA, shard=Shard(index, 3), seen_at=seen[index], use_prefect=False
        )
        assert report.verdict != "broken", report.summary()
        assert report.scope.startswith("incremental: "), report.scope
        if index != 2:
            assert report.resolved == 0, report.summary()
        else:
            resolved_by_two = report.resolved
    with connect(sdb, autocommit=True) as conn:
        resolved = conn.execute(
            """
            select anomaly_id, resolved_at, symbol, ts_start <= %s and %s <= ts_end
            from data_anomalies
            where resolved_at >= %s
            """,
            (bad_ts, bad_ts, started),
        ).fetchall()
        assert bad_id in {row[0] for row in resolved}
        assert len(resolved) == resolved_by_two
        assert {row[1:] for row in resolved} == {(seen[2], symbol, True)}  # that candle's
        still_open = {
            row[0]
            for row in conn.execute("select anomaly_id from data_anomalies where status = 'open'")
        }
        assert open_before - still_open == {row[0] for row in resolved}
        held = conn.execute(
            sql.SQL("select distinct symbol from {} order by 1").format(
                sql.Identifier(shard_schema(SCHEMA, Shard(2, 3)), "int_candle_features_computed")
            )
        ).fetchall()
        assert [r[0] for r in held] == sorted(s for s in SYMBOLS if shard_of(s, 3) == 1)
