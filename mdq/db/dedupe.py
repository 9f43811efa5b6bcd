"""SQL for removing duplicate (symbol, timeframe, ts) rows from market_data, and restoring them.

Works on an adopted ``market_data`` that has no unique key yet (that is when duplicates exist:
migration 002 refuses to add the key while they do) and whose columns may be only the
original ones (migration 002 adds ``ingested_at``/``is_final`` in the same transaction that
was refused). Rows are addressed by ``ctid`` inside one transaction that holds a
``share row exclusive`` lock, so no writer can move them in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from mdq.exceptions import CleanupNotFound, RestoreConflict


@dataclass(frozen=True)
class DuplicateGroup:
    """Duplicates of one (symbol, timeframe).

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe.
        duplicate_keys: keys (ts values) that occur more than once.
        rows_to_remove: rows beyond the one kept per key.
        conflicting_rows: of those, rows whose open/high/low/close/volume differ from the kept row.
    """

    symbol: str
    timeframe: str
    duplicate_keys: int
    rows_to_remove: int
    conflicting_rows: int


def market_data_columns(conn: psycopg.Connection) -> dict[str, str]:
    """Columns of ``market_data`` (as resolved by the search path) → their type name, in order.

    Returns:
        Empty when the table does not exist.
    """
    rows = conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute as a
        where a.attrelid = to_regclass('market_data')
            and a.attnum > 0
            and not a.attisdropped
        order by a.attnum
        """
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def plan_duplicates(
    conn: psycopg.Connection, order: Sequence[tuple[str, bool]], symbol: str | None
) -> list[DuplicateGroup]:
    """Build the temp table ``dedupe_plan`` (one row per row to remove) and summarise it.

    Must run inside a transaction; the table is dropped at its end.

    Args:
        conn: an open connection, in a transaction.
        order: the keep order: ``(column, descending)`` pairs; the first row per key in this
            order (then highest ``ctid``) is kept.
        symbol: only this symbol (None: all).

    Returns:
        Per (symbol, timeframe) counts, sorted by symbol and timeframe.
    """
    columns = market_data_columns(conn)
    ts_utc = (
        sql.SQL("r.ts at time zone 'UTC'")
        if columns.get("ts", "").startswith("timestamp without")
        else sql.SQL("r.ts")
    )
    keep_order = sql.SQL(", ").join(
        [
            sql.SQL("m.{} {} nulls last").format(
                sql.Identifier(name), sql.SQL("desc" if desc else "asc")
            )
            for name, desc in order
        ]
        + [sql.SQL("m.ctid desc")]
    )
    conn.execute(
        sql.SQL(
            """
            create temp table dedupe_plan on commit drop as
            with dup_keys as (
                select symbol, timeframe, ts
                from market_data
                where %(symbol)s::text is null or symbol = %(symbol)s
                group by symbol, timeframe, ts
                having count(*) > 1
            ),
            ranked as (
                select
                    m.ctid as row_ctid,
                    m.symbol,
                    m.timeframe,
                    m.ts,
                    to_jsonb(m) as row_json,
                    (m.open, m.high, m.low, m.close, m.volume)::text as ohlcv,
                    row_number() over (
                        partition by m.symbol, m.timeframe, m.ts order by {keep_order}
                    ) as keep_rank
                from market_data as m
                inner join dup_keys as d
                    on d.symbol = m.symbol and d.timeframe = m.timeframe and d.ts = m.ts
            ),
            kept as (
                select * from ranked where keep_rank = 1
            )
            select
                r.row_ctid,
                r.symbol,
                r.timeframe,
                {ts_utc} as ts,
                r.row_json as removed_row,
                k.row_json as kept_row,
                case
                    when r.ohlcv = k.ohlcv then 'exact_duplicate'
                    else 'conflicting_duplicate'
                end as reason
            from ranked as r
            inner join kept as k
                on k.symbol = r.symbol and k.timeframe = r.timeframe and k.ts = r.ts
            where r.keep_rank > 1
            """
        ).format(keep_order=keep_order, ts_utc=ts_utc),
        {"symbol": symbol},
    )
    rows = conn.execute(
        """
        select
            symbol,
            timeframe,
            count(distinct ts),
            count(*),
            count(*) filter (where reason = 'conflicting_duplicate')
        from dedupe_plan
        group by symbol, timeframe
        order by symbol, timeframe
        """
    ).fetchall()
    return [DuplicateGroup(str(s), str(t), int(k), int(n), int(c)) for s, t, k, n, c in rows]


