"""SQL for removing duplicate (symbol, timeframe, ts) rows from market_data, and restoring them.

Works on an adopted ``market_data`` that has no unique key yet (that is when duplicates exist:
migration 002 refuses to add the key while they do) and whose columns may be only the
original ones (migration 002 adds ``ingested_at``/``is_final`` in the same transaction that
was refused). Rows are addressed by ``(tableoid, ctid)`` (a ctid repeats across the partitions
of a partitioned table) inside one transaction that holds a
``share row exclusive`` lock, so no writer can move them in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import psycopg.types.json
from psycopg import sql

from mdq.exceptions import CleanupNotFound, RestoreConflict, SwapRefused


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


@dataclass(frozen=True)
class DuplicateRow:
    """One row a cleanup removes (preview) or removed (log), next to the row kept for its key.

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe.
        ts: the key's candle open time (UTC-aware).
        reason: ``exact_duplicate``, ``conflicting_duplicate`` or ``swapped`` (the version a
            swap replaced).
        removed: the removed row, column → value (JSON types; ``ts`` as text).
        kept: the row kept for the same key.
        log_id: its row in ``duplicate_records_log`` (None in a preview).
        restored_at: when it was restored or swapped back in (None: not).
    """

    symbol: str
    timeframe: str
    ts: object
    reason: str
    removed: dict[str, object]
    kept: dict[str, object]
    log_id: int | None = None
    restored_at: object = None


def plan_rows(conn: psycopg.Connection, limit: int) -> list[DuplicateRow]:
    """The first ``limit`` rows of ``dedupe_plan``, sorted by symbol, timeframe, ts, reason.

    Must run in the transaction that built the plan (:func:`plan_duplicates`).
    """
    rows = conn.execute(
        """
        select symbol, timeframe, ts, reason, removed_row, kept_row
        from dedupe_plan
        order by symbol, timeframe, ts, reason, removed_row::text
        limit %s
        """,
        (limit,),
    ).fetchall()
    return [DuplicateRow(str(s), str(t), ts, str(r), rem, kept) for s, t, ts, r, rem, kept in rows]


def logged_rows(conn: psycopg.Connection, cleanup_id: str) -> list[DuplicateRow]:
    """Every row a cleanup (or a swap) logged, sorted by symbol, timeframe, ts, log id.

    Raises:
        CleanupNotFound: no row has this cleanup id.
    """
    try:
        uuid.UUID(cleanup_id)
    except ValueError:
        raise CleanupNotFound(cleanup_id) from None
    rows = conn.execute(
        """
        select symbol, timeframe, ts, reason, removed_row, kept_row, log_id, restored_at
        from duplicate_records_log
        where cleanup_id = %s
        order by symbol, timeframe, ts, log_id
        """,
        (cleanup_id,),
    ).fetchall()
    if not rows:
        raise CleanupNotFound(cleanup_id)
    return [DuplicateRow(str(r[0]), str(r[1]), *r[2:]) for r in rows]


def has_unique_key(conn: psycopg.Connection) -> bool:
    """Whether market_data has its unique (or primary) key yet (migration 002)."""
    row = conn.execute(
        "select exists (select 1 from pg_constraint as c"
        " where c.conrelid = to_regclass('market_data') and c.contype in ('u', 'p'))"
    ).fetchone()
    return bool(row and row[0])


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
            -- one window pass: each row next to the row kept for its key (the first in the
            -- keep order), no self-join (a join of ranked to kept rows went quadratic when
            -- the planner misjudged its size: 8k keys took 20 s, 32k took 2 s)
            ranked as (
                select
                    m.tableoid as row_tableoid,
                    m.ctid as row_ctid,
                    m.symbol,
                    m.timeframe,
                    m.ts,
                    to_jsonb(m) as row_json,
                    (m.open, m.high, m.low, m.close, m.volume)::text as ohlcv,
                    row_number() over key_rows as keep_rank,
                    first_value(to_jsonb(m)) over key_rows as kept_json,
                    first_value((m.open, m.high, m.low, m.close, m.volume)::text)
                        over key_rows as kept_ohlcv
                from market_data as m
                inner join dup_keys as d
                    on d.symbol = m.symbol and d.timeframe = m.timeframe and d.ts = m.ts
                window key_rows as (
                    partition by m.symbol, m.timeframe, m.ts order by {keep_order}
                )
            )
            select
                r.row_tableoid,
                r.row_ctid,
                r.symbol,
                r.timeframe,
                {ts_utc} as ts,
                r.row_json as removed_row,
                r.kept_json as kept_row,
                case
                    when r.ohlcv = r.kept_ohlcv then 'exact_duplicate'
                    else 'conflicting_duplicate'
                end as reason
            from ranked as r
            where r.keep_rank > 1
            """
        ).format(keep_order=keep_order, ts_utc=ts_utc),
        {"symbol": symbol},
    )
    # real row counts for the delete's join on ctid (else a nested loop over a guess)
    conn.execute("analyze dedupe_plan")
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


