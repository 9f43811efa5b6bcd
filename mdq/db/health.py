"""SQL for health monitoring: read series state and failure streaks, write snapshots and
alert streaks (tables of migration 030)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from mdq.db import SERIES_LOOSE_SCAN
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
        with recursive open_anomalies as (
            select
                a.symbol, a.timeframe, a.check_name, a.anomaly_type, a.severity, t.triage_status
            from data_anomalies as a
            inner join data_anomaly_triage as t on t.anomaly_id = a.anomaly_id
            where a.status = 'open' and a.symbol is not null and a.timeframe is not null
        ),
        series as ("""
        + SERIES_LOOSE_SCAN
        + """),
        last_candles as (
            select
                series.symbol,
                series.timeframe,
                (
                    select max(m.ts)
                    from market_data as m
                    where m.symbol = series.symbol and m.timeframe = series.timeframe
                ) as last_ts
            from series
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


#: Per series (symbol, timeframe): the newest candle before as_of that lies in a session of its
#: calendar, its slot ordinal, and the completed slots of its calendar at as_of. The same rule
#: as the dbt test ``candle_staleness`` (dbt_project/macros/tests/test_candle_staleness.sql), but
#: read by index look-ups instead of sessionizing every candle: the series by a loose index scan
#: of market_data's unique key (symbol, timeframe, ts), the last in-session candle by a backward
#: index scan of each series (it stops at the first candle inside a session), the current
#: session by the enumerations' unique index.
_STALENESS_SQL = (
    "with recursive series as ("
    + SERIES_LOOSE_SCAN
    + """),

sessions as not materialized (
    select * from {sessions}
    union all
    select * from {clock_sessions}
),

calendared as (
    select
        series.symbol,
        series.timeframe,
        newest.asset_class,
        coalesce(instruments.calendar, %(defaults)s::jsonb ->> newest.asset_class) as calendar,
        case
            when series.timeframe = '1d' then 'session'
            else coalesce(labels.intraday_grid, 'session')
        end as grid
    from series
    cross join lateral (
        select m.asset_class
        from market_data as m
        where m.symbol = series.symbol and m.timeframe = series.timeframe
            and m.ts < %(as_of)s
        order by m.ts desc
        limit 1
    ) as newest
    left join {instruments} as instruments
        on series.symbol = instruments.symbol
    left join {labels} as labels
        on series.symbol = labels.symbol and series.timeframe = labels.timeframe
),

last_in_session as (
    select calendared.*, found.ts as last_ts, found.slot_ordinal
    from calendared
    inner join {calendars} as calendars
        on calendared.calendar = calendars.calendar
    cross join lateral (
        select
            m.ts,
            case
                when calendared.timeframe = '1d' then s.bars_before
                when m.ts < s.grid_anchor_at then s.bars_before
                else s.bars_before + s.stub_bars + floor(
                    date_part('epoch', m.ts - s.grid_anchor_at) / s.timeframe_seconds
                )::bigint
            end as slot_ordinal
        from market_data as m
        inner join sessions as s
            on s.calendar = calendared.calendar
            and s.timeframe = calendared.timeframe
            and s.grid = calendared.grid
            and s.session_date = (
                (m.ts at time zone calendars.timezone)
                + make_interval(hours => calendars.day_rollover_hours)
            )::date
        where m.symbol = calendared.symbol and m.timeframe = calendared.timeframe
            and m.ts < %(as_of)s
            and (calendared.timeframe = '1d' or (m.ts >= s.open_at and m.ts < s.close_at))
        order by m.ts desc
        limit 1
    ) as found
),

current_sessions as (
    select keys.calendar, keys.timeframe, keys.grid, current_session.*
    from (select distinct calendar, timeframe, grid from last_in_session) as keys
    cross join lateral (
        select
            s.grid_anchor_at, s.stub_bars, s.timeframe_seconds, s.close_at, s.bars_before,
            s.bars_in_session
        from sessions as s
        where s.calendar = keys.calendar and s.timeframe = keys.timeframe
            and s.grid = keys.grid and s.open_at <= %(as_of)s
        order by s.session_date desc
        limit 1
    ) as current_session
),

