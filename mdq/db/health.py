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
    STALE_TYPES,
    AlertPlan,
    FailureStreak,
    SeriesHealth,
)


def read_series(conn: psycopg.Connection) -> list[SeriesHealth]:
    """Every (symbol, timeframe) with candles or open anomalies, sorted by symbol, timeframe.

    Counts open anomalies of the stale, gap and outlier types (mdq.health_rules).
    """
    rows = conn.execute(
        """
        with last_candles as (
            select symbol, timeframe, max(ts) as last_ts
            from market_data
            group by symbol, timeframe
        ),
        open_anomalies as (
            select
                symbol,
                timeframe,
                count(*) filter (where anomaly_type = any(%(stale)s)) as open_stale,
                count(*) filter (where anomaly_type = any(%(gaps)s)) as open_gaps,
                count(*) filter (where anomaly_type = any(%(outliers)s)) as open_outliers,
                count(*) filter (
                    where severity = 'error'
                        and anomaly_type = any(%(gaps)s || %(outliers)s)
                ) as open_errors,
                count(*) filter (
                    where severity = 'error' and check_name = %(quarantine)s
                ) as open_rejected_errors
            from data_anomalies
            where status = 'open' and symbol is not null and timeframe is not null
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
                coalesce(a.open_rejected_errors, 0) as open_rejected_errors
            from last_candles as c
            full outer join open_anomalies as a
                on a.symbol = c.symbol and a.timeframe = c.timeframe
        )
        select * from final order by symbol, timeframe
        """,
        {
            "stale": list(STALE_TYPES),
            "gaps": list(GAP_TYPES),
            "outliers": list(OUTLIER_TYPES),
            "quarantine": QUARANTINE_CHECK,
        },
    ).fetchall()
    return [
        SeriesHealth(str(s), str(t), last, int(st), int(g), int(o), int(e), int(r))
        for s, t, last, st, g, o, e, r in rows
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
        values: the columns of health_snapshots (``problems``/``series`` as JSON lists).
    """
    row = conn.execute(
        """
        insert into health_snapshots (
            taken_at, as_of, status, series_tracked, stale_series, failing_symbols,
            open_gaps, open_outliers, open_error_anomalies, problems, series
        ) values (
            %(taken_at)s, %(as_of)s, %(status)s, %(series_tracked)s, %(stale_series)s,
            %(failing_symbols)s, %(open_gaps)s, %(open_outliers)s, %(open_error_anomalies)s,
            %(problems)s, %(series)s
        )
        returning snapshot_id
        """,
        {**values, "problems": Jsonb(values["problems"]), "series": Jsonb(values["series"])},
    ).fetchone()
    assert row is not None
    return int(row[0])


def open_error_count(conn: psycopg.Connection) -> int:
    """Open error-severity anomalies of any type."""
    row = conn.execute(
        "select count(*) from data_anomalies where status = 'open' and severity = 'error'"
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