#: Limits of a cleanup's transaction (``set local``): waiting for the lock, one statement,
#: idling inside the transaction; and how often a running statement checks that its client is
#: still connected. A killed ``mdq dedupe --apply`` used to keep the lock for 15+ minutes
#: (issue 16): now its statement stops within seconds and the lock goes with it.
CLEANUP_TIMEOUTS: dict[str, str] = {
    "lock_timeout": "30s",
    "statement_timeout": "30min",
    "idle_in_transaction_session_timeout": "60s",
    "client_connection_check_interval": "2s",
}


def set_cleanup_timeouts(conn: psycopg.Connection) -> None:
    """Apply :data:`CLEANUP_TIMEOUTS` to the current transaction (must be in one)."""
    for name, value in CLEANUP_TIMEOUTS.items():
        conn.execute("select set_config(%s, %s, true)", (name, value))


def lock_market_data(conn: psycopg.Connection) -> None:
    """Block other writers of market_data until the transaction ends (readers continue).

    Sets :data:`CLEANUP_TIMEOUTS` first, so a blocked lock or a dead client cannot hold it
    for long.
    """
    set_cleanup_timeouts(conn)
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
        # a ctid is unique within one table only: with market_data partitioned (migration 110,
        # or a team's own partitioning) the row is (partition, ctid)
        "delete from market_data as m using dedupe_plan as p"
        " where m.tableoid = p.row_tableoid and m.ctid = p.row_ctid"
    ).rowcount
    return cleanup_id, removed


