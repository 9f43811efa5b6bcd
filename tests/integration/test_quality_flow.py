"""The quality flow end to end: real PostgreSQL, real dbt, findings into data_anomalies.

The fault is a candle stamped in the future (the `future_candles` check, error severity);
runs select that check (and the models it needs) so the project's other checks do not change
what these tests count. One module database, used in order by the tests below.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flows.quality_checks import quality_checks
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import DBT_PROJECT_DIR
from mdq.quality import run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "mdq"
AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
FUTURE_CHECK = ["+test_name:future_candles"]

CANDLES = """
symbol,asset_class,timeframe,ts,open,high,low,close,volume
AAPL,stock,1h,2024-05-31T18:00:00Z,190.1,190.9,189.8,190.5,1200
AAPL,stock,1h,2024-05-31T19:00:00Z,190.5,191.0,190.2,190.8,1100
AAPL,stock,1h,2024-06-01T00:30:00Z,190.8,190.8,190.8,190.8,0
BTCUSD,crypto,1h,2024-05-31T23:00:00Z,67000,67100,66900,67050,12.5
"""
# 2024-06-01T00:30 is within one 1h candle of as_of: tolerated. This one is not:
FUTURE = "BTCUSD,crypto,1h,2024-06-03T05:00:00Z,67050,67200,67000,67100,9.1\n"


@pytest.fixture(scope="module")
def qdb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db) as conn:
        apply_migrations(conn)
    with connect(db, autocommit=True) as conn:
        insert_candles(conn, CANDLES)
    return db


@pytest.fixture()
def qconn(qdb: Database) -> Iterator[psycopg.Connection]:
    with connect(qdb, autocommit=True) as conn:
        yield conn


def anomalies(conn: psycopg.Connection, check_name: str) -> list[dict[str, Any]]:
    cur = conn.execute(
        "select * from data_anomalies where check_name = %s order by anomaly_id", (check_name,)
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def run(db: Database, **kwargs: Any) -> Any:
    kwargs.setdefault("select", FUTURE_CHECK)
    kwargs.setdefault("record", True)
    return run_quality_checks(db, SCHEMA, as_of=AS_OF, use_prefect=False, **kwargs)


def test_a_seeded_fault_becomes_exactly_one_open_anomaly(
    qdb: Database, qconn: psycopg.Connection
) -> None:
    insert_candles(qconn, FUTURE)
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    report = run(qdb, seen_at=seen)
    assert (report.inserted, report.updated, report.resolved) == (1, 0, 0)
    assert report.open_errors == 1
    assert report.verdict == "anomalies"
    (row,) = anomalies(qconn, "future_candles")
    assert row["anomaly_type"] == "future_candle"
    assert row["severity"] == "error"
    assert (row["symbol"], row["asset_class"], row["timeframe"]) == ("BTCUSD", "crypto", "1h")
    assert row["ts_start"] == row["ts_end"] == datetime(2024, 6, 3, 5, tzinfo=UTC)
    assert (row["observed_value"], row["expected_value"]) == (1.0, 0.0)
    assert row["details"]["failure_reason"] == (
        "1 candle(s) open after as_of + one 1h (2024-06-01 00:00 UTC); "
        "the latest at 2024-06-03 05:00 UTC"
    )
    assert row["status"] == "open"
    assert row["first_seen_at"] == row["last_seen_at"] == seen
    assert row["times_seen"] == 1
    assert row["dbt_unique_id"].startswith("test.mdq.future_candles_stg_market__candles_")


def test_the_same_run_again_changes_only_last_seen_at_and_times_seen(
    qdb: Database, qconn: psycopg.Connection
) -> None:
    (before,) = anomalies(qconn, "future_candles")
    seen = datetime(2026, 1, 2, tzinfo=UTC)
    report = run(qdb, seen_at=seen)
    assert (report.inserted, report.updated, report.reopened, report.resolved) == (0, 1, 0, 0)
    (after,) = anomalies(qconn, "future_candles")
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"last_seen_at", "times_seen"}
    assert after["last_seen_at"] == seen
    assert after["times_seen"] == 2


def test_fixing_the_data_resolves_it_and_a_relapse_reopens_the_same_anomaly(
    qdb: Database, qconn: psycopg.Connection
) -> None:
    qconn.execute("delete from market_data where ts = '2024-06-03T05:00:00Z'")
    fixed_at = datetime(2026, 1, 3, tzinfo=UTC)
    report = run(qdb, seen_at=fixed_at)
    assert (report.inserted, report.updated, report.resolved, report.open_errors) == (0, 0, 1, 0)
    assert report.verdict == "ok"
    (row,) = anomalies(qconn, "future_candles")
    assert (row["status"], row["resolved_at"]) == ("resolved", fixed_at)

    insert_candles(qconn, FUTURE)
    relapse = datetime(2026, 1, 4, tzinfo=UTC)
    report = run(qdb, seen_at=relapse)
    assert (report.inserted, report.updated, report.reopened) == (0, 1, 1)
    (again,) = anomalies(qconn, "future_candles")
    assert again["anomaly_id"] == row["anomaly_id"]
    assert (again["status"], again["resolved_at"]) == ("open", None)
    assert again["first_seen_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert (again["last_seen_at"], again["times_seen"]) == (relapse, 3)


def test_the_flow_fails_while_an_error_anomaly_is_open_and_completes_once_fixed(
    qdb: Database,
    qconn: psycopg.Connection,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", qdb.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", SCHEMA)
    # no stored sessions: a scheduled run must build what its checks expect, as mdq check does
    qconn.execute("delete from trading_sessions")
    qconn.execute("update trading_calendars set covered_from = null, covered_until = null")
    state = quality_checks(as_of=AS_OF, select=FUTURE_CHECK, record=True, return_state=True)
    assert state.is_failed()
    covered = qconn.execute(
        "select calendar, min(session_date), max(session_date) from trading_sessions"
        " group by calendar order by calendar"
    ).fetchall()
    assert [c for c, _, _ in covered] == ["24/7", "XNYS"]
    assert all(first <= date(2024, 5, 30) and last >= AS_OF.date() for _, first, last in covered)
    report = state.result(raise_on_failure=False)
    assert report.runner == "prefect-dbt"
    assert (report.open_errors, report.inserted, report.updated) == (1, 0, 1)

    qconn.execute("delete from market_data where ts = '2024-06-03T05:00:00Z'")
    state = quality_checks(as_of=AS_OF, select=FUTURE_CHECK, record=True, return_state=True)
    assert state.is_completed()
    report = state.result()
    assert (report.open_errors, report.resolved) == (0, 1)


def flow_run_markdown(flow_run_id: Any, key: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return next((str(a.data) for a in found if a.key == key), None)


def test_a_recorded_run_rewrites_the_html_report_and_links_it(
    qdb: Database, prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", qdb.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", SCHEMA)
    monkeypatch.setenv("MDQ_REPORT_DIR", str(tmp_path / "report"))
    index = tmp_path / "report" / "index.html"

    what_if = quality_checks(as_of=AS_OF, select=FUTURE_CHECK, record=False, return_state=True)
    markdown = flow_run_markdown(what_if.state_details.flow_run_id, "mdq-worst-findings")
    assert markdown is not None and "HTML quality report" not in markdown
    assert not index.exists()  # a what-if changes nothing, the report included

    state = quality_checks(as_of=AS_OF, select=FUTURE_CHECK, record=True, return_state=True)
    markdown = flow_run_markdown(state.state_details.flow_run_id, "mdq-worst-findings")
    assert markdown is not None
    assert f"HTML quality report: [{index.resolve()}]({index.resolve().as_uri()})" in markdown
    assert "mdq quality report" in index.read_text()
    assert len(list((tmp_path / "report" / "series").glob("*.html"))) == 2  # AAPL, BTCUSD


def test_detect_data_anomalies_with_no_family_runs_nothing_and_completes(
    qdb: Database, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.quality_checks import detect_data_anomalies

    monkeypatch.setenv("MDQ_DATABASE_URL", qdb.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", SCHEMA)
    state = detect_data_anomalies(
        check_gaps=False, check_outliers=False, check_staleness=False, return_state=True
    )
    assert state.is_completed()
    report = state.result()
    assert (report.tests_run, report.inserted, report.resolved) == (0, 0, 0)


@pytest.fixture()
def analyst_project(tmp_path: Path) -> Path:
    """A copy of the dbt project where an analyst added a plain not_null test."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    path = project / "models" / "staging" / "market" / "_market__models.yml"
    spec = yaml.safe_load(path.read_text())
    (model,) = [m for m in spec["models"] if m["name"] == "stg_market__instruments"]
    model["columns"].append(
        {"name": "quote_currency", "description": "Quote currency.", "data_tests": ["not_null"]}
    )
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return project


