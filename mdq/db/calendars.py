"""SQL for trading calendars: write ``trading_sessions`` and ``trading_calendars``.

Writes are set-based (COPY into a temporary table, then one ``insert ... on conflict`` per
table) and idempotent: a refresh with the same library version rewrites no row, a new version
updates the rows that changed and records the version in ``calendar_version``. Sessions of the
refreshed range that the library no longer has (e.g. a closure added after the first refresh,
like NYSE 2025-01-09) are deleted, so the gap check stops expecting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from mdq.calendars import DEFAULT_CALENDAR_BY_ASSET_CLASS, CalendarInfo, Session


@dataclass(frozen=True)
class RefreshResult:
    """What one calendar refresh changed.

    Attributes:
        calendar: the calendar code.
        start: first session date of the refreshed range (inclusive).
        end: end of the range (exclusive).
        sessions: sessions the library has in the range.
        written: sessions inserted or updated (0 on an idempotent re-run).
        deleted: sessions removed because the library no longer has them.
    """

    calendar: str
    start: date
    end: date
    sessions: int
    written: int
    deleted: int


def calendars_in_use(conn: psycopg.Connection) -> list[str]:
    """Calendars named by ``instruments``, plus the default calendar
    (:data:`mdq.calendars.DEFAULT_CALENDAR_BY_ASSET_CLASS`) of every asset class in
    ``market_data`` that has symbols without an ``instruments`` row.

    Returns:
        Calendar codes, sorted, unique.
    """
    named = {row[0] for row in conn.execute("select distinct calendar from instruments")}
    # the symbols by a loose index scan of market_data's unique key (one descent per symbol),
    # then the asset classes of the unlisted ones only: no scan of every candle per check
    unlisted = conn.execute(
        """
        with recursive symbols as (
            (select m.symbol from market_data as m order by m.symbol limit 1)
            union all
            select following.symbol
            from symbols
            cross join lateral (
                select m.symbol
                from market_data as m
                where m.symbol > symbols.symbol
                order by m.symbol
                limit 1
            ) as following
        ),

        unlisted as (
            select symbols.symbol
            from symbols
            where not exists (select 1 from instruments as i where i.symbol = symbols.symbol)
        )

        select distinct m.asset_class
        from market_data as m
        where m.symbol in (select unlisted.symbol from unlisted)
        """
    ).fetchall()
    for (asset_class,) in unlisted:
        if asset_class in DEFAULT_CALENDAR_BY_ASSET_CLASS:
            named.add(DEFAULT_CALENDAR_BY_ASSET_CLASS[asset_class])
    return sorted(named)


def data_range(conn: psycopg.Connection) -> tuple[datetime | None, datetime | None]:
    """First and last candle ts in ``market_data`` (UTC-aware), or ``(None, None)`` if empty."""
    row = conn.execute("select min(ts), max(ts) from market_data").fetchone()
    assert row is not None
    return row[0], row[1]


def write_sessions(
    conn: psycopg.Connection,
    info: CalendarInfo,
    sessions: Sequence[Session],
    start: date,
    end: date,
) -> RefreshResult:
    """Make ``trading_sessions`` hold exactly ``sessions`` for ``info.calendar`` in
    ``[start, end)``, and upsert the calendar's row in ``trading_calendars``.

    Runs in the caller's transaction. Rows are rewritten only when a value differs
    (``is distinct from``), so a re-run with the same data writes nothing.

    Args:
        conn: an open connection.
        info: the calendar's zone, roll-over and library version.
        sessions: the calendar's sessions with dates in ``[start, end)``.
        start: first session date of the range (inclusive).
        end: end of the range (exclusive).

    Returns:
        Counts of what changed.

    Raises:
        ValueError: a session belongs to another calendar or lies outside the range.
    """
    for session in sessions:
        if session.calendar != info.calendar or not start <= session.session_date < end:
            raise ValueError(
                f"session {session.calendar} {session.session_date} does not belong to "
                f"calendar {info.calendar} range [{start}, {end})"
            )
    with conn.cursor() as cur:
        cur.execute(
            """
            create temporary table if not exists tmp_trading_sessions (
                session_date date not null,
                open_at timestamptz not null,
                close_at timestamptz not null,
                is_early_close boolean not null
            ) on commit drop
            """
        )
        cur.execute("truncate tmp_trading_sessions")
        with cur.copy(
            "copy tmp_trading_sessions (session_date, open_at, close_at, is_early_close) from stdin"
        ) as copy:
            for s in sessions:
                copy.write_row((s.session_date, s.open_at, s.close_at, s.is_early_close))
        cur.execute(
            """
            insert into trading_sessions as t (
                calendar, session_date, open_at, close_at, is_early_close,
                calendar_version, refreshed_at
            )
            select %(calendar)s, session_date, open_at, close_at, is_early_close,
                %(version)s, now()
            from tmp_trading_sessions
            on conflict (calendar, session_date) do update
            set open_at = excluded.open_at,
                close_at = excluded.close_at,
                is_early_close = excluded.is_early_close,
                calendar_version = excluded.calendar_version,
                refreshed_at = excluded.refreshed_at
            where (t.open_at, t.close_at, t.is_early_close, t.calendar_version)
                is distinct from (excluded.open_at, excluded.close_at,
                    excluded.is_early_close, excluded.calendar_version)
            """,
            {"calendar": info.calendar, "version": info.calendar_version},
        )
        written = cur.rowcount
        cur.execute(
            """
            delete from trading_sessions as t
            where t.calendar = %(calendar)s
                and t.session_date >= %(start)s
                and t.session_date < %(end)s
                and not exists (
                    select 1 from tmp_trading_sessions as s
                    where s.session_date = t.session_date
                )
            """,
            {"calendar": info.calendar, "start": start, "end": end},
        )
        deleted = cur.rowcount
        cur.execute(
            """
            with merged as (
                -- the range written now, joined to the one already covered when that was
                -- written by the same version and touches it (else only this range counts)
                select
                    case when touching then least(old_from, %(start)s) else %(start)s end
                        as covered_from,
                    case when touching then greatest(old_until, %(end)s) else %(end)s end
                        as covered_until
                from (
                    select
                        max(c.covered_from) as old_from,
                        max(c.covered_until) as old_until,
                        coalesce(
                            bool_or(
                                c.calendar_version = %(version)s
                                and c.covered_from <= %(end)s
                                and c.covered_until >= %(start)s
                            ),
                            false
                        ) as touching
                    from trading_calendars as c
                    where c.calendar = %(calendar)s
                ) as previous
            )
            insert into trading_calendars as c (
                calendar, timezone, day_rollover_hours, calendar_version,
                first_session_date, last_session_date, covered_from, covered_until,
                refreshed_at
            )
            select %(calendar)s, %(timezone)s, %(rollover)s, %(version)s,
                min(s.session_date), max(s.session_date),
                min(merged.covered_from), min(merged.covered_until), now()
            from trading_sessions as s
            cross join merged
            where s.calendar = %(calendar)s
            on conflict (calendar) do update
            set timezone = excluded.timezone,
                day_rollover_hours = excluded.day_rollover_hours,
                calendar_version = excluded.calendar_version,
                first_session_date = excluded.first_session_date,
                last_session_date = excluded.last_session_date,
                covered_from = excluded.covered_from,
                covered_until = excluded.covered_until,
                refreshed_at = excluded.refreshed_at
            where (c.timezone, c.day_rollover_hours, c.calendar_version,
                    c.first_session_date, c.last_session_date, c.covered_from,
                    c.covered_until)
                is distinct from (excluded.timezone, excluded.day_rollover_hours,
                    excluded.calendar_version, excluded.first_session_date,
                    excluded.last_session_date, excluded.covered_from,
                    excluded.covered_until)
            """,
            {
                "calendar": info.calendar,
                "timezone": info.timezone,
                "rollover": info.day_rollover_hours,
                "version": info.calendar_version,
                "start": start,
                "end": end,
            },
        )
    return RefreshResult(info.calendar, start, end, len(sessions), written, deleted)


def refresh_calendars(
    conn: psycopg.Connection,
    *,
    today: date,
    start: date | None = None,
    end: date | None = None,
    calendars: Sequence[str] | None = None,
    margin_days: int = 14,
) -> list[RefreshResult]:
    """Refresh the sessions of every calendar in use (or of ``calendars``) over a range.

    Each calendar is written in its own transaction (the caller's connection must not be in
    autocommit-off with pending work it wants kept separate).

    Args:
        conn: an open connection.
        today: the current UTC date (the default range reaches ``today + margin_days``).
        start: first session date (inclusive); default: first candle date minus the margin.
        end: end session date (exclusive); default: the later of the last candle date and
            today, plus the margin.
        calendars: codes to refresh; default :func:`calendars_in_use`.
        margin_days: days added around the data's range for the defaults.

    Returns:
        One result per calendar, in code order.

    Raises:
        UnknownCalendar: a code is not supported (nothing of that calendar is written).
        ValueError: the range is empty.
    """
    from mdq.calendars import build_sessions, calendar_info, refresh_range

    codes = sorted(set(calendars)) if calendars is not None else calendars_in_use(conn)
    first, last = data_range(conn)
    default_start, default_end = refresh_range(first, last, today, margin_days=margin_days)
    start = start or default_start
    end = end or default_end
    results = []
    for code in codes:
        info = calendar_info(code)
        sessions = build_sessions(code, start, end)
        with conn.transaction():
            results.append(write_sessions(conn, info, sessions, start, end))
    # fresh statistics, so the checks' planner hash-joins candles to these small tables
    with conn.transaction():
        conn.execute("analyze trading_sessions")
        conn.execute("analyze trading_calendars")
    return results


def ensure_sessions(
    conn: psycopg.Connection,
    *,
    today: date,
    margin_days: int = 14,
) -> list[RefreshResult]:
    """Make ``trading_sessions`` cover what a check needs, writing only what is missing.

    What a check needs, per calendar in use (:func:`calendars_in_use`): the session dates from
    the first candle's date minus one day to the later of the last candle's date and ``today``,
    plus one day. A calendar whose stored range (``trading_calendars.covered_from`` /
    ``covered_until``, migration 140) already holds that, written by the current library
    version (:func:`mdq.calendars.calendar_version`), is left alone: no calendar is built, no
    row written (the common case of a repeat check; building 27 years of XNYS sessions cost
    ~3 s). Otherwise the missing part of :func:`mdq.calendars.refresh_range` (the same range
    with ``margin_days`` on both sides) is refreshed: only the new dates before or after the
    covered range when the version is current, all of it when it is not (a new library
    version, a calendar never refreshed, or one refreshed before migration 140).

    ``mdq calendars refresh`` (:func:`refresh_calendars`) always rewrites its whole range.

    Args:
        conn: an open connection (autocommit or not: each calendar commits on its own).
        today: the current UTC date.
        margin_days: the margin of a refresh (>= 1), as :func:`refresh_calendars`.

    Returns:
        One result per refreshed piece (empty when everything was covered).

    Raises:
        UnknownCalendar: a calendar in use is not supported (nothing of it is written).
    """
    from mdq.calendars import build_sessions, calendar_info, calendar_version, refresh_range

    codes = calendars_in_use(conn)
    if not codes:
        return []
    first, last = data_range(conn)
    need_start, need_end = refresh_range(first, last, today, margin_days=1)
    start, end = refresh_range(first, last, today, margin_days=margin_days)
    stored = {
        str(code): (version, covered_from, covered_until)
        for code, version, covered_from, covered_until in conn.execute(
            "select calendar, calendar_version, covered_from, covered_until"
            " from trading_calendars where calendar = any(%s)",
            (codes,),
        )
    }
    results: list[RefreshResult] = []
    for code in codes:
        version, covered_from, covered_until = stored.get(code, (None, None, None))
        current = (
            version == calendar_version(code)
            and covered_from is not None
            and covered_until is not None
        )
        if current and covered_from <= need_start and covered_until >= need_end:
            continue
        if current and covered_from <= end and covered_until >= start:
            pieces = [(start, covered_from), (covered_until, end)]
        else:
            pieces = [(start, end)]
        info = calendar_info(code)
        for piece_start, piece_end in pieces:
            if piece_start >= piece_end:
                continue
            sessions = build_sessions(code, piece_start, piece_end)
            with conn.transaction():
                results.append(write_sessions(conn, info, sessions, piece_start, piece_end))
    if results:
        with conn.transaction():
            conn.execute("analyze trading_sessions")
            conn.execute("analyze trading_calendars")
    return results
