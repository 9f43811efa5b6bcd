"""Health monitoring: snapshots, and one alert per problem streak (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from flows.health import health_check
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.health import run_health_check
from mdq.health_rules import FailureStreak, Problem, SeriesHealth, find_problems, plan_alerts
from mdq.notify import RecordingNotifier
from tests.support import insert_candles

pytestmark = pytest.mark.integration

AS_OF = datetime(2024, 6, 1, 12, tzinfo=UTC)

CANDLES = """
AAPL,stock,1d,2024-05-31T13:30:00Z,190,192,189,191,1000
BTCUSD,crypto,1m,2024-06-01T11:58:00Z,67000,67010,66990,67005,1.5
EURUSD,forex,1h,2024-06-01T11:00:00Z,1.085,1.086,1.084,1.0855,1000
IBM,stock,1d,2024-05-20T13:30:00Z,170,171,169,170.5,500
"""

ANOMALIES = """
insert into data_anomalies
    (fingerprint, check_name, anomaly_type, severity, symbol, asset_class, timeframe,
     ts_start, ts_end, observed_value, expected_value, status)
values
    ('g1', 'candle_gaps', 'gap', 'error', 'BTCUSD', 'crypto', '1m',
     '2024-06-01T10:00Z', '2024-06-01T10:59Z', 60, 0, 'open'),
    ('g2', 'candle_gaps', 'gap', 'error', 'BTCUSD', 'crypto', '1m',
     '2024-06-01T08:00Z', '2024-06-01T08:09Z', 10, 0, 'open'),
    ('o1', 'candle_outliers', 'wick_outlier', 'warn', 'EURUSD', 'forex', '1h',
     '2024-06-01T09:00Z', '2024-06-01T09:00Z', 9.5, 6, 'open'),
    ('s1', 'candle_staleness', 'stale', 'error', 'IBM', 'stock', '1d',
     '2024-05-21T13:30Z', '2024-06-01T12:00Z', 8, 1, 'open'),
    ('r1', 'candle_gaps', 'gap', 'error', 'AAPL', 'stock', '1d',
     '2024-05-01T13:30Z', '2024-05-01T13:30Z', 1, 0, 'resolved');