def test_an_analysts_not_null_test_becomes_one_anomaly_with_samples_then_retires(
    qdb: Database, qconn: psycopg.Connection, analyst_project: Path
) -> None:
    qconn.execute(
        "insert into instruments (symbol, asset_class, calendar, quote_currency) values"
        " ('AAPL', 'stock', 'XNYS', null), ('BTCUSD', 'crypto', '24/7', null),"
        " ('EURUSD', 'forex', 'FX', 'USD')"
    )
    name = "not_null_stg_market__instruments_quote_currency"
    report = run(qdb, select=[f"+{name}"], project_dir=analyst_project)
    assert (report.tests_run, report.inserted, report.open_errors) == (1, 1, 1)
    (row,) = anomalies(qconn, name)
    assert (row["anomaly_type"], row["severity"], row["status"]) == ("not_null", "error", "open")
    assert (row["symbol"], row["timeframe"], row["ts_start"]) == (None, None, None)
    assert (row["observed_value"], row["expected_value"]) == (2.0, 0.0)
    assert row["details"]["failing_rows"] == 2
    assert sorted(s["symbol"] for s in row["details"]["sample_rows"]) == ["AAPL", "BTCUSD"]
    assert row["details"]["audit_relation"] == f"{SCHEMA}_audit.{name}"

    # The analyst removes the test again: a full run of the project retires its finding.
    report = run(qdb, select=None)
    (row,) = anomalies(qconn, name)
    assert row["status"] == "resolved"


