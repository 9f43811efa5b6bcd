"""Dedupe on an adopted market_data that has duplicates and therefore no unique key yet."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.dedupe import (
    cleanup_duplicate_records,
    cleanup_log,
    restore_duplicate_records,
    swap_kept_version,
)
from mdq.exceptions import (
    CleanupNotFound,
    DuplicateKeysBlockMigration,
    RestoreConflict,
    SwapRefused,
)
from tests.integration.test_cli_database import run_mdq

pytestmark = pytest.mark.integration

# An adopted table as a team might have it: no key, naive timestamps (UTC wall-clock),
# none of the columns migration 002 adds. Insert order = physical order (ctid).
ADOPTED = """
create table market_data (
    symbol text not null, timeframe text not null, ts timestamp not null,
    open double precision, high double precision, low double precision,
    close double precision, volume double precision
);
insert into market_data values
    ('AAPL', '1d', '2024-01-02 00:00', 100, 101, 99, 100.7, 1200),  -- conflicting, removed
    ('AAPL', '1d', '2024-01-02 00:00', 100, 101, 99, 100.5, 1000),  -- exact copy, removed
    ('AAPL', '1d', '2024-01-02 00:00', 100, 101, 99, 100.5, 1000),  -- last: kept
    ('AAPL', '1d', '2024-01-03 00:00', 100.5, 102, 100, 101, 900),
    ('AAPL', '1d', '2024-01-03 00:00', 100.5, 102, 100, 101, 900),
    ('AAPL', '1d', '2024-01-04 00:00', 101, 103, 100, 102, 800),
    ('MSFT', '1d', '2024-01-02 00:00', 370, 375, 368, 372, 500),
    ('MSFT', '1d', '2024-01-02 00:00', 370, 375, 368, 372, 500);
