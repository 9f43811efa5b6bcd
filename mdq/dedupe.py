"""Duplicate (symbol, timeframe, ts) rows in market_data: preview, remove with a log, restore.

The seed's ``cleanup_duplicate_records(symbol=None, dry_run=True)``. Per key one row is kept:
the final one (``is_final``), then the latest written (``ingested_at``), then the physically
last (``ctid``) — columns the table lacks are skipped (an adopted table may have only
the original ones). Every removed row is written in full, with the kept row, to
``duplicate_records_log`` under one ``cleanup_id``; :func:`restore_duplicate_records` puts
them back, and :func:`swap_kept_version` keeps a removed version of a conflicting key instead
of the kept one (itself logged, so a swap is undone by swapping back). Each runs in one
transaction. A preview lists the rows themselves (:attr:`CleanupReport.preview`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import psycopg

from mdq.db import dedupe as dedupe_db
from mdq.db.dedupe import DuplicateGroup, DuplicateRow

#: Columns deciding which row of a key is kept, in priority order, all descending.
KEEP_PRIORITY: tuple[str, ...] = ("is_final", "ingested_at")


@dataclass(frozen=True)
class CleanupReport:
    """What a cleanup found, and did.

    Attributes:
        dry_run: True when nothing was changed (preview).
        cleanup_id: the id to restore with (None for a preview or when nothing was removed).
        groups: per (symbol, timeframe) counts, sorted.
        preview: the first rows removed (or that would be), each with the row kept for its
            key, sorted by symbol, timeframe, ts.
    """

    dry_run: bool
    cleanup_id: str | None
    groups: tuple[DuplicateGroup, ...]
    preview: tuple[DuplicateRow, ...] = ()

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
    conn: psycopg.Connection,
    symbol: str | None = None,
    dry_run: bool = True,
    preview_rows: int = 50,
) -> CleanupReport:
    """Find duplicate keys in market_data and, unless ``dry_run``, remove the extra rows.

    Args:
        conn: an open connection (works with autocommit on or off).
        symbol: only this symbol (None: all).
        dry_run: only report (the default); False deletes and logs in one transaction.
        preview_rows: how many of the rows to remove the report lists in ``preview``.

    Returns:
        The report; ``cleanup_id`` identifies the logged rows when some were removed.
    """
    with conn.transaction():
        if not dry_run:
            dedupe_db.lock_market_data(conn)
        order = keep_order(dedupe_db.market_data_columns(conn))
        groups = tuple(dedupe_db.plan_duplicates(conn, order, symbol))
        preview = tuple(dedupe_db.plan_rows(conn, preview_rows)) if groups else ()
        cleanup_id = None
        if not dry_run and groups:
            cleanup_id, _ = dedupe_db.apply_plan(conn)
    return CleanupReport(dry_run=dry_run, cleanup_id=cleanup_id, groups=groups, preview=preview)


def restore_duplicate_records(conn: psycopg.Connection, cleanup_id: str) -> int:
    """Put back every row a cleanup removed.

    Args:
        conn: an open connection.
        cleanup_id: the id of the cleanup (printed by ``mdq dedupe --apply``).

    Once market_data has its unique key, exact copies are only marked restored (their values
    are there) and a cleanup with conflicting versions is refused: keep those with
    :func:`swap_kept_version`.

    Returns:
        Rows inserted back.

    Raises:
        CleanupNotFound: unknown id, or already restored.
        RestoreConflict: market_data got its unique key since, and a logged row differs from
            the row kept for its key.
    """
    return dedupe_db.restore_cleanup(conn, cleanup_id)


def swap_kept_version(
    conn: psycopg.Connection, cleanup_id: str, log_id: int | None = None
) -> tuple[str, int]:
    """Keep the removed version of each conflicting key of a cleanup instead of the kept one.

    The replaced rows are logged under a new cleanup id (reason ``swapped``): swapping that
    id swaps back.

    Args:
        conn: an open connection.
        cleanup_id: the cleanup (or an earlier swap).
        log_id: only this logged row (see :func:`cleanup_log`).

    Returns:
        (the swap's cleanup id, keys swapped).

    Raises:
        CleanupNotFound: nothing left to swap under this id.
        SwapRefused: a key has several removed versions (give ``log_id``) or not exactly one
            current row.
    """
    return dedupe_db.swap_kept_version(conn, cleanup_id, log_id)


def cleanup_log(conn: psycopg.Connection, cleanup_id: str) -> list[DuplicateRow]:
    """Every row a cleanup or swap logged, with its ``log_id`` and ``restored_at``.

    Raises:
        CleanupNotFound: no row has this id.
    """
    return dedupe_db.logged_rows(conn, cleanup_id)
