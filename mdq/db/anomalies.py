"""SQL for ``data_anomalies``: read dbt's stored failures, upsert findings, resolve, list.

Lifecycle of one anomaly (its identity is the fingerprint):

- first seen → inserted ``open`` (first_seen_at = last_seen_at = the run's time, times_seen 1);
- seen again → ``last_seen_at`` and ``times_seen`` move; the descriptive columns take the
  latest values (identical on an identical re-run, so nothing else changes);
- not seen by a run of the test that found it → ``resolved`` with ``resolved_at``;
- seen again after that → reopened (``open``, ``resolved_at`` cleared, first_seen_at kept).

Identifiers of audit tables go through ``psycopg.sql.Identifier``; values are parameters.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from mdq.anomalies import AnomalyRecord
from mdq.db.check_scope import Shard, shard_filter

#: ``open`` (needs attention), ``acknowledged``, ``muted``, ``resolved``, or ``all``;
#: ``active`` is open, acknowledged and muted together.
TStatusFilter = Literal["open", "acknowledged", "muted", "resolved", "active", "all"]

#: What each ``TStatusFilter`` value selects among the effective statuses.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "muted": ("muted",),
    "resolved": ("resolved",),
    "active": ("open", "acknowledged", "muted"),
    "all": ("open", "acknowledged", "muted", "resolved"),
}


@dataclass(frozen=True)
class PersistCounts:
    """What one persist did.

    Attributes:
        inserted: new anomalies.
        updated: anomalies seen again (reopened ones included).
        reopened: anomalies that were resolved and came back.
        resolved: open anomalies that their test no longer reported.
        acks_ended: acknowledgements ended because their anomaly changed or resolved.
    """

    inserted: int
    updated: int
    reopened: int
    resolved: int
    acks_ended: int = 0


@dataclass(frozen=True)
class StoredAnomaly:
    """One row of ``data_anomalies`` (all instants UTC-aware), with ``triage_status``: its
    effective status now (``open``, ``acknowledged``, ``muted`` or ``resolved``; view
    ``data_anomaly_triage``)."""

    anomaly_id: int
    fingerprint: str
    check_name: str
    dbt_unique_id: str | None
    anomaly_type: str
    severity: str
    symbol: str | None
    asset_class: str | None
    timeframe: str | None
    ts_start: datetime | None
    ts_end: datetime | None
    observed_value: float | None
    expected_value: float | None
    details: dict[str, Any]
    status: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    times_seen: int
    triage_status: str = "open"


_STORED_COLUMNS = [f for f in StoredAnomaly.__dataclass_fields__ if f != "triage_status"]


def read_failing_rows(
    conn: psycopg.Connection, schema: str, table: str, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows of a store_failures audit table, as JSON objects (column → value).

    Args:
        conn: an open connection.
        schema: the audit schema, e.g. ``mdq_audit``.
        table: the audit table (the test's name or alias).
        limit: at most this many rows; ordered by their JSON text so samples are stable.

    Returns:
        One dict per row; timestamps come back as ISO 8601 strings with offset.
        Empty when the table does not exist (the test stored nothing).
    """
    exists = conn.execute(
        "select to_regclass(%s) is not null",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchone()
    if not exists or not exists[0]:
        return []
    query = sql.SQL("select to_jsonb(t) from {} as t").format(sql.Identifier(schema, table))
    if limit is not None:
        query = sql.SQL("{} order by to_jsonb(t)::text limit {}").format(query, sql.Literal(limit))
    return [row[0] for row in conn.execute(query).fetchall()]


def persist_findings(
    conn: psycopg.Connection,
    records: Sequence[AnomalyRecord],
    *,
    completed_test_ids: Collection[str],
    seen_at: datetime,
    retire_unknown_except: Collection[str] | None = None,
    symbols: Collection[str] | None = None,
    shard: Shard | None = None,
    scope_id: str | None = None,
    scoped_test_ids: Collection[str] = (),
) -> PersistCounts:
    """Upsert one run's findings and resolve what its tests no longer report, atomically.

    Args:
        conn: an open connection (the work runs in one transaction on it).
        records: the run's findings, unique by fingerprint.
        completed_test_ids: dbt ids of the tests that ran to a verdict and whose failing rows
            were all read; only their open anomalies can be resolved by absence.
        seen_at: the run's time (UTC-aware): last_seen_at / first_seen_at / resolved_at.
        retire_unknown_except: for a run of the whole project: every test id dbt knows;
            open anomalies of dbt tests not among them (the test was removed) are resolved
            too. Anomalies without a dbt_unique_id (written by other producers) never are.
        symbols: a run restricted to these symbols (``mdq check --symbols``) resolves only
            their anomalies (None: any).
        shard: a run of one shard (``mdq check --shard i/n``) resolves only the anomalies of
            its symbols (:meth:`~mdq.db.check_scope.Shard.owns`): shards never resolve each
            other's findings.
        scope_id: an incremental run's ``check_scopes`` key; with it, the open anomalies of
            ``scoped_test_ids`` are resolved only inside what the run re-read: their series
            is in the scope and their ``ts_start`` is at or after its ``read_from``.
        scoped_test_ids: the tests that read only the scope (the calendar checks).

    Returns:
        The counts.
    """
    with conn.transaction():
        conn.execute(
            """
            create temp table anomaly_stage (
                fingerprint text primary key,
                check_name text,
                dbt_unique_id text,
                anomaly_type text,
                severity text,
                symbol text,
                asset_class text,
                timeframe text,
                ts_start timestamptz,
                ts_end timestamptz,
                observed_value double precision,
                expected_value double precision,
                details jsonb
            ) on commit drop
            """
        )
        with conn.cursor().copy(
            "copy anomaly_stage (fingerprint, check_name, dbt_unique_id, anomaly_type, severity,"
            " symbol, asset_class, timeframe, ts_start, ts_end, observed_value, expected_value,"
            " details) from stdin"
        ) as copy:
            for r in records:
                copy.write_row(
                    (
                        r.fingerprint,
                        r.check_name,
                        r.dbt_unique_id,
                        r.anomaly_type,
                        r.severity,
                        r.symbol,
                        r.asset_class,
                        r.timeframe,
                        r.ts_start,
                        r.ts_end,
                        r.observed_value,
                        r.expected_value,
                        Jsonb(dict(r.details)),
                    )
                )
        row = conn.execute(
            """
            with prior as (
                select a.fingerprint, a.status
                from data_anomalies as a
                inner join anomaly_stage as s on s.fingerprint = a.fingerprint
            ),
            upserted as (
                insert into data_anomalies as a (
                    fingerprint, check_name, dbt_unique_id, anomaly_type, severity, symbol,
                    asset_class, timeframe, ts_start, ts_end, observed_value, expected_value,
                    details, status, first_seen_at, last_seen_at, resolved_at, times_seen
                )
                select
                    fingerprint, check_name, dbt_unique_id, anomaly_type, severity, symbol,
                    asset_class, timeframe, ts_start, ts_end, observed_value, expected_value,
                    details, 'open', %(seen)s, %(seen)s, null, 1
                from anomaly_stage
                on conflict (fingerprint) do update set
                    check_name = excluded.check_name,
                    dbt_unique_id = excluded.dbt_unique_id,
                    severity = excluded.severity,
                    asset_class = excluded.asset_class,
                    ts_end = excluded.ts_end,
                    observed_value = excluded.observed_value,
                    expected_value = excluded.expected_value,
                    details = excluded.details,
                    status = 'open',
                    resolved_at = null,
                    last_seen_at = excluded.last_seen_at,
                    times_seen = a.times_seen + 1
                returning a.fingerprint, (xmax = 0) as inserted
            )
            select
                count(*) filter (where u.inserted),
                count(*) filter (where not u.inserted),
                count(*) filter (where not u.inserted and p.status = 'resolved')
            from upserted as u
            left join prior as p on p.fingerprint = u.fingerprint
            """,
            {"seen": seen_at},
        ).fetchone()
        inserted, updated, reopened = (int(x) for x in row) if row else (0, 0, 0)
        resolved = conn.execute(
            sql.SQL("""
            update data_anomalies as a
            set status = 'resolved', resolved_at = %(seen)s
            where a.status = 'open'
                and (
                    a.dbt_unique_id = any(%(done)s)
                    or (
                        %(retire)s
                        and a.dbt_unique_id is not null
                        and not (a.dbt_unique_id = any(%(known)s))
                    )
                )
                and not exists (
                    select 1 from anomaly_stage as s where s.fingerprint = a.fingerprint
                )
                and (%(any_symbol)s or a.symbol = any(%(symbols)s))
                and {shard}
                and (
                    %(scope)s::text is null
                    or not (a.dbt_unique_id = any(%(scoped)s))
                    or exists (
                        select 1
                        from check_scopes as scopes
                        where scopes.scope_id = %(scope)s
                            and scopes.symbol = a.symbol
                            and scopes.timeframe = a.timeframe
                            and a.ts_start >= scopes.read_from
                    )
                )
            """).format(shard=shard_filter(sql.Identifier("a", "symbol"), shard)),
            {
                "any_symbol": symbols is None,
                "symbols": list(symbols or ()),
                "scope": scope_id,
                "scoped": list(scoped_test_ids),
                "seen": seen_at,
                "done": list(completed_test_ids),
                "retire": retire_unknown_except is not None,
                "known": list(retire_unknown_except or ()),
            },
        ).rowcount
        from mdq.db.triage import end_stale_acks

        acks_ended = end_stale_acks(conn, seen_at=seen_at)
    return PersistCounts(inserted, updated, reopened, max(resolved, 0), acks_ended)


def open_counts(
    conn: psycopg.Connection,
    test_ids: Collection[str] | None = None,
    symbols: Collection[str] | None = None,
    shard: Shard | None = None,
) -> dict[str, int]:
    """Open anomalies by severity, and how many are acknowledged or muted.

    Acknowledged and muted anomalies are not counted under their severity: they neither fail a
    check nor alert.

    Args:
        conn: an open connection.
        test_ids: only anomalies of these dbt tests (None: all).
        symbols: only anomalies of these symbols (None: all, also those without a symbol).
        shard: only anomalies of this shard's symbols (None: all).

    Returns:
        ``{"error": e, "warn": w, "acknowledged": a, "muted": m}`` (every key always present).
    """
    rows = conn.execute(
        sql.SQL("""
        select
            case when t.triage_status = 'open' then a.severity else t.triage_status end,
            count(*)
        from data_anomalies as a
        inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id
        where a.status = 'open' and (%(all)s or a.dbt_unique_id = any(%(ids)s))
            and (%(any_symbol)s or a.symbol = any(%(symbols)s))
            and {shard}
        group by 1
        """).format(shard=shard_filter(sql.Identifier("a", "symbol"), shard)),
        {
            "all": test_ids is None,
            "ids": list(test_ids or ()),
            "any_symbol": symbols is None,
            "symbols": list(symbols or ()),
        },
    ).fetchall()
    counts = {"error": 0, "warn": 0, "acknowledged": 0, "muted": 0}
    counts.update({str(key): int(n) for key, n in rows})
    return counts


def list_anomalies(
    conn: psycopg.Connection,
    status: TStatusFilter = "open",
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    severity: str | None = None,
    anomaly_type: str | None = None,
    check_name: str | None = None,
    since: datetime | None = None,
    seen_at: datetime | None = None,
    anomaly_id: int | None = None,
) -> list[StoredAnomaly]:
    """Stored anomalies, sorted by severity (error first), symbol, timeframe, ts_start, check.

    Args:
        conn: an open connection.
        status: effective status (:data:`STATUS_FILTERS`): ``open`` means open and neither
            acknowledged nor muted.
        symbol: only this symbol.
        timeframe: only this timeframe.
        severity: only ``warn`` or ``error``.
        anomaly_type: only this type (``gap``, ``split_suspect``, ...).
        check_name: only this check.
        since: only findings about data at or after this instant (``ts_end``, else
            ``ts_start``, ≥ since); findings without candle context: first seen at or after it.
        seen_at: only findings a run at exactly this time reported (``last_seen_at``).
        anomaly_id: only this one.

    Raises:
        ValueError: an unknown ``status``.
    """
    if status not in STATUS_FILTERS:
        raise ValueError(f"status {status!r} not supported; expected {', '.join(STATUS_FILTERS)}")
    query = sql.SQL(
        """
        select {columns}, t.triage_status
        from data_anomalies as a
        inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id
        where t.triage_status = any(%(statuses)s)
            and (%(symbol)s::text is null or a.symbol = %(symbol)s)
            and (%(timeframe)s::text is null or a.timeframe = %(timeframe)s)
            and (%(severity)s::text is null or a.severity = %(severity)s)
            and (%(type)s::text is null or a.anomaly_type = %(type)s)
            and (%(check)s::text is null or a.check_name = %(check)s)
            and (
                %(since)s::timestamptz is null
                or coalesce(a.ts_end, a.ts_start) >= %(since)s
                or (a.ts_start is null and a.first_seen_at >= %(since)s)
            )
            and (%(seen)s::timestamptz is null or a.last_seen_at = %(seen)s)
            and (%(id)s::bigint is null or a.anomaly_id = %(id)s)
        order by
            a.severity = 'error' desc, a.symbol nulls first, a.timeframe,
            a.ts_start nulls first, a.check_name, a.anomaly_id
        """
    ).format(columns=sql.SQL(", ").join(sql.Identifier("a", c) for c in _STORED_COLUMNS))
    params = {
        "statuses": list(STATUS_FILTERS[status]),
        "symbol": symbol,
        "timeframe": timeframe,
        "severity": severity,
        "type": anomaly_type,
        "check": check_name,
        "since": since,
        "seen": seen_at,
        "id": anomaly_id,
    }
    return [StoredAnomaly(*row) for row in conn.execute(query, params).fetchall()]


def get_anomaly(conn: psycopg.Connection, anomaly_id: int) -> StoredAnomaly | None:
    """One anomaly by id, with its effective status (None when there is none)."""
    found = list_anomalies(conn, "all", anomaly_id=anomaly_id)
    return found[0] if found else None


def candles_around(
    conn: psycopg.Connection, anomaly: StoredAnomaly, *, context: int = 5, limit: int = 40
) -> list[dict[str, Any]]:
    """The candles of an anomaly's series around it: ``context`` before ``ts_start``, those in
    ``[ts_start, ts_end]`` (at most ``limit``), ``context`` after ``ts_end``.

    Args:
        conn: an open connection.
        anomaly: the anomaly (without symbol, timeframe or ts_start: no candles).
        context: candles on each side.
        limit: at most this many candles inside the anomaly's range.

    Returns:
        Dicts with ts (UTC-aware), open, high, low, close, volume, is_final, source and
        ``inside`` (True for candles within the range), sorted by ts ascending.
    """
    if anomaly.symbol is None or anomaly.timeframe is None or anomaly.ts_start is None:
        return []
    rows = conn.execute(
        """
        with series as (
            select ts, open, high, low, close, volume, is_final, source
            from market_data
            where symbol = %(symbol)s and timeframe = %(timeframe)s
        ),
        before as (
            select * from series where ts < %(start)s order by ts desc limit %(context)s
        ),
        inside as (
            select * from series
            where ts >= %(start)s and ts <= %(end)s
            order by ts limit %(limit)s
        ),
        after as (
            select * from series where ts > %(end)s order by ts limit %(context)s
        ),
        final as (
            select *, false as inside from before
            union all
            select *, true as inside from inside
            union all
            select *, false as inside from after
        )
        select ts, open, high, low, close, volume, is_final, source, inside
        from final
        order by ts
        """,
        {
            "symbol": anomaly.symbol,
            "timeframe": anomaly.timeframe,
            "start": anomaly.ts_start,
            "end": anomaly.ts_end or anomaly.ts_start,
            "context": context,
            "limit": limit,
        },
    ).fetchall()
    names = ("ts", "open", "high", "low", "close", "volume", "is_final", "source", "inside")
    return [dict(zip(names, row, strict=True)) for row in rows]


def record_run(
    conn: psycopg.Connection,
    *,
    seen_at: datetime,
    as_of: datetime | None,
    full_run: bool,
    changes_xmin: int | None = None,
    scope: str = "full",
    shard: Shard | None = None,
) -> None:
    """Note a recorded quality run in ``quality_runs`` (its ``as_of``: the given one, or
    ``seen_at`` for a live run).

    Args:
        conn: an open connection.
        seen_at: the run's time.
        as_of: its reference time (None: live).
        full_run: the whole project ran, for every symbol.
        changes_xmin: the change-log position the next incremental run may start from
            (:class:`mdq.db.check_scope.CheckScope`); None: this run is no starting point.
        scope: ``full`` or ``incremental``.
        shard: the shard it checked (None: every symbol).
    """
    conn.execute(
        """
        insert into quality_runs (seen_at, as_of, full_run, changes_xmin, scope, shard)
        values (%s, %s, %s, %s, %s, %s)
        """,
        (seen_at, as_of or seen_at, full_run, changes_xmin, scope, shard.label if shard else None),
    )


def latest_recorded_as_of(conn: psycopg.Connection) -> datetime | None:
    """The latest ``as_of`` of a recorded quality run (None before the first)."""
    row = conn.execute("select max(as_of) from quality_runs").fetchone()
    return row[0] if row else None


def series_ends(conn: psycopg.Connection) -> list[tuple[str, str, datetime]]:
    """Every (symbol, timeframe) of ``market_data`` with the open time of its newest candle
    (UTC-aware), sorted by symbol, timeframe."""
    rows = conn.execute(
        "select symbol, timeframe, max(ts) from market_data group by 1, 2 order by 1, 2"
    ).fetchall()
    return [(str(s), str(t), last) for s, t, last in rows]


def list_open_and_resolved_since(conn: psycopg.Connection, since: datetime) -> list[StoredAnomaly]:
    """The open anomalies (``data_anomalies.status``, whatever their triage) plus those
    resolved at or after ``since``: what one quality run reports on.

    Sorted as :func:`list_anomalies`.

    Args:
        conn: an open connection.
        since: UTC-aware; a quality run's ``seen_at`` (the resolved_at of what it resolved).
    """
    query = sql.SQL(
        """
        select {columns}, t.triage_status
        from data_anomalies as a
        inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id
        where a.status = 'open' or (a.status = 'resolved' and a.resolved_at >= %(since)s)
        order by
            a.severity = 'error' desc, a.symbol nulls first, a.timeframe,
            a.ts_start nulls first, a.check_name, a.anomaly_id
        """
    ).format(columns=sql.SQL(", ").join(sql.Identifier("a", c) for c in _STORED_COLUMNS))
    return [StoredAnomaly(*row) for row in conn.execute(query, {"since": since}).fetchall()]