"""


def rows(conn: psycopg.Connection) -> Counter[tuple[object, ...]]:
    found = conn.execute(
        "select symbol, timeframe, ts::text, open, high, low, close, volume from market_data"
    ).fetchall()
    return Counter(found)


@pytest.fixture()
def adopted(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(ADOPTED)
    return db


def test_preview_apply_restore_then_the_migrations_complete(adopted: Database) -> None:
    with connect(adopted, autocommit=True) as conn:
        with pytest.raises(DuplicateKeysBlockMigration) as blocked:
            apply_migrations(conn)
        assert (blocked.value.duplicate_keys, blocked.value.excess_rows) == (3, 4)
        original = rows(conn)

        preview = cleanup_duplicate_records(conn)
        assert (preview.dry_run, preview.cleanup_id) == (True, None)
        assert (preview.duplicate_keys, preview.rows_to_remove, preview.conflicting_rows) == (
            3,
            4,
            1,
        )
        assert [(g.symbol, g.duplicate_keys, g.rows_to_remove) for g in preview.groups] == [
            ("AAPL", 2, 3),
            ("MSFT", 1, 1),
        ]
        # the preview shows the rows themselves, each next to the row kept for its key
        assert [
            (r.symbol, str(r.ts)[:10], r.reason, r.removed["close"], r.kept["close"])
            for r in preview.preview
        ] == [
            ("AAPL", "2024-01-02", "conflicting_duplicate", 100.7, 100.5),
            ("AAPL", "2024-01-02", "exact_duplicate", 100.5, 100.5),
            ("AAPL", "2024-01-03", "exact_duplicate", 101, 101),
            ("MSFT", "2024-01-02", "exact_duplicate", 372, 372),
        ]
        assert len(cleanup_duplicate_records(conn, preview_rows=2).preview) == 2
        assert rows(conn) == original
        assert conn.execute("select count(*) from duplicate_records_log").fetchone() == (0,)
        only_msft = cleanup_duplicate_records(conn, symbol="MSFT")
        assert (only_msft.duplicate_keys, only_msft.rows_to_remove) == (1, 1)

        applied = cleanup_duplicate_records(conn, dry_run=False)
        assert applied.cleanup_id is not None
        assert applied.rows_to_remove == 4
        after = rows(conn)
        conflicting = ("AAPL", "1d", "2024-01-02 00:00:00", 100, 101, 99, 100.7, 1200)
        assert after == Counter(set(original) - {conflicting})  # one row per key, last kept
        logged = conn.execute(
            "select symbol, timeframe, ts, reason, removed_row->>'close', kept_row->>'close'"
            " from duplicate_records_log where cleanup_id = %s order by symbol, ts, reason",
            (applied.cleanup_id,),
        ).fetchall()
        assert [
            (s, str(ts)[:10], reason, removed, kept) for s, _, ts, reason, removed, kept in logged
        ] == [
            ("AAPL", "2024-01-02", "conflicting_duplicate", "100.7", "100.5"),
            ("AAPL", "2024-01-02", "exact_duplicate", "100.5", "100.5"),
            ("AAPL", "2024-01-03", "exact_duplicate", "101", "101"),
            ("MSFT", "2024-01-02", "exact_duplicate", "372", "372"),
        ]
        assert sum(after.values()) + len(logged) == sum(original.values())

        assert restore_duplicate_records(conn, applied.cleanup_id) == 4
        assert rows(conn) == original
        with pytest.raises(CleanupNotFound):
            restore_duplicate_records(conn, applied.cleanup_id)

        second = cleanup_duplicate_records(conn, dry_run=False)
        assert second.rows_to_remove == 4
        done = [m.name for m in apply_migrations(conn)]
        assert done[0] == "002_market_data.sql"
        kind = conn.execute(
            "select data_type from information_schema.columns"
            " where table_name = 'market_data' and column_name = 'ts'"
        ).fetchone()
        assert kind == ("timestamp with time zone",)
        # The restored rows went to the end of the table, so this time the 100.7 version
        # (physically last) was kept and both 100.5 rows were removed as conflicting.
        assert second.conflicting_rows == 2
        # the key holds one row: a conflicting version cannot come back beside the kept one
        with pytest.raises(RestoreConflict) as conflict:
            restore_duplicate_records(conn, str(second.cleanup_id))
        assert conflict.value.conflicting_rows == 2
        assert sum(rows(conn).values()) == 4

        # ... but one can be kept instead (which one, when there are two), and swapped back
        def aapl_close() -> object:
            return conn.execute(
                "select close, volume from market_data"
                " where symbol = 'AAPL' and ts = '2024-01-02T00:00:00Z'"
            ).fetchall()

        assert aapl_close() == [(100.7, 1200.0)]
        with pytest.raises(SwapRefused, match="several removed versions"):
            swap_kept_version(conn, str(second.cleanup_id))
        logged = cleanup_log(conn, str(second.cleanup_id))
        choice = next(r.log_id for r in logged if r.reason == "conflicting_duplicate")
        swap_id, swapped = swap_kept_version(conn, str(second.cleanup_id), choice)
        assert (swapped, aapl_close()) == (1, [(100.5, 1000.0)])
        (logged_swap,) = cleanup_log(conn, swap_id)
        assert (logged_swap.reason, logged_swap.removed["close"], logged_swap.kept["close"]) == (
            "swapped",
            100.7,
            100.5,
        )
        # what is left of the cleanup now equals the kept rows: already there, marked restored
        assert restore_duplicate_records(conn, str(second.cleanup_id)) == 0
        assert all(r.restored_at is not None for r in cleanup_log(conn, str(second.cleanup_id)))
        # and the swap is undone by swapping its id
        swap_kept_version(conn, swap_id)
        assert aapl_close() == [(100.7, 1200.0)]
        with pytest.raises(CleanupNotFound):
            swap_kept_version(conn, swap_id)
        assert sum(rows(conn).values()) == 4


def test_the_latest_ingested_row_is_kept_whatever_its_position(
    make_database: Callable[[], Database],
) -> None:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(
            """
            create table market_data (
                symbol text, timeframe text, ts timestamptz, open float8, high float8,
                low float8, close float8, volume float8, ingested_at timestamptz
            );
            insert into market_data values
                ('BTCUSD', '1h', '2024-01-01T00:00Z', 1, 2, 1, 2, 5, '2024-01-01T02:00Z'),
                ('BTCUSD', '1h', '2024-01-01T00:00Z', 1, 2, 1, 1.5, 3, '2024-01-01T01:00Z');
            """
        )
        with pytest.raises(DuplicateKeysBlockMigration):
            apply_migrations(conn)
        report = cleanup_duplicate_records(conn, dry_run=False)
        assert report.conflicting_rows == 1
        assert conn.execute("select close, volume from market_data").fetchall() == [(2.0, 5.0)]


def test_mdq_dedupe_works_while_the_unique_key_is_blocked(adopted: Database) -> None:
    env = {"MDQ_DATABASE_URL": adopted.url()}
    preview = run_mdq("dedupe", env=env)
    assert preview.returncode == 0, preview.stderr
    assert "would remove 4 row(s) for 3 key(s) (1 with values differing" in preview.stdout
    assert "rows to remove (4 of 4)" in preview.stdout
    assert "100/101/99/100.7/1200" in preview.stdout
    assert "waits until they are removed" in preview.stderr

    applied = run_mdq("dedupe", "--apply", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "removed 4 row(s) for 3 key(s)" in applied.stdout
    assert "applied migration 002_market_data.sql" in applied.stderr
    cleanup_id = applied.stdout.split("cleanup id: ")[1].split()[0]

    # the key exists now, so the conflicting version cannot come back: a clear error, status 2
    restore = run_mdq("dedupe", "--restore", cleanup_id, env=env)
    assert restore.returncode == 2
    assert f"cannot restore cleanup {cleanup_id}" in restore.stderr
    assert f"mdq dedupe --swap {cleanup_id}" in restore.stderr
    assert "Traceback" not in restore.stderr
    swapped = run_mdq("dedupe", "--swap", cleanup_id, env=env)
    assert swapped.returncode == 0, swapped.stderr
    assert "swapped 1 key(s)" in swapped.stdout
    listed = run_mdq("dedupe", "--log", cleanup_id, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("exact_duplicate") == 3
    assert "100/101/99/100.7/1200" in listed.stdout