completed as (
    select
        last_in_session.*,
        current_sessions.bars_before + case
            when %(as_of)s >= current_sessions.close_at then current_sessions.bars_in_session
            when last_in_session.timeframe = '1d' then 0
            when %(as_of)s < current_sessions.grid_anchor_at then 0
            else least(
                current_sessions.stub_bars + floor(
                    extract(epoch from %(as_of)s - current_sessions.grid_anchor_at)
                    / current_sessions.timeframe_seconds
                )::bigint,
                current_sessions.bars_in_session
            )
        end as completed_slots
    from last_in_session
    inner join current_sessions
        on last_in_session.calendar = current_sessions.calendar
        and last_in_session.timeframe = current_sessions.timeframe
        and last_in_session.grid = current_sessions.grid
)

select
    symbol,
    asset_class,
    timeframe,
    calendar,
    last_ts,
    greatest(completed_slots - (slot_ordinal + 1), 0)::bigint as missed_candles
from completed
order by symbol, timeframe
"""
)


def series_staleness(
    conn: psycopg.Connection,
    schema: str,
    *,
    as_of: datetime,
    default_calendars: dict[str, str],
) -> list[tuple[str, str, str, str, datetime, int]]:
    """Completed candles each series missed since its last in-session candle, at ``as_of``.

    The measure of the dbt test ``candle_staleness`` (see ``_STALENESS_SQL``) on the relations
    dbt built in ``schema`` (the session enumerations, instruments, series labels, calendars),
    by index look-ups: its cost follows the number of series, not of candles.

    Args:
        conn: an open connection.
        schema: dbt's schema.
        as_of: reference time (UTC-aware).
        default_calendars: asset class → calendar for symbols without an instruments row
            (dbt var ``calendar_by_asset_class``).

    Returns:
        ``(symbol, asset_class, timeframe, calendar, last_ts, missed_candles)`` per series
        with an in-session candle before ``as_of`` and a session of its calendar opened by
        then, sorted by symbol and timeframe.
    """
    from psycopg import sql

    def relation(name: str) -> sql.Composable:
        return sql.Identifier(schema, name)

    query = sql.SQL(_STALENESS_SQL).format(
        sessions=relation("int_trading_sessions_enumerated"),
        clock_sessions=relation("int_trading_sessions_clock_enumerated"),
        instruments=relation("stg_market__instruments"),
        labels=relation("stg_market__series_labels"),
        calendars=relation("stg_market__trading_calendars"),
    )
    rows = conn.execute(query, {"as_of": as_of, "defaults": Jsonb(default_calendars)}).fetchall()
    return [(str(s), str(a), str(t), str(c), last, int(n)) for s, a, t, c, last, n in rows]


def enumerations_cover(conn: psycopg.Connection, schema: str, day: datetime) -> bool:
    """Whether dbt's session enumerations in ``schema`` exist and reach past ``day`` for every
    calendar of trading_sessions (else they are older than the sessions and dbt must rebuild
    them before staleness can be judged at ``day``)."""
    from psycopg import sql

    for name in ("int_trading_sessions_enumerated", "int_trading_sessions_clock_enumerated"):
        row = conn.execute("select to_regclass(%s)", (f'"{schema}"."{name}"',)).fetchone()
        if row is None or row[0] is None:
            return False
    for name in ("stg_market__instruments", "stg_market__series_labels"):
        row = conn.execute("select to_regclass(%s)", (f'"{schema}"."{name}"',)).fetchone()
        if row is None or row[0] is None:
            return False
    behind = conn.execute(
        sql.SQL(
            """
            select count(*)
            from (select distinct calendar from trading_sessions) as calendars
            where not exists (
                select 1 from {} as e
                where e.calendar = calendars.calendar and e.session_date > %s::date
            )
            """
        ).format(sql.Identifier(schema, "int_trading_sessions_enumerated")),
        (day,),
    ).fetchone()
    return behind is not None and behind[0] == 0