def lock_market_data(conn: psycopg.Connection) -> None:
    """Block other writers of market_data until the transaction ends (readers continue)."""
    conn.execute("lock table market_data in share row exclusive mode")


def apply_plan(conn: psycopg.Connection) -> tuple[str, int]:
    """Log every row of ``dedupe_plan`` in full, then delete it from market_data.

    Must run in the transaction that built the plan, after :func:`lock_market_data`.

    Returns:
        (cleanup_id, rows removed).
    """
    cleanup_id = str(uuid.uuid4())
    conn.execute(
        """
        insert into duplicate_records_log
            (cleanup_id, symbol, timeframe, ts, removed_row, kept_row, reason)
        select %s, symbol, timeframe, ts, removed_row, kept_row, reason
        from dedupe_plan
        """,
        (cleanup_id,),
    )
    removed = conn.execute(
        "delete from market_data as m using dedupe_plan as p where m.ctid = p.row_ctid"
    ).rowcount
    return cleanup_id, removed


def restore_cleanup(conn: psycopg.Connection, cleanup_id: str) -> int:
    """Put the rows of one cleanup back into market_data, in one transaction.

    Columns are restored by name: columns the table gained since (e.g. ``ingested_at`` from
    migration 002) take their defaults.

    Args:
        conn: an open connection.
        cleanup_id: the id printed by ``mdq dedupe --apply``.

    Returns:
        Rows restored.

    Raises:
        CleanupNotFound: no unrestored rows for this id.
        RestoreConflict: the unique key now exists and a row would duplicate a key.
    """
    try:
        uuid.UUID(cleanup_id)
    except ValueError:
        raise CleanupNotFound(cleanup_id) from None
    with conn.transaction():
        conn.execute("set local timezone = 'UTC'")
        lock_market_data(conn)
        keys = conn.execute(
            """
            select distinct jsonb_object_keys(removed_row)
            from duplicate_records_log
            where cleanup_id = %s and restored_at is null
            """,
            (cleanup_id,),
        ).fetchall()
        if not keys:
            raise CleanupNotFound(cleanup_id)
        present = {str(k) for (k,) in keys}
        columns = [c for c in market_data_columns(conn) if c in present]
        conflicts = conn.execute(
            """
            select count(*)
            from duplicate_records_log as l
            inner join market_data as m
                on m.symbol = l.symbol and m.timeframe = l.timeframe and m.ts = l.ts
            where l.cleanup_id = %s and l.restored_at is null
                and exists (
                    select 1 from pg_constraint as c
                    where c.conrelid = to_regclass('market_data') and c.contype in ('u', 'p')
                )
            """,
            (cleanup_id,),
        ).fetchone()
        if conflicts and conflicts[0]:
            raise RestoreConflict(cleanup_id, int(conflicts[0]))
        column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        restored = conn.execute(
            sql.SQL(
                """
                insert into market_data ({columns})
                select {restored}
                from duplicate_records_log as l
                cross join lateral
                    jsonb_populate_record(null::market_data, l.removed_row) as r
                where l.cleanup_id = %s and l.restored_at is null
                """
            ).format(
                columns=column_list,
                restored=sql.SQL(", ").join(sql.Identifier("r", c) for c in columns),
            ),
            (cleanup_id,),
        ).rowcount
        conn.execute(
            "update duplicate_records_log set restored_at = now()"
            " where cleanup_id = %s and restored_at is null",
            (cleanup_id,),
        )
    return restored