insert into symbol_failure_tracking (symbol, timeframe, consecutive_failures, last_error)
values ('AAPL', '1d', 3, 'HTTP 503 from provider'), ('MSFT', '1d', 2, 'timeout');
"""


@pytest.fixture(scope="module")
def hdb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, CANDLES)
        conn.execute(ANOMALIES)
    return db


@pytest.fixture()
def hconn(hdb: Database) -> Iterator[psycopg.Connection]:
    with connect(hdb, autocommit=True) as conn:
        yield conn


def alerted(notifier: RecordingNotifier) -> list[tuple[str, str]]:
    return [(a.kind, a.subject) for a in notifier.sent]


def test_problems_alert_once_per_streak(hdb: Database, hconn: psycopg.Connection) -> None:
    notifier = RecordingNotifier()
    first = run_health_check(hdb, notifier, as_of=AS_OF, record=True)
    expected = [
        ("consecutive_failures", "AAPL/1d"),
        ("open_gaps", "BTCUSD/1m"),
        ("open_outliers", "EURUSD/1h"),
        ("stale", "IBM/1d"),
    ]
    assert [(p.kind, p.subject) for p in first.problems] == expected
    # the warn-level wick outlier is a problem in the snapshot but does not page
    assert alerted(notifier) == [expected[0], expected[1], expected[3]]
    assert notifier.sent[1].message == "2 open gap anomaly(ies)"
    assert notifier.sent[0].message.endswith("last error: HTTP 503 from provider")
    snap = hconn.execute(
        "select status, series_tracked, stale_series, failing_symbols, open_gaps, open_outliers,"
        " open_error_anomalies, as_of, jsonb_array_length(problems), series"
        " from health_snapshots where snapshot_id = %s",
        (first.snapshot_id,),
    ).fetchone()
    assert snap is not None
    assert snap[:8] == ("problems", 4, 1, 1, 2, 1, 3, AS_OF)
    assert snap[8] == 4
    pages = hconn.execute(
        "select p->>'kind', (p->>'pages')::boolean, min_severity from health_snapshots,"
        " jsonb_array_elements(problems) as p where snapshot_id = %s order by 1",
        (first.snapshot_id,),
    ).fetchall()
    assert pages == [
        ("consecutive_failures", True, "error"),
        ("open_gaps", True, "error"),
        ("open_outliers", False, "error"),
        ("stale", True, "error"),
    ]
    ibm = next(s for s in snap[9] if s["symbol"] == "IBM")
    assert ibm["is_stale"] is True
    assert ibm["age_seconds"] == (AS_OF - datetime(2024, 5, 20, 13, 30, tzinfo=UTC)).total_seconds()

    # the same problems at the next run: a new snapshot, no alert
    notifier = RecordingNotifier()
    second = run_health_check(hdb, notifier, as_of=AS_OF, record=True)
    assert len(second.problems) == 4
    assert notifier.sent == []
    assert second.snapshot_id > first.snapshot_id

    # the gaps are fixed and AAPL's backfill succeeds: those streaks end, still no alert
    hconn.execute("update data_anomalies set status = 'resolved' where anomaly_type = 'gap'")
    hconn.execute("update symbol_failure_tracking set consecutive_failures = 0")
    notifier = RecordingNotifier()
    third = run_health_check(hdb, notifier, as_of=AS_OF, record=True)
    assert [(p.kind, p.subject) for p in third.problems] == expected[2:]
    assert notifier.sent == []
    streaks = hconn.execute("select problem_key from health_alert_streaks order by 1").fetchall()
    assert streaks == [("stale:IBM/1d",)]

    # a gap comes back: a new streak, one alert
    hconn.execute("update data_anomalies set status = 'open' where fingerprint = 'g1'")
    notifier = RecordingNotifier()
    run_health_check(hdb, notifier, as_of=AS_OF, record=True)
    assert alerted(notifier) == [("open_gaps", "BTCUSD/1m")]
    assert notifier.sent[0].message == "1 open gap anomaly(ies)"


def test_the_health_flow_writes_a_snapshot(
    hdb: Database,
    hconn: psycopg.Connection,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", hdb.url())
    before = hconn.execute("select count(*) from health_snapshots").fetchone()
    # As scheduled: the staleness checks (dbt tests tagged `staleness`) run first, through
    # prefect-dbt inside the flow, then the snapshot is taken.
    state = health_check(as_of=AS_OF, record=True, return_state=True)
    assert state.is_completed()
    snapshot = state.result()
    assert ("stale", "IBM/1d") in [(p.kind, p.subject) for p in snapshot.problems]
    assert ("stale", "IBM/1d") not in [(p.kind, p.subject) for p in snapshot.alerted]
    after = hconn.execute("select count(*) from health_snapshots").fetchone()
    assert (before[0] + 1, snapshot.snapshot_id) == (after[0], snapshot.snapshot_id)


def test_mdq_health_exit_status(hdb: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mdq.cli import app

    monkeypatch.setenv("MDQ_DATABASE_URL", hdb.url())
    with connect(hdb) as conn:
        before = conn.execute("select count(*) from health_snapshots").fetchone()
    result = CliRunner().invoke(app, ["health", "--as-of", "2024-06-01T12:00:00Z", "--no-refresh"])
    assert result.exit_code == 1, result.output
    assert "stale IBM/1d [error]: stale: last candle 2024-05-20 13:30 UTC" in result.stdout
    assert "(what-if, nothing recorded)" in result.stdout
    with connect(hdb) as conn:
        assert conn.execute("select count(*) from health_snapshots").fetchone() == before
    bad = CliRunner().invoke(app, ["health", "--as-of", "2024-06-01 12:00"])
    assert bad.exit_code == 2
    assert "has no time zone" in bad.output

    # the error-level problems muted (IBM's seeded stale row and the one the flow's real
    # staleness check recorded, BTCUSD's gap): only the warn wick outlier is left: exit 0
    for rule in (["--symbol", "IBM"], ["--symbol", "BTCUSD", "--type", "gap"]):
        muted = CliRunner().invoke(
            app, ["anomalies", "mute", *rule, "--reason", "test", "--until", "1h", "--by", "t"]
        )
        assert muted.exit_code == 0, muted.output
    quiet = CliRunner().invoke(app, ["health", "--as-of", "2024-06-01T12:00:00Z", "--no-refresh"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.splitlines()[0] == (
        "1 problem(s) over 4 series, 0 at error or above, 0 alert(s) it would send "
        "(what-if, nothing recorded); 0 acknowledged and 3 muted finding(s) not counted"
    )
    assert "open_outliers EURUSD/1h [warn]" in quiet.stdout


def test_find_problems_thresholds_and_plan() -> None:
    series = [SeriesHealth("X", "1h", None, 0, 0, 0, 0)]
    failures = [FailureStreak("X", "1h", 4, None), FailureStreak("Y", "*", 1, "boom")]
    problems = find_problems(series, failures, failure_threshold=2)
    assert [(p.kind, p.subject, p.severity) for p in problems] == [
        ("consecutive_failures", "X/1h", "error")
    ]
    with pytest.raises(ValueError, match="failure_threshold must be >= 1, got 0"):
        find_problems(series, failures, failure_threshold=0)
    gone = Problem("stale", "Z/1d", "error", "stale")
    plan = plan_alerts(problems, {gone.key, problems[0].key})
    assert (plan.start, plan.ongoing, plan.ended) == ((), tuple(problems), ("stale:Z/1d",))
