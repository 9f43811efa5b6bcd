"""Fault suite, killed clients (issue 16, points 4 and 8), run as a user runs ``mdq``.

- ``mdq dedupe --apply`` killed by SIGKILL while its statement runs (holding the write lock on
  market_data): the server notices the dead client and releases the lock within seconds (the
  cleanup's ``client_connection_check_interval``), well before its ``lock_timeout`` (30 s) or
  ``statement_timeout``; nothing was removed, and a second ``--apply`` right after completes
  with every row accounted for (kept + logged = the rows before, by count and checksum);
- ``mdq backfill`` killed by SIGKILL mid-load, then rerun: market_data is byte-identical to a
  clean load of the same window (every column but the write times ``ingested_at`` and
  ``updated_at``, which are ``now()`` of whichever run wrote the row).

Both work on fresh databases of the session's test server; no extra server is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.exceptions import DuplicateKeysBlockMigration

pytestmark = pytest.mark.integration


def _mdq(database: Database, *args: str, **env: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    full.update({"MDQ_DATABASE_URL": database.url(), **env})
    return subprocess.Popen(
        [sys.executable, "-m", "mdq.cli", *args],
        env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


# -- dedupe --------------------------------------------------------------------------------------

#: An adopted market_data with duplicates (so no unique key yet): 4 symbols x 5,000 minutes,
#: every 4th key stored twice, half of those copies with a different close. Values are exact
#: binary fractions, so their text is the same in float8 and in the JSON of the cleanup log.
ADOPTED = """
create table market_data (
    symbol text not null, timeframe text not null, ts timestamp not null,
    open double precision, high double precision, low double precision,
    close double precision, volume double precision
);
insert into market_data
select 'K' || (g % 4), '1m', timestamp '2024-01-01' + (g / 4) * interval '1 minute',
       100 + (g % 97) * 0.25, 101 + (g % 97) * 0.25, 99 + (g % 97) * 0.25,
       100.5 + (g % 97) * 0.25, 1000 + g
from generate_series(0, 19999) as g;
insert into market_data
select symbol, timeframe, ts, open, high, low,
       close + case when extract(minute from ts)::int % 2 = 0 then 0.5 else 0 end, volume
