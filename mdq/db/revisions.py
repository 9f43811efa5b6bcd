"""SQL of candle revisions (table ``candle_revisions``, migration 063): list them, restore one.

Revisions are written by :func:`mdq.db.backfill.write_candles` when a later backfill changes a
final candle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mdq.exceptions import RevisionNotFound


@dataclass(frozen=True)
class Revision:
    """One row of ``candle_revisions``: a candle's values before a change, and the change.

    Attributes mirror the columns; prices in quote currency; instants UTC-aware.
    """

    revision_id: int
    symbol: str
    timeframe: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    new_open: float | None
    new_high: float | None
    new_low: float | None
    new_close: float | None
    new_volume: float | None
    execution_id: UUID | None
    revised_at: datetime
    restored_at: datetime | None


_FIELDS = ", ".join(Revision.__dataclass_fields__)


def list_revisions(
    conn: psycopg.Connection, *, symbol: str | None = None, include_restored: bool = False
) -> list[Revision]:
    """Revisions, newest first (optionally of one symbol; restored ones with the flag)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            select {_FIELDS}
            from candle_revisions
            where (%(symbol)s::text is null or symbol = %(symbol)s)
                and (%(all)s or restored_at is null)
            order by revised_at desc, revision_id desc
            """,  # noqa: S608 - constant column list
            {"symbol": symbol, "all": include_restored},
        )
        return [Revision(**row) for row in cur.fetchall()]


def restore_revision(conn: psycopg.Connection, revision_id: int) -> Revision:
    """Put a revision's previous values back into ``market_data``, in one transaction.

    The values being replaced are recorded as a new revision (``execution_id`` NULL), so a
    restore can itself be undone; the restored revision gets ``restored_at``.

    Returns:
        The restored revision (with ``restored_at`` set).

    Raises:
        RevisionNotFound: no unrestored revision with that id.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            select {_FIELDS} from candle_revisions
            where revision_id = %s and restored_at is null
            for update
            """,  # noqa: S608 - constant column list
            (revision_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise RevisionNotFound(revision_id)
        cur.execute(
            """
            insert into candle_revisions (
                symbol, asset_class, timeframe, ts, open, high, low, close, volume, is_final,
                source, source_ts, new_open, new_high, new_low, new_close, new_volume,
                execution_id
            )
            select
                md.symbol, md.asset_class, md.timeframe, md.ts, md.open, md.high, md.low, md.close,
                md.volume, md.is_final, md.source, md.source_ts,
                r.open, r.high, r.low, r.close, r.volume, null
            from market_data as md
            inner join candle_revisions as r
                on md.symbol = r.symbol and md.timeframe = r.timeframe and md.ts = r.ts
            where r.revision_id = %s
            """,
            (revision_id,),
        )
        cur.execute(
            """
            update market_data as md
            set open = r.open,
                high = r.high,
                low = r.low,
                close = r.close,
                volume = r.volume,
                is_final = r.is_final,
                source = r.source,
                source_ts = r.source_ts,
                updated_at = now()
            from candle_revisions as r
            where r.revision_id = %s
                and md.symbol = r.symbol and md.timeframe = r.timeframe and md.ts = r.ts
            """,
            (revision_id,),
        )
        cur.execute(
            f"""
            update candle_revisions set restored_at = now()
            where revision_id = %s
            returning {_FIELDS}
            """,  # noqa: S608 - constant column list
            (revision_id,),
        )
        restored = cur.fetchone()
    assert restored is not None
    return Revision(**restored)
