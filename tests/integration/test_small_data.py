"""Small data fast (issue 15 point 4): a repeat check builds no calendar it already has."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from mdq.db import Database, connect
from mdq.db.calendars import ensure_sessions
from mdq.db.migrate import apply_migrations
from tests.support import insert_candles

pytestmark = pytest.mark.integration

CANDLES = """
AAPL,stock,1d,2024-05-31T04:00:00Z,190,192,189,191,1000
BTCUSD,crypto,1h,2024-06-01T11:00:00Z,67000,67010,66990,67005,1.5
"""


def test_ensure_sessions_writes_only_what_is_missing(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, CANDLES)

        first = ensure_sessions(conn, today=date(2024, 6, 1))
        # the data's range (2024-05-31 .. 2024-06-01) and today, 14 days either side
        assert sorted((r.calendar, r.start, r.end) for r in first) == [
            ("24/7", date(2024, 5, 17), date(2024, 6, 16)),
            ("XNYS", date(2024, 5, 17), date(2024, 6, 16)),
        ]
        coverage = "select calendar, covered_from, covered_until from trading_calendars order by 1"
        assert conn.execute(coverage).fetchall() == [
            ("24/7", date(2024, 5, 17), date(2024, 6, 16)),
            ("XNYS", date(2024, 5, 17), date(2024, 6, 16)),
        ]
        sessions = conn.execute(
            "select count(*), max(refreshed_at) from trading_sessions"
        ).fetchone()

        # a repeat (and the next days, inside the margin): nothing built, nothing written
        assert ensure_sessions(conn, today=date(2024, 6, 1)) == []
        assert ensure_sessions(conn, today=date(2024, 6, 13)) == []
        again = conn.execute("select count(*), max(refreshed_at) from trading_sessions").fetchone()
        assert again == sessions

        # today past the covered range: only the new dates are built, the range is extended
        later = ensure_sessions(conn, today=date(2024, 6, 20))
        assert sorted((r.calendar, r.start, r.end) for r in later) == [
            ("24/7", date(2024, 6, 16), date(2024, 7, 5)),
            ("XNYS", date(2024, 6, 16), date(2024, 7, 5)),
        ]
        assert conn.execute(coverage).fetchall() == [
            ("24/7", date(2024, 5, 17), date(2024, 7, 5)),
            ("XNYS", date(2024, 5, 17), date(2024, 7, 5)),
        ]
        # XNYS: Juneteenth (2024-06-19) and the weekends are no sessions
        assert conn.execute(
            "select count(*) from trading_sessions where calendar = 'XNYS'"
            " and session_date between '2024-06-17' and '2024-06-21'"
        ).fetchone() == (4,)

        # a calendar written by another library version is rebuilt over its whole range
        conn.execute(
            "update trading_calendars set calendar_version = 'old' where calendar = 'XNYS'"
        )
        rebuilt = ensure_sessions(conn, today=date(2024, 6, 20))
        assert [(r.calendar, r.start, r.end) for r in rebuilt] == [
            ("XNYS", date(2024, 5, 17), date(2024, 7, 5))
        ]


STALE_CANDLES = """
AAPL,stock,1d,2024-05-30T04:00:00Z,190,192,189,191,1000
AAPL,stock,1d,2024-05-31T04:00:00Z,190,192,189,191,1000
IBM,stock,1d,2024-05-20T04:00:00Z,170,171,169,170.5,500
BTCUSD,crypto,1m,2024-06-01T11:50:00Z,67000,67010,66990,67005,1.5
EURUSD,forex,1h,2024-05-31T20:00:00Z,1.085,1.086,1.084,1.0855,1000
EURUSD,forex,1h,2024-06-01T11:00:00Z,1.085,1.086,1.084,1.0855,1000
"""


def test_health_judges_staleness_by_index_as_the_dbt_check_does(
    make_database: Callable[[], Database],
) -> None:
    """P4: health's index look-ups give the dbt staleness test's rows exactly: IBM (1d) and
    BTCUSD (1m) are stale; EURUSD is not (its Saturday candle is out of session, its last
    in-session candle is Friday's last slot and the FX weekend has no slot since)."""
    from datetime import UTC, datetime

    from mdq.health import staleness_by_index
    from mdq.quality import _failing_rows, build_checks

    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, STALE_CANDLES)
    as_of = datetime(2024, 6, 1, 12, tzinfo=UTC)
    schema = "mdq_small"
    result = build_checks(
        database,
        schema,
        as_of=as_of,
        select=["+tag:staleness"],
        today=as_of.date(),
        use_prefect=False,
    )
    (test,) = result.tests
    with connect(database) as conn:
        rows, _ = _failing_rows(conn, test)

    fast = staleness_by_index(database, schema, as_of)
    assert fast is not None
    assert (fast.test.unique_id, fast.test.status, fast.test.failures) == (
        test.unique_id,
        test.status,
        test.failures,
    )

    def key(row: dict) -> tuple:
        start = row["ts_start"]
        start = datetime.fromisoformat(start) if isinstance(start, str) else start
        return (
            row["symbol"],
            row["timeframe"],
            start,
            row["severity"],
            float(row["observed_value"]),
            float(row["expected_value"]),
            row["failure_reason"],
        )

    assert sorted(map(key, fast.rows)) == sorted(map(key, rows))
    assert {(r["symbol"], r["timeframe"]) for r in fast.rows} == {("BTCUSD", "1m"), ("IBM", "1d")}
