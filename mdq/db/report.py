"""SQL behind ``mdq report``: what the quality report reads, never writes.

Every function takes an open connection and returns plain Python values; the report module
(:mod:`mdq.report`) shapes them into pages. Values go in as parameters, never pasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from mdq.db import SERIES_LOOSE_SCAN


def list_series(
    conn: psycopg.Connection, symbols: Sequence[str] | None
) -> list[tuple[str, str, str, str | None]]:
    """Every (symbol, timeframe) in ``market_data``, with its newest row's asset class and the
    instrument's calendar, sorted by symbol then timeframe.

    Walks the unique index on (symbol, timeframe, ts) one series at a time (a recursive skip
    scan), so its cost follows the number of series, not of candles.

    Returns:
        ``(symbol, timeframe, asset_class, calendar or None)`` tuples.
    """
    rows = conn.execute(
        """
        with recursive series as ("""
        + SERIES_LOOSE_SCAN
        + """),

        final as (
            select
                series.symbol,
                series.timeframe,
                newest.asset_class,
                instruments.calendar
            from series
            cross join lateral (
                select market_data.asset_class
                from market_data
                where market_data.symbol = series.symbol
                    and market_data.timeframe = series.timeframe
                order by market_data.ts desc
                limit 1
            ) as newest
            left join instruments on instruments.symbol = series.symbol
            where %(symbols)s::text[] is null or series.symbol = any(%(symbols)s)
        )

        select * from final order by symbol, timeframe
        """,
        {"symbols": list(symbols) if symbols else None},
    ).fetchall()
    return [(str(a), str(b), str(c), d) for a, b, c, d in rows]


def read_candle_blocks(
    conn: psycopg.Connection,
    series: Sequence[tuple[str, str]],
    since: datetime | None,
) -> list[tuple[int, bytes]]:
    """The candles of ``series``, packed by PostgreSQL into one binary block per series.

    A block is the series' candles sorted by ``ts``, 48 bytes each, big-endian: the open
    time in milliseconds since the epoch (int8, UTC), then open, high, low, close (float8,
    quote currency) and volume (float8, NaN when null) — ``int8send``/``float8send``
    concatenated by ``string_agg``. :class:`mdq.report.Candles` reads the blocks with numpy;
    no candle becomes a Python object, which is what makes 8.76M candles cheap to read.

    Returns:
        ``(index in series, block)`` for each series with candles in scope, any order.
    """
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            """
            with wanted as (
                select wanted.symbol, wanted.timeframe, wanted.series_index
                from unnest(%(symbols)s::text[], %(timeframes)s::text[])
                    with ordinality as wanted (symbol, timeframe, series_index)
            ),

            final as (
                select
                    (wanted.series_index - 1)::int4 as series_index,
                    string_agg(
                        int8send((extract(epoch from market_data.ts) * 1000)::int8)
                        || float8send(market_data.open::float8)
                        || float8send(market_data.high::float8)
                        || float8send(market_data.low::float8)
                        || float8send(market_data.close::float8)
                        || float8send(coalesce(market_data.volume::float8, 'NaN')),
                        ''::bytea
                        order by market_data.ts
                    ) as block
                from market_data
                inner join wanted
                    on market_data.symbol = wanted.symbol
                    and market_data.timeframe = wanted.timeframe
                where %(since)s::timestamptz is null or market_data.ts >= %(since)s
                group by wanted.series_index
            )

            select * from final
            """,
            {
                "symbols": [s for s, _ in series],
                "timeframes": [t for _, t in series],
                "since": since,
            },
        ).fetchall()
    return [(int(i), bytes(block)) for i, block in rows]


def read_calendars(
    conn: psycopg.Connection, calendars: Sequence[str]
) -> dict[str, tuple[str, int]]:
    """``calendar → (IANA time zone, day roll-over hours)`` for the refreshed calendars."""
    rows = conn.execute(
        "select calendar, timezone, day_rollover_hours from trading_calendars"
        " where calendar = any(%s)",
        (list(calendars),),
    ).fetchall()
    return {calendar: (zone, int(rollover)) for calendar, zone, rollover in rows}


def read_session_dates(
    conn: psycopg.Connection, calendar: str, first: date, last: date
) -> set[date]:
    """The session dates of ``calendar`` in ``[first, last]`` (empty when not refreshed)."""
    rows = conn.execute(
        "select session_date from trading_sessions"
        " where calendar = %s and session_date between %s and %s",
        (calendar, first, last),
    ).fetchall()
    return {row[0] for row in rows}


def read_findings(
    conn: psycopg.Connection, symbols: Sequence[str] | None, since: datetime | None
) -> list[dict[str, Any]]:
    """Every finding (open and resolved) about candles in scope, newest first.

    Findings without a symbol (tests outside the candle contract) are included when no
    symbol filter is given. ``reason`` is ``details.failure_reason``; ``status`` is the triage
    status (``open``, ``acknowledged``, ``muted``, ``resolved``: view
    ``data_anomaly_triage``).
    """
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
            select
                data_anomalies.anomaly_id,
                data_anomalies.check_name,
                data_anomalies.anomaly_type,
                data_anomalies.severity,
                coalesce(
                    data_anomaly_triage.triage_status, data_anomalies.status
                ) as status,
                data_anomalies.symbol,
                data_anomalies.timeframe,
                data_anomalies.ts_start,
                data_anomalies.ts_end,
                data_anomalies.observed_value,
                data_anomalies.expected_value,
                coalesce(data_anomalies.details ->> 'failure_reason', '') as reason,
                data_anomalies.first_seen_at,
                data_anomalies.last_seen_at,
                data_anomalies.resolved_at,
                data_anomalies.times_seen
            from data_anomalies
            left join data_anomaly_triage
                on data_anomaly_triage.anomaly_id = data_anomalies.anomaly_id
            where (
                    %(symbols)s::text[] is null
                    or data_anomalies.symbol = any(%(symbols)s)
                )
                and (
                    %(since)s::timestamptz is null
                    or coalesce(data_anomalies.ts_end, data_anomalies.ts_start) is null
                    or coalesce(data_anomalies.ts_end, data_anomalies.ts_start)
                    >= %(since)s
                )
            order by data_anomalies.last_seen_at desc, data_anomalies.anomaly_id desc
            """,
            {"symbols": list(symbols) if symbols else None, "since": since},
        )
        .fetchall()
    )


def read_quarantined_count(conn: psycopg.Connection, symbols: Sequence[str] | None) -> int:
    """Rows in ``quarantined_candles`` (for the symbols, when given)."""
    row = conn.execute(
        "select count(*) from quarantined_candles"
        " where %(symbols)s::text[] is null or symbol = any(%(symbols)s)",
        {"symbols": list(symbols) if symbols else None},
    ).fetchone()
    return int(row[0]) if row else 0


def read_corporate_actions(
    conn: psycopg.Connection, symbols: Sequence[str]
) -> list[dict[str, Any]]:
    """Known splits and dividends of ``symbols``, sorted by symbol and date."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
            select symbol, action_type, effective_date, ratio, cash_amount, source
            from corporate_actions
            where symbol = any(%s)
            order by symbol, effective_date
            """,
            (list(symbols),),
        )
        .fetchall()
    )


def read_runs(conn: psycopg.Connection, limit: int) -> list[datetime]:
    """The last ``limit`` recorded quality runs' times (``quality_runs.seen_at``), oldest first."""
    rows = conn.execute(
        "select seen_at from (select seen_at from quality_runs order by seen_at desc limit %s)"
        " as newest order by seen_at",
        (limit,),
    ).fetchall()
    return [row[0] for row in rows]
