"""SQL behind ``mdq report``: what the quality report reads, never writes.

Every function takes an open connection and returns plain Python values; the report module
(:mod:`mdq.report`) shapes them into pages. Values go in as parameters, never pasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True)
class SeriesSummary:
    """One (symbol, timeframe) series in ``market_data``.

    Attributes:
        symbol: the instrument.
        timeframe: ``1m``, ``1h``, ``1d``…
        asset_class: as stored with the candles (the newest row's).
        calendar: the instrument's calendar from ``instruments`` (None: not registered).
        candles: rows stored.
        first_ts: oldest candle open time, UTC.
        last_ts: newest candle open time, UTC.
    """

    symbol: str
    timeframe: str
    asset_class: str
    calendar: str | None
    candles: int
    first_ts: datetime
    last_ts: datetime


def read_series(
    conn: psycopg.Connection, symbols: Sequence[str] | None, since: datetime | None
) -> list[SeriesSummary]:
    """Every series with candles at or after ``since``, sorted by symbol then timeframe.

    Args:
        conn: an open connection.
        symbols: only these symbols (None: all).
        since: only candles with ``ts >= since`` count (None: all history).
    """
    rows = conn.execute(
        """
        with candles as (
            select
                market_data.symbol,
                market_data.timeframe,
                count(*) as candles,
                min(market_data.ts) as first_ts,
                max(market_data.ts) as last_ts,
                max(market_data.asset_class) as asset_class
            from market_data
            where (%(symbols)s::text[] is null or market_data.symbol = any(%(symbols)s))
                and (%(since)s::timestamptz is null or market_data.ts >= %(since)s)
            group by market_data.symbol, market_data.timeframe
        )

        select
            candles.symbol,
            candles.timeframe,
            candles.asset_class,
            instruments.calendar,
            candles.candles,
            candles.first_ts,
            candles.last_ts
        from candles
        left join instruments on instruments.symbol = candles.symbol
        order by candles.symbol, candles.timeframe
        """,
        {"symbols": list(symbols) if symbols else None, "since": since},
    ).fetchall()
    return [SeriesSummary(*row) for row in rows]


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


def read_daily_counts(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    *,
    timezone: str,
    rollover_hours: int,
    since: datetime | None,
) -> list[tuple[str, str, date, int]]:
    """Candles per (symbol, timeframe, session date) for symbols sharing one calendar.

    The session date is ``((ts at time zone timezone) + rollover_hours hours)::date``, the
    calendar checks' own rule (migration 020).

    Returns:
        ``(symbol, timeframe, session_date, candles)`` rows, unordered.
    """
    rows = conn.execute(
        """
        select
            market_data.symbol,
            market_data.timeframe,
            (
                (market_data.ts at time zone %(zone)s)
                + make_interval(hours => %(rollover)s)
            )::date as session_date,
            count(*) as candles
        from market_data
        where market_data.symbol = any(%(symbols)s)
            and (%(since)s::timestamptz is null or market_data.ts >= %(since)s)
        group by 1, 2, 3
        """,
        {"zone": timezone, "rollover": rollover_hours, "symbols": list(symbols), "since": since},
    ).fetchall()
    return [(s, tf, d, int(n)) for s, tf, d, n in rows]


def read_findings(
    conn: psycopg.Connection, symbols: Sequence[str] | None, since: datetime | None
) -> list[dict[str, Any]]:
    """Every finding (open and resolved) about candles in scope, newest first.

    Findings without a symbol (tests outside the candle contract) are included when no
    symbol filter is given. ``reason`` is ``details.failure_reason``.
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
                data_anomalies.status,
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


def read_candles_json(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    since: datetime | None,
    bucket_candles: int | None = None,
) -> str:
    """One series' candles as JSON text, built by PostgreSQL (no row reaches Python).

    Shape: ``{"t": [epoch seconds], "o": [...], "h": [...], "l": [...], "c": [...],
    "v": [...]}``, sorted by time; prices in quote currency, volume as stored (may be null).

    Args:
        conn: an open connection.
        symbol: the instrument.
        timeframe: the series' timeframe.
        since: only candles with ``ts >= since`` (None: all).
        bucket_candles: None for every candle; else each run of that many consecutive
            candles is merged into one (first open, highest high, lowest low, last close,
            summed volume), stamped with its first candle's time: the downsampled view of a
            long series. Counting candles, not seconds, keeps closed nights and weekends from
            making empty buckets.
    """
    row = conn.execute(
        """
        with candles as (
            select
                market_data.ts,
                (
                    row_number() over (order by market_data.ts) - 1
                ) / coalesce(%(bucket)s, 1) as bucket,
                market_data.open::double precision as open,
                market_data.high::double precision as high,
                market_data.low::double precision as low,
                market_data.close::double precision as close,
                market_data.volume::double precision as volume
            from market_data
            where market_data.symbol = %(symbol)s
                and market_data.timeframe = %(timeframe)s
                and (%(since)s::timestamptz is null or market_data.ts >= %(since)s)
        ),

        buckets as (
            select
                min(candles.ts) as ts,
                (array_agg(candles.open order by candles.ts))[1] as open,
                max(candles.high) as high,
                min(candles.low) as low,
                (array_agg(candles.close order by candles.ts desc))[1] as close,
                sum(candles.volume) as volume
            from candles
            group by candles.bucket
        ),

        final as (
            select
                json_build_object(
                    't', coalesce(array_agg(
                        extract(epoch from buckets.ts)::bigint order by buckets.ts
                    ), '{}'),
                    'o', coalesce(array_agg(buckets.open order by buckets.ts), '{}'),
                    'h', coalesce(array_agg(buckets.high order by buckets.ts), '{}'),
                    'l', coalesce(array_agg(buckets.low order by buckets.ts), '{}'),
                    'c', coalesce(array_agg(buckets.close order by buckets.ts), '{}'),
                    'v', coalesce(array_agg(buckets.volume order by buckets.ts), '{}')
                )::text as payload
            from buckets
        )

        select payload from final
        """,
        {"symbol": symbol, "timeframe": timeframe, "since": since, "bucket": bucket_candles},
    ).fetchone()
    return str(row[0]) if row else '{"t":[],"o":[],"h":[],"l":[],"c":[],"v":[]}'