def restore_cleanup(conn: psycopg.Connection, cleanup_id: str) -> int:
    """Put the rows of one cleanup back into market_data, in one transaction.

    Columns are restored by name: columns the table gained since (e.g. ``ingested_at`` from
    migration 002) take their defaults.

    Args:
        conn: an open connection.
        cleanup_id: the id printed by ``mdq dedupe --apply``.

    Once market_data has its unique key (migration 002 ran after the cleanup), a key holds
    one row: exact copies are already there, so they are marked restored and nothing is
    inserted (returns 0); a conflicting version can only replace the kept one
    (:func:`swap_kept_version`), so the restore is refused while the cleanup has any.

    Returns:
        Rows inserted back.

    Raises:
        CleanupNotFound: no unrestored rows for this id.
        RestoreConflict: the unique key now exists and some logged rows differ from the row
            kept for their key (nothing was restored).
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
        if has_unique_key(conn):
            # One row per key: an exact copy is already there (nothing to put back); another
            # version cannot join it, only replace it (swap_kept_version).
            conflicts = conn.execute(
                """
                select count(*)
                from duplicate_records_log as l
                inner join market_data as m
                    on m.symbol = l.symbol and m.timeframe = l.timeframe and m.ts = l.ts
                where l.cleanup_id = %s and l.restored_at is null
                    and (
                        (l.removed_row ->> 'open')::float8,
                        (l.removed_row ->> 'high')::float8,
                        (l.removed_row ->> 'low')::float8,
                        (l.removed_row ->> 'close')::float8,
                        (l.removed_row ->> 'volume')::float8
                    ) is distinct from (m.open, m.high, m.low, m.close, m.volume)
                """,
                (cleanup_id,),
            ).fetchone()
            if conflicts and conflicts[0]:
                raise RestoreConflict(cleanup_id, int(conflicts[0]))
            conn.execute(
                "update duplicate_records_log set restored_at = now()"
                " where cleanup_id = %s and restored_at is null",
                (cleanup_id,),
            )
            return 0
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


def swap_kept_version(
    conn: psycopg.Connection, cleanup_id: str, log_id: int | None = None
) -> tuple[str, int]:
    """Keep the removed version of conflicting keys instead of the kept one, in one
    transaction, undoably.

    For each unrestored ``conflicting_duplicate`` (or ``swapped``) row of the cleanup (or the
    one ``log_id``), the current row of its key in market_data takes the removed row's values
    (the columns the log holds, key columns excepted); the row it replaces is logged in full
    under a new cleanup id with reason ``swapped``, so swapping that id swaps back; the used
    log row is marked restored.

    Args:
        conn: an open connection.
        cleanup_id: the cleanup (or an earlier swap).
        log_id: only this logged row (``mdq dedupe --log ID`` lists them).

    Returns:
        (the swap's cleanup id, keys swapped).

    Raises:
        CleanupNotFound: no unrestored row of this id (and log_id).
        SwapRefused: a key has two removed versions to choose from (give ``log_id``), or not
            exactly one current row in market_data.
    """
    try:
        uuid.UUID(cleanup_id)
    except ValueError:
        raise CleanupNotFound(cleanup_id) from None
    swap_id = str(uuid.uuid4())
    with conn.transaction():
        lock_market_data(conn)
        todo = conn.execute(
            """
            select log_id, symbol, timeframe, ts, removed_row
            from duplicate_records_log
            where cleanup_id = %s and restored_at is null
                and reason in ('conflicting_duplicate', 'swapped')
                and (%s::bigint is null or log_id = %s)
            order by symbol, timeframe, ts, log_id
            """,
            (cleanup_id, log_id, log_id),
        ).fetchall()
        if not todo:
            raise CleanupNotFound(cleanup_id)
        keys = [(s, t, ts) for _, s, t, ts, _ in todo]
        if len(set(keys)) != len(keys):
            raise SwapRefused(
                cleanup_id, "a key has several removed versions; choose one with --row LOG_ID"
            )
        columns = market_data_columns(conn)
        for one_log_id, symbol, timeframe, ts, removed in todo:
            current = conn.execute(
                "select to_jsonb(m) from market_data as m"
                " where m.symbol = %s and m.timeframe = %s and m.ts = %s",
                (symbol, timeframe, ts),
            ).fetchall()
            if len(current) != 1:
                raise SwapRefused(
                    cleanup_id,
                    f"{symbol}/{timeframe} {ts} has {len(current)} row(s) in market_data, "
                    "expected exactly 1",
                )
            names = [c for c in columns if c in removed and c not in ("symbol", "timeframe", "ts")]
            conn.execute(
                sql.SQL(
                    """
                    update market_data as m
                    set ({names}) = (select {values})
                    from jsonb_populate_record(null::market_data, %s::jsonb) as r
                    where m.symbol = %s and m.timeframe = %s and m.ts = %s
                    """
                ).format(
                    names=sql.SQL(", ").join(sql.Identifier(c) for c in names),
                    values=sql.SQL(", ").join(sql.Identifier("r", c) for c in names),
                ),
                (psycopg.types.json.Jsonb(removed), symbol, timeframe, ts),
            )
            conn.execute(
                """
                insert into duplicate_records_log
                    (cleanup_id, symbol, timeframe, ts, removed_row, kept_row, reason)
                select %s, %s, %s, %s, %s, to_jsonb(m), 'swapped'
                from market_data as m
                where m.symbol = %s and m.timeframe = %s and m.ts = %s
                """,
                (
                    swap_id,
                    symbol,
                    timeframe,
                    ts,
                    psycopg.types.json.Jsonb(current[0][0]),
                    symbol,
                    timeframe,
                    ts,
                ),
            )
            conn.execute(
                "update duplicate_records_log set restored_at = now() where log_id = %s",
                (one_log_id,),
            )
    return swap_id, len(todo)
