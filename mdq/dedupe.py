"""Duplicate (symbol, timeframe, ts) rows in market_data: preview, remove with a log, restore.

The seed's ``cleanup_duplicate_records(symbol=None, dry_run=True)``. Per key one row is kept:
the final one (``is_final``), then the latest written (``ingested_at``), then the physically
last (``ctid``) — columns the table lacks are skipped (an adopted table may have only
the original ones). Every removed row is written in full, with the kept row, to
``duplicate_records_log`` under one ``cleanup_id``; :func:`restore_duplicate_records` puts
them back. Both run in one transaction each.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import psycopg

from mdq.db import dedupe as dedupe_db
from mdq.db.dedupe import DuplicateGroup

#: Columns deciding which row of a key is kept, in priority order, all descending.
KEEP_PRIORITY: tuple[str, ...] = ("is_final", "ingested_at")


@dataclass(frozen=True)
class CleanupReport:
    """What a cleanup found, and did.

    Attributes:
        dry_run: True when nothing was changed (preview).
        cleanup_id: the id to restore with (None for a preview or when nothing was removed).
        groups: per (symbol, timeframe) counts, sorted.
    """

    dry_run: bool
    cleanup_id: str | None
    groups: tuple[DuplicateGroup, ...]

    @property
    def duplicate_keys(self) -> int:
        """Keys that occur more than once."""
        return sum(g.duplicate_keys for g in self.groups)

    @property
    def rows_to_remove(self) -> int:
        """Rows removed (or that would be), one per extra occurrence of a key."""
        return sum(g.rows_to_remove for g in self.groups)

    @property
    def conflicting_rows(self) -> int:
        """Of those, rows whose values differ from the kept row."""
        return sum(g.conflicting_rows for g in self.groups)


def keep_order(columns: Collection[str]) -> list[tuple[str, bool]]:
    """The keep order for a market_data with these columns.

    Args:
        columns: the table's column names.

    Returns:
        ``(column, descending)`` pairs from :data:`KEEP_PRIORITY` that exist; the caller
        breaks remaining ties by highest ``ctid`` (the physically last row).
    """
    return [(name, True) for name in KEEP_PRIORITY if name in columns]


def cleanup_duplicate_records(
    conn: psycopg.Connection, symbol: str | None = None, dry_run: bool = True
) -> CleanupReport:
    """Find duplicate keys in market_data and, unless ``dry_run``, remove the extra rows.

    Args:
        conn: an open connection (works with autocommit on or off).
        symbol: only this symbol (None: all).
        dry_run: only report (the default); False deletes and logs in one transaction.

    Returns:
        The report; ``cleanup_id`` identifies the logged rows when some were removed.
    """
    with conn.transaction():
        if not dry_run:
            dedupe_db.lock_market_data(conn)
        order = keep_order(dedupe_db.market_data_columns(conn))
        groups = tuple(dedupe_db.plan_duplicates(conn, order, symbol))
        cleanup_id = None
        if not dry_run and groups:
            cleanup_id, _ = dedupe_db.apply_plan(conn)
    return CleanupReport(dry_run=dry_run, cleanup_id=cleanup_id, groups=groups)


def restore_duplicate_records(conn: psycopg.Connection, cleanup_id: str) -> int:
    """Put back every row a cleanup removed.

    Args:
        conn: an open connection.
        cleanup_id: the id of the cleanup (printed by ``mdq dedupe --apply``).

    Returns:
        Rows restored.

    Raises:
        CleanupNotFound: unknown id, or already restored.
        RestoreConflict: market_data got its unique key since, and a row would break it.
    """
    return dedupe_db.restore_cleanup(conn, cleanup_id)
