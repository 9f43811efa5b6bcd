"""Versioned SQL migrations: ``mdq/migrations/NNN_name.sql``, applied in order.

Each migration runs in its own transaction and is recorded in ``mdq_schema_migrations``
(version, name, sha256 checksum, applied_at). A transaction-level advisory lock makes
concurrent starters wait for each other instead of racing. Applying twice changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from mdq.exceptions import DuplicateKeysBlockMigration, MigrationError

#: Advisory lock key (any constant bigint) serialising migration runs on one database.
_LOCK_KEY = 7_244_019_113

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file.

    Attributes:
        version: the number in the file name (001 → 1).
        name: the file name.
        sql: the file's text.
    """

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 hex digest of the SQL text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped in ``mdq/migrations``, sorted by version.

    Raises:
        MigrationError: two files share a version number.
    """
    found: dict[int, Migration] = {}
    for entry in resources.files("mdq.migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(version, entry.name, f"version clashes with {found[version].name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """Map of applied migration version → checksum (empty on a new database)."""
    exists = conn.execute("select to_regclass('mdq_schema_migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("select version, checksum from mdq_schema_migrations").fetchall()
    return {int(v): str(c) for v, c in rows}


def apply_migrations(conn: psycopg.Connection) -> list[Migration]:
    """Apply every migration not applied yet, each in its own transaction.

    Args:
        conn: an open connection (its autocommit setting is left as it was).

    Returns:
        The migrations applied by this call, in order (empty when up to date).

    Raises:
        DuplicateKeysBlockMigration: an adopted ``market_data`` has duplicate keys; nothing
            was deleted and earlier migrations stay applied (so ``mdq dedupe`` can run).
        MigrationError: any other failure; that migration's transaction is rolled back.
    """
    previous_autocommit = conn.autocommit
    conn.autocommit = True
    applied: list[Migration] = []
    try:
        with conn.transaction():
            # under the lock: two first commands at once would both try to create it
            conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                """
            create table if not exists mdq_schema_migrations (
                version     integer primary key,
                name        text not null,
                checksum    text not null,
                applied_at  timestamptz not null default now()
            )
            """
            )
        for migration in available_migrations():
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                done = conn.execute(
                    "select 1 from mdq_schema_migrations where version = %s", (migration.version,)
                ).fetchone()
                if done:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                except psycopg.Error as exc:
                    raise _translate(migration, exc) from None
                conn.execute(
                    "insert into mdq_schema_migrations (version, name, checksum)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied.append(migration)
    finally:
        conn.autocommit = previous_autocommit
    return applied


def _translate(migration: Migration, exc: psycopg.Error) -> MigrationError:
    diag = exc.diag
    if exc.sqlstate == "MDQ01" and diag.message_detail:
        keys, extra = (int(x) for x in diag.message_detail.split())
        return DuplicateKeysBlockMigration(migration.version, migration.name, keys, extra)
    message = diag.message_primary or str(exc).strip().splitlines()[0]
    if exc.sqlstate == "MDQ02" and diag.message_hint:
        # a refusal of migration 110 (partitioning market_data) says what to change
        message = f"{message} ({diag.message_hint})"
    return MigrationError(migration.version, migration.name, message)


@contextlib.contextmanager
def open_migrated_database(settings: Any) -> Iterator[Any]:
    """:func:`mdq.db.open_database`, then apply pending migrations (for the flows, which a
    worker may run against a database nothing has migrated yet; the CLI does the same).

    Args:
        settings: the project :class:`~mdq.config.Settings`.

    Yields:
        The :class:`~mdq.db.Database`, migrated.

    Raises:
        As :func:`mdq.db.open_database` and :func:`apply_migrations`.
    """
    from mdq.db import connect, open_database

    with open_database(settings) as database:
        with connect(database) as conn:
            apply_migrations(conn)
        yield database