def mdq(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Any:
    """Run an mdq command in-process (the console script's code path, without its start-up)."""
    from typer.testing import CliRunner

    from mdq.cli import app

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(app, list(args))


def test_mdq_check_exit_status_and_anomalies_json(
    qdb: Database, qconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MDQ_DATABASE_URL": qdb.url(), "MDQ_DBT_SCHEMA": SCHEMA}
    insert_candles(qconn, FUTURE)
    result = mdq(monkeypatch, "check", "--as-of", "2024-06-01T00:00:00Z", "--record", **env)
    assert result.exit_code == 1, result.output
    assert "see them with: mdq anomalies" in result.stdout
    listed = mdq(monkeypatch, "anomalies", "--format", "json", **env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    future = [r for r in rows if r["check_name"] == "future_candles"]
    assert [(r["symbol"], r["status"], r["ts_start"]) for r in future] == [
        ("BTCUSD", "open", "2024-06-03T05:00:00+00:00")
    ]
    assert all(r["status"] == "open" for r in rows)
    counted = mdq(monkeypatch, "anomalies", "--summary", "--format", "json", **env)
    summary = json.loads(counted.stdout)
    assert sum(c["count"] for c in summary) == len(rows)
    assert {
        "symbol": "BTCUSD",
        "timeframe": "1h",
        "anomaly_type": "future_candle",
        "severity": "error",
        "count": 1,
    } in summary

    broken = mdq(
        monkeypatch,
        "check",
        MDQ_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nope",
        MDQ_CONNECT_TIMEOUT="2",
    )
    assert broken.exit_code == 2, broken.output
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/nope" in broken.output
    bad_time = mdq(monkeypatch, "check", "--as-of", "yesterday", **env)
    assert bad_time.exit_code == 2


def test_mdq_docs_generates_the_site(qdb: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mdq.cli import app

    monkeypatch.setenv("MDQ_DATABASE_URL", qdb.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", SCHEMA)
    catalog = DBT_PROJECT_DIR / "target" / "catalog.json"
    catalog.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["docs", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert f"docs generated in {DBT_PROJECT_DIR / 'target'} (index.html" in result.output
    nodes = json.loads(catalog.read_text())["nodes"]
    assert "model.mdq.stg_market__candles" in nodes
