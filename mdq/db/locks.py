"""Cross-process locks of the project, as PostgreSQL advisory locks (one database each).

``check_lock`` lets one quality run at a time use a database: ``mdq check``, the quality
flows and the health flow's staleness refresh all build dbt's models and write
``data_anomalies``; two at once failed (``relation ... already exists``) and inflated
``times_seen`` (issue 16, point 9). The lock is a session-level advisory lock held on its own
connection, so it goes away with a dead client's connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from mdq.db import Database, connect
from mdq.exceptions import CheckAlreadyRunning

#: Advisory lock key of the check lock: the first 8 bytes of sha256("mdq check"), signed.
CHECK_LOCK_KEY = int.from_bytes(bytes.fromhex("681a070442d8d12e"), "big", signed=True)
#: How long scheduled runs (flows, health) wait for the lock; ``mdq check`` does not wait.
SCHEDULED_WAIT_SECONDS = 900.0


@contextlib.contextmanager
def check_lock(
    database: Database, *, wait_seconds: float = 0.0, timeout: int = 10
) -> Iterator[None]:
    """Hold the database's check lock for the duration.

    Args:
        database: the database.
        wait_seconds: how long to wait for another holder before giving up (0: do not wait).
        timeout: connection timeout, seconds.

    Raises:
        CheckAlreadyRunning: another process held it for longer than ``wait_seconds``.
        DatabaseUnreachable: the database cannot be reached.
    """
    started = time.monotonic()
    with connect(database, timeout=timeout, autocommit=True) as conn:
        while True:
            row = conn.execute("select pg_try_advisory_lock(%s)", (CHECK_LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                break
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                holder = conn.execute(
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
                        and ((locks.classid::bigint << 32) | locks.objid::bigint) = %s
                    limit 1
                    """,
                    (CHECK_LOCK_KEY,),
                ).fetchone()
                raise CheckAlreadyRunning(
                    database.target, holder[0] if holder else "holder unknown", waited
                )
            time.sleep(min(1.0, max(0.05, wait_seconds - waited)))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (CHECK_LOCK_KEY,))
