"""What one quality run re-reads: the whole of ``market_data``, or only the series changed
since the last successful run (issue 15, "incremental by default"), and which shard of the
symbols it owns (``mdq check --shard i/n``).

The change log: statement-level triggers on ``market_data`` write one ``candle_changes`` row
per statement and series (first and last ts touched, the writing transaction's id), for
inserts, updates and deletes (migration 130). A successful run of the whole project records
``quality_runs.changes_xmin``: the oldest transaction still running when it read the log. The
next incremental run reads every change from that transaction id on, so a write that commits
while a run is under way is read by the next run (possibly twice, never missed).

An incremental run writes its scope to ``check_scopes`` (one row per series: ``read_from``,
the third candle before the first changed one, the context of the gap check; widened to every
series of the same venue and timeframe from the venue's earliest ``read_from``, so that the
venue-outage classing sees the other symbols' holes) under a ``scope_id``; the calendar checks
read only candles at or after ``read_from`` of those
series (macro ``mdq_sessionized_candles``), and only their findings inside that range are
resolved by absence (:func:`mdq.db.anomalies.persist_findings`).

Shards: a symbol belongs to shard ``k`` (0-based) of ``n`` when
``int(md5(symbol)[:8], 16) % n == k`` (:func:`shard_of`); the SQL twin is
:func:`shard_sql` and dbt's macro ``mdq_shard_number``. Findings without a symbol belong to
the first shard.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from mdq.db import SERIES_LOOSE_SCAN

#: Candles read before the first changed one of a series: the gap check's context (the
#: previous in-session candle; two more in case the nearest are out of session).
CONTEXT_CANDLES = 3

#: The triggers of migration 130 that fill ``candle_changes``.
CHANGE_TRIGGERS = (
    "trg_market_data_changes_insert",
    "trg_market_data_changes_update",
    "trg_market_data_changes_delete",
)

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``: the symbols whose hash falls in it.

    Attributes:
        index: 1 ≤ index ≤ count.
        count: the number of shards, ≥ 1.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` → Shard.

        Raises:
            ValueError: not two integers ``i/n`` with 1 ≤ i ≤ n (one line, for the CLI).
        """
        match = _SHARD.match(text or "")
        if not match:
            raise ValueError(f"--shard must be i/n (e.g. 1/4), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
        return cls(index, count)

    @property
    def label(self) -> str:
        """``"i/n"``, as stored in ``quality_runs.shard`` and given to dbt (``MDQ_SHARD``)."""
        return f"{self.index}/{self.count}"

    def owns(self, symbol: str | None) -> bool:
        """Whether a finding of ``symbol`` belongs to this shard (None: the first shard)."""
        if symbol is None:
            return self.index == 1
        return shard_of(symbol, self.count) == self.index - 1


def shard_schema(schema: str, shard: Shard | None) -> str:
    """The dbt schema of a run: ``schema`` itself for the whole project, else
    ``<schema>_shard_<i>_of_<n>`` (its stored failures in ``<schema>_shard_<i>_of_<n>_audit``).

    Each shard builds its own models there, so shards run in parallel without racing on dbt's
    relations, and a shard's incremental models hold only its own symbols. A shard of another
    count is another schema (built from scratch on its first run).
    """
    if shard is None:
        return schema
    return f"{schema}_shard_{shard.index}_of_{shard.count}"


def shard_of(symbol: str, count: int) -> int:
    """The 0-based shard of ``symbol`` among ``count``: first 32 bits of md5, modulo.

    Same value as :func:`shard_sql` and dbt's ``mdq_shard_number`` (md5 is the same in
    every PostgreSQL and in Citus' workers; ``hashtext`` is not guaranteed stable).
    """
    return int(hashlib.md5(symbol.encode()).hexdigest()[:8], 16) % count


def shard_sql(column: sql.Composable, count: int) -> sql.Composed:
    """SQL of the 0-based shard of the text expression ``column`` among ``count``."""
    return sql.SQL("mod(('x' || left(md5({}), 8))::bit(32)::bigint, {})").format(
        column, sql.Literal(count)
    )


def shard_filter(column: sql.Composable, shard: Shard | None) -> sql.Composable:
    """A boolean SQL condition: the symbol ``column`` belongs to ``shard`` (None: true);
    null symbols belong to the first shard."""
    if shard is None:
        return sql.SQL("true")
    null_side = sql.SQL("true" if shard.index == 1 else "false")
    return sql.SQL("(case when {col} is null then {null_side} else {shard} = {k} end)").format(
        col=column, null_side=null_side, shard=shard_sql(column, shard.count), k=shard.index - 1
    )


@dataclass(frozen=True)
class CheckScope:
    """What one run re-reads.

    Attributes:
        mode: ``full`` (every candle) or ``incremental`` (the series in ``check_scopes``
            under ``scope_id``, from their ``read_from``).
        scope_id: the key of this run's ``check_scopes`` rows (incremental only).
        changes_xmin: the change-log position this run read up to (the oldest transaction
            still running when it started): the next run's starting point when this one
            succeeds; None when the change log is not installed.
        since_xmin: the position the incremental run read from (None for full).
        series: series re-read (incremental), else None.
        shard: the shard this run owns, or None.
        reason: why a run asked to be incremental is full (``no earlier run``, ...), or None.
    """

    mode: Literal["full", "incremental"]
    scope_id: str | None
    changes_xmin: int | None
    since_xmin: int | None = None
    series: int | None = None
    shard: Shard | None = None
    reason: str | None = None

    @property
    def incremental(self) -> bool:
        """True for an incremental run."""
        return self.mode == "incremental"

    def describe(self) -> str:
        """One human line: ``incremental: 12 series re-read`` or ``full (reason)``."""
        shard = f", shard {self.shard.label}" if self.shard else ""
        if self.incremental:
            return f"incremental: {self.series} series re-read{shard}"
        return f"full{shard}" + (f" ({self.reason})" if self.reason else "")


def change_log_ready(conn: psycopg.Connection) -> bool:
    """Whether the three triggers filling ``candle_changes`` are on ``market_data``."""
    row = conn.execute(
        """
        select count(*)
        from pg_trigger
        where tgrelid = to_regclass('market_data') and tgname = any(%s) and tgenabled <> 'D'
        """,
        (list(CHANGE_TRIGGERS),),
    ).fetchone()
    return bool(row) and int(row[0]) == len(CHANGE_TRIGGERS)


def current_xmin(conn: psycopg.Connection) -> int:
    """The oldest transaction id still running (``pg_snapshot_xmin``), as an integer."""
    row = conn.execute("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def last_watermark(conn: psycopg.Connection, shard: Shard | None) -> int | None:
    """Where the last successful run covering ``shard`` read the change log up to.

    A run of the whole project (no shard) covers every shard; a shard's own runs cover it.

    Returns:
        ``quality_runs.changes_xmin`` of the latest such run, or None (no such run).
    """
    row = conn.execute(
        """
        select max(changes_xmin)
        from quality_runs
        where changes_xmin is not null and (shard is null or shard = %s)
        """,
        (shard.label if shard else None,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def write_scope(
    conn: psycopg.Connection,
    *,
    since_xmin: int,
    shard: Shard | None,
    symbols: Collection[str] | None,
) -> tuple[str, int]:
    """Write the series changed from ``since_xmin`` on into ``check_scopes``.

    Args:
        conn: an open connection (the caller commits).
        since_xmin: read the changes of transactions with this id or later.
        shard: only the shard's symbols (None: all).
        symbols: only these symbols (None: all).

    Returns:
        (scope_id, number of series).
    """
    scope_id = uuid.uuid4().hex
    query = sql.SQL(
        """
        with changed as (
            select symbol, timeframe, min(first_ts) as first_changed_ts
            from candle_changes
            where xid >= %(since)s
                and (%(any_symbol)s or symbol = any(%(symbols)s))
                and {shard}
            group by symbol, timeframe
        )
        insert into check_scopes (scope_id, symbol, timeframe, read_from)
        select
            %(scope)s,
            changed.symbol,
            changed.timeframe,
            coalesce(
                (
                    -- the context candles before the first change, by the unique key's index
                    select min(previous.ts)
                    from (
                        select market_data.ts
                        from market_data
                        where market_data.symbol = changed.symbol
                            and market_data.timeframe = changed.timeframe
                            and market_data.ts < changed.first_changed_ts
                        order by market_data.ts desc
                        limit %(context)s
                    ) as previous
                ),
                changed.first_changed_ts
            )
        from changed
        """
    ).format(shard=shard_filter(sql.Identifier("symbol"), shard))
    cursor = conn.execute(
        query,
        {
            "since": since_xmin,
            "any_symbol": symbols is None,
            "symbols": list(symbols or ()),
            "scope": scope_id,
            "context": CONTEXT_CANDLES,
        },
    )
    if max(cursor.rowcount, 0):
        _widen_to_venues(conn, scope_id)
    row = conn.execute(
        "select count(*) from check_scopes where scope_id = %s", (scope_id,)
    ).fetchone()
    series = int(row[0]) if row else 0
    # fresh statistics: the checks join it to market_data (a table never analysed looks
    # empty to the planner, which then picks nested loops over every re-read candle)
    conn.execute("analyze check_scopes")
    return scope_id, series


def _widen_to_venues(conn: psycopg.Connection, scope_id: str) -> None:
    """Re-read every series of a changed series' venue and timeframe from the venue's
    earliest ``read_from`` (and its context candles).

    The gap check classes a hole ``venue_outage`` when another symbol of the same venue
    (``instruments.exchange``, else the calendar, as in ``mdq_sessionized_candles``) has an
    overlapping hole: both holes must be read for the incremental run to class it as a full run
    does. Shards and ``--symbols`` runs widen too (the other series' rows are read, not
    reported: the output filters keep only the run's own).
    """
    from mdq.calendars import DEFAULT_CALENDAR_BY_ASSET_CLASS

    conn.execute(
        """
        with recursive series as ("""
        + SERIES_LOOSE_SCAN
        + """),

        labelled as (
            select
                series.symbol,
                series.timeframe,
                coalesce(
                    instruments.exchange,
                    instruments.calendar,
                    %(defaults)s::jsonb ->> (
                        select m.asset_class
                        from market_data as m
                        where m.symbol = series.symbol and m.timeframe = series.timeframe
                        limit 1
                    )
                ) as venue
            from series
            left join instruments on instruments.symbol = series.symbol
        ),

        venues as (
            select labelled.venue, labelled.timeframe, min(scopes.read_from) as venue_from
            from check_scopes as scopes
            inner join labelled
                on labelled.symbol = scopes.symbol and labelled.timeframe = scopes.timeframe
            where scopes.scope_id = %(scope)s and labelled.venue is not null
            group by labelled.venue, labelled.timeframe
        ),

        widened as (
            select
                labelled.symbol,
                labelled.timeframe,
                coalesce(
                    (
                        select min(previous.ts)
                        from (
                            select m.ts
                            from market_data as m
                            where m.symbol = labelled.symbol
                                and m.timeframe = labelled.timeframe
                                and m.ts < venues.venue_from
                            order by m.ts desc
                            limit %(context)s
                        ) as previous
                    ),
                    venues.venue_from
                ) as read_from
            from labelled
            inner join venues
                on venues.venue = labelled.venue and venues.timeframe = labelled.timeframe
        )

        insert into check_scopes as scopes (scope_id, symbol, timeframe, read_from)
        select %(scope)s, symbol, timeframe, read_from
        from widened
        on conflict (scope_id, symbol, timeframe) do update
            set read_from = least(scopes.read_from, excluded.read_from)
        """,
        {
            "scope": scope_id,
            "defaults": Jsonb(dict(DEFAULT_CALENDAR_BY_ASSET_CLASS)),
            "context": CONTEXT_CANDLES,
        },
    )


def drop_scope(conn: psycopg.Connection, scope_id: str) -> None:
    """Delete a run's ``check_scopes`` rows."""
    conn.execute("delete from check_scopes where scope_id = %s", (scope_id,))


def prune_changes(conn: psycopg.Connection) -> int:
    """Delete change-log rows that every shard's (and the whole project's) latest successful
    run has read; returns how many. A shard label that once ran keeps its rows until a run of
    the whole project passes them."""
    cursor = conn.execute(
        """
        with per_label as (
            select shard, max(changes_xmin) as xmin
            from quality_runs
            where changes_xmin is not null
            group by shard
        ),
        whole as (
            select max(xmin) as xmin from per_label where shard is null
        ),
        horizon as (
            select min(greatest(per_label.xmin, whole.xmin)) as xmin
            from per_label
            cross join whole
        )
        delete from candle_changes
        where xid < (select xmin from horizon)
        """
    )
    return max(cursor.rowcount, 0)
