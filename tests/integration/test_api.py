"""The Python API (README "Python API"): every function called through ``import mdq``.

One module database, used in order: a backfill, a seeded fault, the checks, the listing,
health, then the seed's bookkeeping functions on a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

import mdq
from mdq.db import Database
from mdq.windows import Window

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
FUTURE_CHECK = ["+test_name:future_candles"]


@pytest.fixture(scope="module")
def apidb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with mdq.connect(db) as conn:
        from mdq.db.migrate import apply_migrations

        apply_migrations(conn)
    return db


def test_import_mdq_loads_nothing_heavy_and_exposes_the_api() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, mdq; "
        "print(sorted(m for m in ('dbt', 'prefect', 'pandas', 'psycopg') if m in sys.modules)); "
        "print(sorted(mdq.__all__) == sorted(n for n in dir(mdq) if n in mdq.__all__))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "True"]
    # no submodule of mdq has a name of the API (it would replace the function once imported)
    import mdq.anomalies
    import mdq.backfill_core
    import mdq.health
    import mdq.quality  # noqa: F401

    assert mdq.backfill.__module__ == mdq.check.__module__ == "mdq.api"
    assert mdq.health_check.__module__ == mdq.list_anomalies.__module__ == "mdq.api"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        mdq.nope  # noqa: B018


def test_backfill_check_list_and_detect_through_import_mdq(
    apidb: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", apidb.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", "mdq")

    # 24 hourly candles of a 24/7 synthetic series in [2024-05-31, 2024-06-01)
    results = mdq.backfill(
        "synthetic",
        ["BTCUSD"],
        ["1h"],
        datetime(2024, 5, 31, tzinfo=UTC),
        AS_OF,
        database=apidb,
    )
    assert [(r.symbol, r.timeframe, r.status, r.fetched, r.inserted) for r in results] == [
        ("BTCUSD", "1h", "completed", 24, 24)
    ]
    # the same window again, from the configured database (MDQ_DATABASE_URL): nothing changes
    again = mdq.backfill("synthetic", ["BTCUSD"], ["1h"], datetime(2024, 5, 31, tzinfo=UTC), AS_OF)
    assert [(r.inserted, r.updated, r.unchanged) for r in again] == [(0, 0, 24)]

    # a candle two days after as_of: the future_candles check (error severity) finds it
    with mdq.connect(apidb, autocommit=True) as conn:
        conn.execute(
            "insert into market_data (symbol, asset_class, timeframe, ts, open, high, low,"
            " close, volume, source) values ('BTCUSD', 'crypto', '1h',"
            " '2024-06-03T05:00:00Z', 67050, 67200, 67000, 67100, 9.1, 'test')"
        )
    report = mdq.check(as_of=AS_OF, select=FUTURE_CHECK, database=apidb, record=True)
    assert (report.verdict, report.inserted, report.open_errors) == ("anomalies", 1, 1)

    rows = mdq.list_anomalies("open")  # the configured database
    assert [(r.check_name, r.symbol, r.timeframe, r.severity) for r in rows] == [
        ("future_candles", "BTCUSD", "1h", "error")
    ]
    assert rows[0].ts_start == datetime(2024, 6, 3, 5, tzinfo=UTC)
    assert mdq.list_anomalies("resolved", database=apidb) == []
    with pytest.raises(ValueError, match="status 'closed' not supported"):
        mdq.list_anomalies("closed", database=apidb)  # type: ignore[arg-type]

    # the seed's entry point: no family chosen runs nothing; the same anomaly stays open
    nothing = mdq.detect_data_anomalies(False, False, False, as_of=AS_OF, database=apidb)
    assert (nothing.tests_run, nothing.inserted, nothing.resolved) == (0, 0, 0)
    assert [r.anomaly_id for r in mdq.list_anomalies(database=apidb)] == [rows[0].anomaly_id]


def test_health_check_through_import_mdq(apidb: Database) -> None:
    snapshot = mdq.health_check(as_of=AS_OF, refresh_staleness=False, database=apidb, record=True)
    assert snapshot.series_tracked == 1
    assert snapshot.as_of == AS_OF
    with mdq.connect(apidb) as conn:
        row = conn.execute(
            "select series_tracked, open_error_anomalies from health_snapshots"
            " where snapshot_id = %s",
            (snapshot.snapshot_id,),
        ).fetchone()
    assert row == (1, 1)


def test_the_seed_bookkeeping_functions_through_import_mdq(apidb: Database) -> None:
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    with mdq.connect(apidb, autocommit=True) as conn:
        state = mdq.create_backfill_state(
            conn, symbol="ZZAPI", timeframe="1d", window=window, provider="csv", lease_seconds=60
        )
        assert state.status == "pending"
        second = mdq.create_backfill_state(
            conn, symbol="ZZAPI", timeframe="1d", window=window, provider="csv", lease_seconds=60
        )
        assert second.status == "skipped"
        active = mdq.get_active_backfill_states(conn, "ZZAPI")
        assert [s.execution_id for s in active] == [state.execution_id]

        done = mdq.update_backfill_state(
            conn, state.execution_id, status="completed", records_inserted=5
        )
        assert (done.status, done.records_inserted) == ("completed", 5)
        assert mdq.get_active_backfill_states(conn, "ZZAPI") == []

        first = mdq.track_symbol_failure(
            conn, "ZZAPI", "1d", success=False, threshold=2, error="timeout"
        )
        streak = mdq.track_symbol_failure(
            conn, "ZZAPI", "1d", success=False, threshold=2, error="timeout"
        )
        assert (first.consecutive_failures, first.alert_due) == (1, False)
        assert (streak.consecutive_failures, streak.alert_due) == (2, True)

        # market_data has its unique key: no duplicate can exist, the dry run finds none
        report = mdq.cleanup_duplicate_records(conn, symbol="BTCUSD", dry_run=True)
        assert (report.dry_run, report.cleanup_id, report.groups) == (True, None, ())


def test_open_database_applies_migrations(
    make_database: Callable[[], Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = make_database()
    monkeypatch.setenv("MDQ_DATABASE_URL", empty.url())
    with mdq.open_database() as database, mdq.connect(database) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'public'"
            ).fetchall()
        }
    assert database.dbname == empty.dbname
    assert {"market_data", "data_anomalies", "backfill_state_persistent"} <= tables


def test_triage_through_import_mdq(apidb: Database) -> None:
    from datetime import timedelta

    (row,) = mdq.list_anomalies("open", database=apidb)
    ack = mdq.acknowledge(row.anomaly_id, by="api", reason="known", database=apidb)
    assert (ack.anomaly_id, ack.expires_at, ack.ended_at) == (row.anomaly_id, None, None)
    acked = mdq.list_anomalies("acknowledged", database=apidb)
    assert [(r.anomaly_id, r.triage_status) for r in acked] == [(row.anomaly_id, "acknowledged")]
    assert mdq.list_anomalies("open", database=apidb) == []
    assert mdq.unacknowledge(row.anomaly_id, by="api", database=apidb) == 1

    until = datetime.now(UTC) + timedelta(days=1)
    rule = mdq.mute(by="api", reason="known", until=until, symbol="BTCUSD", database=apidb)
    assert (rule.covered, [m.mute_id for m in mdq.list_mutes(database=apidb)]) == (
        1,
        [rule.mute_id],
    )
    assert mdq.unmute(rule.mute_id, by="api", database=apidb).ended_by == "api"
    assert mdq.list_mutes(database=apidb) == []
    assert [r.triage_status for r in mdq.list_anomalies("open", database=apidb)] == ["open"]
