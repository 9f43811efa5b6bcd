"""SQL for health monitoring: read series state and failure streaks, write snapshots and
alert streaks (tables of migration 030)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from mdq.health_rules import (
    GAP_TYPES,
    OUTLIER_TYPES,
    QUARANTINE_CHECK,
    SPLIT_TYPES,
    STALE_TYPES,
    AlertPlan,
    FailureStreak,
    SeriesHealth,
)


def read_series(conn: psycopg.Connection) -> list[SeriesHealth]:
    """Every (symbol, timeframe) with candles or open anomalies, sorted by symbol, timeframe.

    Counts open anomalies of the stale, gap, outlier and split types (mdq.health_rules), and
    their error-severity ones; acknowledged and muted anomalies (view ``data_anomaly_triage``)
    are counted apart, not as problems.
    """
    rows = conn.execute(
        """
        with open_anomalies as (
            select
                a.symbol, a.timeframe, a.check_name, a.anomaly_type, a.severity, t.triage_status
            from data_anomalies as a
            inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id
            where a.status = 'open' and a.symbol is not null and a.timeframe is not null
        ),
        last_candles as (
            select symbol, timeframe, max(ts) as last_ts
            from market_data
            group by symbol, timeframe
        ),
        counted as (
            select
                symbol,
                timeframe,
                count(*) filter (
                    where triage_status = 'open' and anomaly_type = any(%(stale)s)
                ) as open_stale,
                count(*) filter (
                    where triage_status = 'open' and anomaly_type = any(%(gaps)s)
                ) as open_gaps,
                count(*) filter (
                    where triage_status = 'open' and anomaly_type = any(%(outliers)s)
                ) as open_outliers,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and anomaly_type = any(%(gaps)s || %(outliers)s)
                ) as open_errors,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and check_name = %(quarantine)s
                ) as open_rejected_errors,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and anomaly_type = any(%(stale)s)
                ) as stale_errors,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and anomaly_type = any(%(gaps)s)
                ) as gap_errors,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and anomaly_type = any(%(outliers)s)
                ) as outlier_errors,
                count(*) filter (
                    where triage_status = 'open' and anomaly_type = any(%(splits)s)
                ) as open_splits,
                count(*) filter (
                    where triage_status = 'open' and severity = 'error'
                        and anomaly_type = any(%(splits)s)
                ) as split_errors,
                count(*) filter (where triage_status = 'acknowledged') as acknowledged,
                count(*) filter (where triage_status = 'muted') as muted
            from open_anomalies
            group by symbol, timeframe
        ),
        final as (
            select
                coalesce(c.symbol, a.symbol) as symbol,
                coalesce(c.timeframe, a.timeframe) as timeframe,
                c.last_ts,
                coalesce(a.open_stale, 0) as open_stale,
                coalesce(a.open_gaps, 0) as open_gaps,
                coalesce(a.open_outliers, 0) as open_outliers,
                coalesce(a.open_errors, 0) as open_errors,
                coalesce(a.open_rejected_errors, 0) as open_rejected_errors,
                coalesce(a.stale_errors, 0) as stale_errors,
                coalesce(a.gap_errors, 0) as gap_errors,
                coalesce(a.outlier_errors, 0) as outlier_errors,
                coalesce(a.open_splits, 0) as open_splits,
                coalesce(a.split_errors, 0) as split_errors,
                coalesce(a.acknowledged, 0) as acknowledged,
                coalesce(a.muted, 0) as muted
            from last_candles as c
            full outer join counted as a
                on a.symbol = c.symbol and a.timeframe = c.timeframe
        )
        select * from final order by symbol, timeframe
        """,
        {
            "stale": list(STALE_TYPES),
            "gaps": list(GAP_TYPES),
            "outliers": list(OUTLIER_TYPES),
            "splits": list(SPLIT_TYPES),
            "quarantine": QUARANTINE_CHECK,
        },
    ).fetchall()
    return [
        SeriesHealth(str(row[0]), str(row[1]), row[2], *(int(n) for n in row[3:])) for row in rows
    ]


def read_failures(conn: psycopg.Connection) -> list[FailureStreak]:
    """Rows of symbol_failure_tracking with at least one consecutive failure."""
    rows = conn.execute(
        """
        select symbol, timeframe, consecutive_failures, last_error
        from symbol_failure_tracking
        where consecutive_failures > 0
        order by symbol, timeframe
        """
    ).fetchall()
    return [FailureStreak(str(s), str(t), int(n), e) for s, t, n, e in rows]


def lock_streaks(conn: psycopg.Connection) -> set[str]:
    """Lock the streak table for this transaction (one health run at a time) and return the
    keys of the active streaks."""
    conn.execute("lock table health_alert_streaks in exclusive mode")
    return {str(k) for (k,) in conn.execute("select problem_key from health_alert_streaks")}


def record_streaks(conn: psycopg.Connection, plan: AlertPlan, now: datetime) -> None:
    """Start, continue and end streaks as planned (``alerted_at`` = ``now`` for new ones)."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into health_alert_streaks
                (problem_key, kind, subject, started_at, last_seen_at, alerted_at, message)
            values (%s, %s, %s, %s, %s, %s, %s)
            """,
            [(p.key, p.kind, p.subject, now, now, now, p.message) for p in plan.start],
        )
        cur.executemany(
            "update health_alert_streaks set last_seen_at = %s, message = %s"
            " where problem_key = %s",
            [(now, p.message, p.key) for p in plan.ongoing],
        )
        cur.execute(
            "delete from health_alert_streaks where problem_key = any(%s)", (list(plan.ended),)
        )


def insert_snapshot(conn: psycopg.Connection, values: dict[str, Any]) -> int:
    """Write one health snapshot; returns its id.

    Args:
        conn: an open connection.
        values: the columns of health_snapshots (``problems``/``series`` as JSON lists,
            ``triage`` as a JSON object, ``min_severity`` warn or error).
    """
    row = conn.execute(
        """
        insert into health_snapshots (
            taken_at, as_of, status, series_tracked, stale_series, failing_symbols,
            open_gaps, open_outliers, open_error_anomalies, problems, series, min_severity,
            triage
        ) values (
            %(taken_at)s, %(as_of)s, %(status)s, %(series_tracked)s, %(stale_series)s,
            %(failing_symbols)s, %(open_gaps)s, %(open_outliers)s, %(open_error_anomalies)s,
            %(problems)s, %(series)s, %(min_severity)s, %(triage)s
        )
        returning snapshot_id
        """,
        {
            "min_severity": "error",
            **values,
            "problems": Jsonb(values["problems"]),
            "series": Jsonb(values["series"]),
            "triage": Jsonb(values.get("triage", {})),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def open_error_count(conn: psycopg.Connection) -> int:
    """Open error-severity anomalies of any type, neither acknowledged nor muted."""
    row = conn.execute(
        "select count(*) from data_anomalies as a"
        " inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id"
        " where t.triage_status = 'open' and a.severity = 'error'"
    ).fetchone()
    return int(row[0]) if row else 0


def snapshot_count(conn: psycopg.Connection) -> int:
    """Number of health snapshots (for tests and the CLI)."""
    row = conn.execute("select count(*) from health_snapshots").fetchone()
    return int(row[0]) if row else 0


__all__: Sequence[str] = (
    "insert_snapshot",
    "lock_streaks",
    "open_error_count",
    "read_failures",
    "read_series",
    "record_streaks",
    "snapshot_count",
)
