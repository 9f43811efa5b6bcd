"""Migrations against a real PostgreSQL: idempotent, and adopting an existing market_data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations, available_migrations
from mdq.exceptions import DuplicateKeysBlockMigration

pytestmark = pytest.mark.integration

SCHEMA_SNAPSHOT = """
select 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
from information_schema.columns where table_schema = 'public'
union all
select 'index', indexname || ' ' || indexdef from pg_indexes where schemaname = 'public'
union all
select 'constraint', conname || ' ' || pg_get_constraintdef(oid)
from pg_constraint where connamespace = 'public'::regnamespace
order by 1, 2
"""


def _snapshot(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in conn.execute(SCHEMA_SNAPSHOT).fetchall()]


def test_migrations_applied_twice_change_nothing(make_database: Callable[[], Database]) -> None:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        first = apply_migrations(conn)
        assert [m.version for m in first] == [m.version for m in available_migrations()]
        before = _snapshot(conn)
        assert apply_migrations(conn) == []
        assert _snapshot(conn) == before
        recorded = conn.execute("select version from mdq_schema_migrations order by 1").fetchall()
        assert [v for (v,) in recorded] == [m.version for m in first]


def test_schema_has_seed_tables_and_their_indexes(conn: psycopg.Connection) -> None:
    tables = {
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
        ).fetchall()
    }
    assert {
        "market_data",
        "instruments",
        "corporate_actions",
        "trading_sessions",
        "backfill_state_persistent",
        "data_anomalies",
        "duplicate_records_log",
        "symbol_failure_tracking",
        "quarantined_candles",
    } <= tables
    indexes = {
        name
        for (name,) in conn.execute(
            "select indexname from pg_indexes where schemaname = 'public'"
        ).fetchall()
    }
    assert {
        "market_data_symbol_timeframe_ts_key",
        "uq_backfill_state_one_active",
        "idx_backfill_state_status",
        "idx_data_anomalies_symbol",
        "idx_data_anomalies_type",
        "idx_duplicate_records_log_cleanup",
        "idx_symbol_failure_tracking_failures",
    } <= indexes
    ts_type = conn.execute(
        "select data_type from information_schema.columns"
        " where table_name = 'market_data' and column_name = 'ts'"
    ).fetchone()
    assert ts_type == ("timestamp with time zone",)


def test_market_data_rejects_a_second_row_for_one_key(conn: psycopg.Connection) -> None:
    row = ("KEYTEST", "stock", "1d", datetime(2024, 1, 2, 5, tzinfo=UTC), 1, 1, 1, 1, 10)
    insert = (
        "insert into market_data (symbol, asset_class, timeframe, ts, open, high, low, close,"
        " volume) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    conn.execute(insert, row)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, row)
    conn.execute("delete from market_data where symbol = 'KEYTEST'")


LEGACY_TABLE = """
create table market_data (
    id serial primary key,
    symbol varchar(20) not null,
    timeframe varchar(5) not null,
    ts timestamp not null,
    open numeric, high numeric, low numeric, close numeric, volume numeric
)
"""
LEGACY_ROWS = [
    ("OLD", "1h", datetime(2024, 3, 1, 14, 0), 10, 11, 9, 10.5, 100),
    ("OLD", "1h", datetime(2024, 3, 1, 15, 0), 10.5, 11, 10, 10.8, 120),
    ("OLD", "1h", datetime(2024, 3, 1, 16, 0), 10.8, 11.2, 10.6, 11.0, 90),
]
LEGACY_INSERT = (
    "insert into market_data (symbol, timeframe, ts, open, high, low, close, volume)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def test_adopts_existing_market_data_without_losing_rows(
    make_database: Callable[[], Database],
) -> None:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(LEGACY_TABLE)
        with conn.cursor() as cur:
            cur.executemany(LEGACY_INSERT, LEGACY_ROWS)
        apply_migrations(conn)
        rows = conn.execute(
            "select id, symbol, ts, close, is_final, source from market_data order by ts"
        ).fetchall()
        assert [(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in rows] == [
            (1, "OLD", datetime(2024, 3, 1, 14, tzinfo=UTC), 10.5, True, None),
            (2, "OLD", datetime(2024, 3, 1, 15, tzinfo=UTC), 10.8, True, None),
            (3, "OLD", datetime(2024, 3, 1, 16, tzinfo=UTC), 11.0, True, None),
        ]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(LEGACY_INSERT, LEGACY_ROWS[0])


def test_duplicates_in_adopted_table_stop_with_count_and_delete_nothing(
    make_database: Callable[[], Database],
) -> None:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(LEGACY_TABLE)
        with conn.cursor() as cur:
            # key 14:00 three times, key 15:00 twice: 2 duplicated keys, 3 extra rows
            cur.executemany(LEGACY_INSERT, LEGACY_ROWS + LEGACY_ROWS[:2] + LEGACY_ROWS[:1])
        with pytest.raises(DuplicateKeysBlockMigration) as info:
            apply_migrations(conn)
        assert (info.value.duplicate_keys, info.value.excess_rows) == (2, 3)
        assert "mdq dedupe" in str(info.value)
        assert conn.execute("select count(*) from market_data").fetchone() == (6,)
        applied = conn.execute("select version from mdq_schema_migrations").fetchall()
        assert applied == [(1,)], "the bookkeeping tables stay, so `mdq dedupe` can log removals"

        conn.execute(
            "delete from market_data where id not in"
            " (select min(id) from market_data group by symbol, timeframe, ts)"
        )
        assert [m.version for m in apply_migrations(conn)] == [2] + [
            m.version for m in available_migrations() if m.version > 2
        ]
        assert conn.execute("select count(*) from market_data").fetchone() == (3,)
