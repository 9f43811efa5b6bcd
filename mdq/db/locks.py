"""Cross-process locks of the project, as PostgreSQL advisory locks (one database each).

``check_lock`` lets one quality run at a time use a database's dbt schema and its findings:
``mdq check``, the quality flows and the health flow's staleness refresh all build dbt's models
and write ``data_anomalies``; two at once failed (``relation ... already exists``) and inflated
``times_seen`` (issue 16, point 9). The locks are session-level advisory locks held on their own
connection, so they go away with a dead client's connection.

Shards (``mdq check --shard i/n``, issue 15 item 5) run in parallel: each builds its own dbt
schema (:func:`mdq.db.check_scope.shard_schema`) and records, resolves and counts only its own
symbols' findings. The rules:

- a run of the whole project (no shard) holds the check lock **exclusively**: it excludes
  every other run, sharded or not;
- a shard run holds the check lock **shared** (so it excludes a whole-project run and is not
  excluded by other shards), its own shard's lock ``i/n`` exclusively (the same shard twice
  would race on its schema), and the count ``n`` shared: shards of another count hold other
  symbol sets that overlap this one's, so a shard run refuses while one of another count runs
  (e.g. ``1/3`` while ``1/2`` runs). These steps are taken under a short gate lock, so two
  shard runs never decide at the same instant.

Try-locks are polled (no queue): a whole-project run waiting behind a stream of overlapping
shard runs waits until none holds the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, LiteralString

import psycopg

from mdq.db import Database, connect
from mdq.exceptions import CheckAlreadyRunning

if TYPE_CHECKING:
    from mdq.db.check_scope import Shard

#: Advisory lock key of the check lock: the first 8 bytes of sha256("mdq check"), signed.
CHECK_LOCK_KEY = int.from_bytes(bytes.fromhex("681a070442d8d12e"), "big", signed=True)
#: Held for the few statements in which a shard run takes its locks: the first 8 bytes of
#: sha256("mdq check shard gate"), signed.
SHARD_GATE_KEY = int.from_bytes(bytes.fromhex("7aba08777d5fd038"), "big", signed=True)
#: The first key of the two-key advisory lock ``(SHARD_COUNT_CLASS, n)`` that every shard run
#: of count ``n`` holds shared: the first 4 bytes of sha256("mdq check shard count"), as a
#: positive int4 (so that it reads the same in ``pg_locks.classid``).
SHARD_COUNT_CLASS = int.from_bytes(bytes.fromhex("bd33f803"), "big") & 0x7FFFFFFF
#: How long scheduled runs (flows, health) wait for the lock; ``mdq check`` does not wait.
SCHEDULED_WAIT_SECONDS = 900.0


def shard_lock_key(shard: Shard) -> int:
    """The advisory key of one shard's own lock: the first 8 bytes of
    sha256("mdq check shard i/n"), signed (the same in every process)."""
    digest = hashlib.sha256(f"mdq check shard {shard.label}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def check_lock(
    database: Database,
    *,
    wait_seconds: float = 0.0,
    timeout: int = 10,
    shard: Shard | None = None,
) -> Iterator[None]:
    """Hold the database's check lock for the duration: exclusively for a run of the whole
    project, shared plus the shard's own lock for a shard run (module docstring).

    Args:
        database: the database.
        wait_seconds: how long to wait for another holder before giving up (0: do not wait).
        timeout: connection timeout, seconds.
        shard: the shard this run checks (None: the whole project).

    Raises:
        CheckAlreadyRunning: another run held a conflicting lock for longer than
            ``wait_seconds``.
        DatabaseUnreachable: the database cannot be reached.
    """
    started = time.monotonic()
    with connect(database, timeout=timeout, autocommit=True) as conn:
        while True:
            blocker = _take(conn, shard)
            if blocker is None:
                break
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                raise CheckAlreadyRunning(database.target, _holder(conn, *blocker), waited)
            time.sleep(min(1.0, max(0.05, wait_seconds - waited)))
        try:
            yield
        finally:
            _release(conn, shard)


def _take(conn: psycopg.Connection, shard: Shard | None) -> tuple[str, int, int] | None:
    """Try once to take the locks of a run; None when taken, else the conflicting lock as
    ``(kind, key1, key2)`` for :func:`_holder` (nothing is held then)."""
    if shard is None:
        if _one(conn, "select pg_try_advisory_lock(%s)", (CHECK_LOCK_KEY,)):
            return None
        return ("bigint", CHECK_LOCK_KEY, 0)
    conn.execute("select pg_advisory_lock(%s)", (SHARD_GATE_KEY,))
    try:
        if not _one(conn, "select pg_try_advisory_lock_shared(%s)", (CHECK_LOCK_KEY,)):
            return ("bigint", CHECK_LOCK_KEY, 0)
        other_count = _one(
            conn,
            """
            select locks.objid::bigint
            from pg_locks as locks
            where locks.locktype = 'advisory'
                and locks.granted
                and locks.objsubid = 2
                and locks.database = (
                    select oid from pg_database where datname = current_database()
                )
                and locks.classid::bigint = %s
                and locks.objid::bigint <> %s
            limit 1
            """,
            (SHARD_COUNT_CLASS, shard.count),
        )
        if other_count is not None:
            conn.execute("select pg_advisory_unlock_shared(%s)", (CHECK_LOCK_KEY,))
            return ("count", SHARD_COUNT_CLASS, int(other_count))
        if not _one(conn, "select pg_try_advisory_lock(%s)", (shard_lock_key(shard),)):
            conn.execute("select pg_advisory_unlock_shared(%s)", (CHECK_LOCK_KEY,))
            return ("bigint", shard_lock_key(shard), 0)
        # only ever taken shared: never waits
        conn.execute("select pg_advisory_lock_shared(%s, %s)", (SHARD_COUNT_CLASS, shard.count))
        return None
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (SHARD_GATE_KEY,))


def _release(conn: psycopg.Connection, shard: Shard | None) -> None:
    """Release what :func:`_take` took."""
    if shard is None:
        conn.execute("select pg_advisory_unlock(%s)", (CHECK_LOCK_KEY,))
        return
    conn.execute("select pg_advisory_unlock_shared(%s, %s)", (SHARD_COUNT_CLASS, shard.count))
    conn.execute("select pg_advisory_unlock(%s)", (shard_lock_key(shard),))
    conn.execute("select pg_advisory_unlock_shared(%s)", (CHECK_LOCK_KEY,))


def _one(conn: psycopg.Connection, query: LiteralString, params: tuple[object, ...]) -> object:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _holder(conn: psycopg.Connection, kind: str, key1: int, key2: int) -> str:
    """Who holds the conflicting lock: ``backend pid P since T`` (and the other shard count)."""
    if kind == "count":
        where = "locks.objsubid = 2 and locks.classid::bigint = %s and locks.objid::bigint = %s"
        params: tuple[object, ...] = (key1, key2)
        prefix = f"a shard run of {key2} shards, "
    else:
        where = "locks.objsubid = 1 and ((locks.classid::bigint << 32) | locks.objid::bigint) = %s"
        params = (key1,)
        prefix = ""
    row = conn.execute(
        """
        select format('backend pid %%s since %%s', activity.pid,
                      to_char(activity.backend_start at time zone 'UTC',
                              'YYYY-MM-DD HH24:MI:SS"Z"'))
        from pg_locks as locks
        inner join pg_stat_activity as activity on locks.pid = activity.pid
        where locks.locktype = 'advisory'
            and locks.granted
            and locks.database = (
                select oid from pg_database where datname = current_database()
            )
            and """
        + where
        + """
        limit 1
        """,
        params,
    ).fetchone()
    return prefix + (str(row[0]) if row else "holder unknown")