from market_data
where extract(minute from ts)::int % 4 = 0;
"""
KEYS = 20_000
EXTRA = 5_000

#: One line per row: the original columns, ts as epoch seconds (a naive ts is UTC wall-clock).
ROW_TEXT = (
    "format('%s|%s|%s|%s|%s|%s|%s|%s', symbol, timeframe, extract(epoch from ts)::bigint,"
    " open, high, low, close, volume)"
)
LOGGED_TEXT = (
    "format('%s|%s|%s|%s|%s|%s|%s|%s', r->>'symbol', r->>'timeframe',"
    " extract(epoch from (r->>'ts')::timestamp)::bigint,"
    " r->>'open', r->>'high', r->>'low', r->>'close', r->>'volume')"
)


def _rows_and_checksum(conn: psycopg.Connection, *, with_log: bool) -> tuple[int, str]:
    """(rows, md5 of the sorted row lines) of market_data, plus the logged rows if asked."""
    logged = (
        f" union all select {LOGGED_TEXT} from"
        " (select removed_row as r from duplicate_records_log) as l"
        if with_log
        else ""
    )
    row = conn.execute(
        f"select count(*), md5(string_agg(line, E'\\n' order by line)) from"
        f" (select {ROW_TEXT} as line from market_data{logged}) as lines"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _lock_holder(conn: psycopg.Connection) -> tuple[int, str] | None:
    """(pid, state) of a backend other than ours holding a write lock on market_data; the
    state is ``waiting`` while its statement runs, blocked on another lock."""
    row = conn.execute(
        """
        select l.pid, case when a.wait_event_type = 'Lock' then 'waiting' else a.state end
        from pg_locks as l
        join pg_stat_activity as a on a.pid = l.pid
        where l.locktype = 'relation'
            and l.relation = 'market_data'::regclass
            and l.granted
            and l.mode in ('ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
            and l.pid <> pg_backend_pid()
        """
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def test_dedupe_apply_killed_mid_statement_releases_the_lock_and_loses_no_row(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    with connect(database, autocommit=True) as conn:
        conn.execute(ADOPTED)
        with pytest.raises(DuplicateKeysBlockMigration):
            apply_migrations(conn)  # everything but the unique key, as mdq dedupe would
        before = _rows_and_checksum(conn, with_log=False)
    assert before[0] == KEYS + EXTRA

    # Someone's transaction holds a share lock on the cleanup log: the --apply takes the write
    # lock on market_data, plans, and then its statement writing the log runs (waiting) until
    # it is killed. A statement slowed by a large table would be held the same way.
    with connect(database) as blocker, connect(database, autocommit=True) as watch:
        blocker.execute("lock table duplicate_records_log in share mode")
        first = _mdq(database, "dedupe", "--apply")
        deadline = time.monotonic() + 120
        holder = None
        while time.monotonic() < deadline and first.poll() is None:
            holder = _lock_holder(watch)
            if holder is not None and holder[1] == "waiting":
                break
            time.sleep(0.05)
        assert holder is not None and holder[1] == "waiting", first.communicate()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()

        def backend_alive() -> bool:
            row = watch.execute(
                "select count(*) from pg_stat_activity where pid = %s", (holder[0],)
            ).fetchone()
            return row != (0,)

        while (_lock_holder(watch) is not None or backend_alive()) and (
            time.monotonic() - killed_at < 60
        ):
            time.sleep(0.1)
        released_after = time.monotonic() - killed_at
        assert _lock_holder(watch) is None
        assert not backend_alive()
        # the dead client was noticed (2 s checks), not waited out by the 30 s lock_timeout
        assert released_after < 15, f"the write lock stayed held {released_after:.1f} s"
        # nothing was removed nor logged: the transaction rolled back
        assert _rows_and_checksum(watch, with_log=True) == before
        blocker.rollback()

    second = _mdq(database, "dedupe", "--apply")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"removed {EXTRA} row(s) for {EXTRA} key(s)" in out
    with connect(database, autocommit=True) as conn:
        kept = conn.execute("select count(*), count(distinct (symbol, ts)) from market_data")
        assert kept.fetchone() == (KEYS, KEYS)
        # every row is either kept or logged in full: same count, same checksum as before
        assert _rows_and_checksum(conn, with_log=True) == before


# -- backfill ------------------------------------------------------------------------------------

#: 5 days of one 1m series (the window crosses a month: two partitions). The killed run writes
#: 100 candles per transaction (72 commits, ~2 s here: time to kill it after 10 of them even on a
#: quiet machine); the clean load and the rerun write them in one.
BACKFILL = ["backfill", "--provider", "synthetic", "--symbols", "KILL1", "--timeframe", "1m",
            "--start", "2024-02-27", "--end", "2024-03-03", "--no-prefect"]  # fmt: skip
CANDLES = 5 * 24 * 60
SETTINGS = {"MDQ_BACKFILL_CHUNK_ROWS": str(CANDLES), "MDQ_BACKFILL_LEASE_SECONDS": "2"}
KILLED = {**SETTINGS, "MDQ_BACKFILL_CHUNK_ROWS": "100"}
#: Write times: now() of whichever run wrote the row, so they differ between any two loads.
WRITE_TIMES = ("ingested_at", "updated_at")


def _dump(database: Database) -> bytes:
    """market_data as COPY text, every column but the write times, in key order."""
    with connect(database, autocommit=True) as conn:
        columns = [
            name
            for (name,) in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = current_schema() and table_name = 'market_data'"
                " order by ordinal_position"
            ).fetchall()
            if name not in WRITE_TIMES
        ]
        assert {"symbol", "timeframe", "ts", "open", "close", "volume"} <= set(columns)
        query = sql.SQL(
            "copy (select {} from market_data order by symbol, timeframe, ts) to stdout"
        ).format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        conn.execute("set timezone = 'UTC'")
        with conn.cursor().copy(query) as copy:
            return b"".join(bytes(block) for block in copy)


def test_backfill_killed_mid_load_then_rerun_equals_a_clean_load(
    make_database: Callable[[], Database],
) -> None:
    killed, clean = make_database(), make_database()
    clean_run = _mdq(clean, *BACKFILL, **SETTINGS)
    first = _mdq(killed, *BACKFILL, **KILLED)
    loaded = 0
    deadline = time.monotonic() + 180
    with connect(killed, autocommit=True) as watch:
        while time.monotonic() < deadline and first.poll() is None:
            try:
                row = watch.execute("select count(*) from market_data").fetchone()
            except psycopg.errors.UndefinedTable:
                time.sleep(0.05)  # migrations still running
                continue
            loaded = row[0] if row else 0
            if loaded >= 1000:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the backfill ended before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        partial = watch.execute("select count(*) from market_data").fetchone()
    assert partial is not None and 1000 <= partial[0] < CANDLES, "not killed mid-load"
    time.sleep(3)  # the 2 s lease of the dead run expires: nothing renews it any more
    rerun = _mdq(killed, *BACKFILL, **SETTINGS)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    _, clean_err = clean_run.communicate(timeout=300)
    assert clean_run.returncode == 0, clean_err
    with connect(killed) as conn:
        states = conn.execute(
            "select status from backfill_state_persistent order by created_at"
        ).fetchall()
    assert states == [("failed",), ("completed",)]  # the dead run is closed, not left open
    dumped = _dump(killed)
    assert dumped.count(b"\n") == CANDLES
    assert dumped == _dump(clean)
