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

TStatusFilter = Literal["open", "resolved", "all"]


@dataclass(frozen=True)
class PersistCounts:
    """What one persist did.

    Attributes:
        inserted: new anomalies.
        updated: anomalies seen again (reopened ones included).
        reopened: anomalies that were resolved and came back.
        resolved: open anomalies that their test no longer reported.
    """

    inserted: int
    updated: int
    reopened: int
    resolved: int


@dataclass(frozen=True)
class StoredAnomaly:
    """One row of ``data_anomalies`` (all instants UTC-aware)."""

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


_STORED_COLUMNS = [f for f in StoredAnomaly.__dataclass_fields__]


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
            """
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
            """,
            {
                "seen": seen_at,
                "done": list(completed_test_ids),
                "retire": retire_unknown_except is not None,
                "known": list(retire_unknown_except or ()),
            },
        ).rowcount
    return PersistCounts(inserted, updated, reopened, max(resolved, 0))


def open_counts(
    conn: psycopg.Connection, test_ids: Collection[str] | None = None
) -> dict[str, int]:
    """Open anomalies by severity, e.g. ``{"error": 2, "warn": 5}`` (both keys always present).

    Args:
        conn: an open connection.
        test_ids: only anomalies of these dbt tests (None: all).
    """
    rows = conn.execute(
        """
        select severity, count(*)
        from data_anomalies
        where status = 'open' and (%(all)s or dbt_unique_id = any(%(ids)s))
        group by severity
        """,
        {"all": test_ids is None, "ids": list(test_ids or ())},
    ).fetchall()
    counts = {"error": 0, "warn": 0}
    counts.update({str(severity): int(n) for severity, n in rows})
    return counts


def list_anomalies(conn: psycopg.Connection, status: TStatusFilter = "open") -> list[StoredAnomaly]:
    """Stored anomalies, sorted by severity (error first), symbol, timeframe, ts_start, check.

    Args:
        conn: an open connection.
        status: ``open``, ``resolved`` or ``all``.
    """
    query = sql.SQL(
        """
        select {columns}
        from data_anomalies
        where %(status)s = 'all' or status = %(status)s
        order by
            severity = 'error' desc, symbol nulls first, timeframe, ts_start nulls first,
            check_name, anomaly_id
        """
    ).format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in _STORED_COLUMNS))
    return [StoredAnomaly(*row) for row in conn.execute(query, {"status": status}).fetchall()]
