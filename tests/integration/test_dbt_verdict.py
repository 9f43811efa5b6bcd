"""dbt as analysts run it: the real dbt CLI's verdict, mdq check's re-used parse, control.

One module database. The data hold one warn finding (ETHUSD: volume 0 while the price
moved, ``zero_volume_move``, warn) and, from the second test on, one error finding (BTCUSD:
a candle two days after ``as_of``, ``future_candle``, error). Tests run in order.

The dbt CLI runs as the README tells an analyst: ``eval "$(mdq db env)"`` then ``dbt build``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import DBT_PROFILES_DIR, DBT_PROJECT_DIR
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "mdq_verdict"
BIN = Path(sys.executable).parent
AS_OF = "2024-06-01T00:00:00Z"

CANDLES = """
symbol,asset_class,timeframe,ts,open,high,low,close,volume
BTCUSD,crypto,1h,2024-05-31T20:00:00Z,67000,67100,66900,67050,12.5
BTCUSD,crypto,1h,2024-05-31T21:00:00Z,67050,67150,66950,67100,10.1
BTCUSD,crypto,1h,2024-05-31T22:00:00Z,67100,67200,67000,67120,11.0
BTCUSD,crypto,1h,2024-05-31T23:00:00Z,67120,67220,67020,67150,9.7
ETHUSD,crypto,1h,2024-05-31T20:00:00Z,3000,3010,2990,3005,120
ETHUSD,crypto,1h,2024-05-31T21:00:00Z,3005,3015,2995,3010,110
ETHUSD,crypto,1h,2024-05-31T22:00:00Z,3010,3020,3000,3015,0
ETHUSD,crypto,1h,2024-05-31T23:00:00Z,3015,3025,3005,3020,90
"""
# two days after as_of: no clock is that far ahead (future_candles, error)
FUTURE = "BTCUSD,crypto,1h,2024-06-03T05:00:00Z,67150,67200,67100,67180,9.1\n"
ERROR_IF = "!= 0 and count(*) filter (where severity = 'error') != 0"


@pytest.fixture(scope="module")
def vdb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db) as conn:
        apply_migrations(conn)
    with connect(db, autocommit=True) as conn:
        conn.execute(
            "insert into instruments (symbol, asset_class, calendar) values"
            " ('BTCUSD', 'crypto', '24/7'), ('ETHUSD', 'crypto', '24/7')"
        )
        insert_candles(conn, CANDLES)
    with connect(db) as conn:
        refresh_calendars(conn, today=date(2024, 6, 1))
    return db


@pytest.fixture()
def vconn(vdb: Database) -> Iterator[psycopg.Connection]:
    with connect(vdb, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def no_prefect_api() -> Iterator[None]:
    """No Prefect API configured (the session's test API, if a test started it, is unset
    here): ``mdq check`` runs dbt's own runner and prints one line per node."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture(params=["dbt", "prefect"])
def check_path(request: pytest.FixtureRequest) -> str:
    """Each way ``mdq check`` runs: without a Prefect API (dbt's runner, the command run
    in-process), and through the quality flow on a Prefect API (prefect-dbt's runner, the
    console script run as a process with ``PREFECT_API_URL`` set, as a user runs it)."""
    request.getfixturevalue("no_prefect_api" if request.param == "dbt" else "prefect_harness")
    return str(request.param)


def mdq_on(path: str, *args: str, db: Database) -> tuple[int, str]:
    """``mdq <args>`` on one path of :func:`check_path`: (exit code, stdout + stderr)."""
    if path == "dbt":
        result = mdq(*args, db=db)
        return result.exit_code, result.output
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "MDQ_DATABASE_URL": db.url(),
        "MDQ_DBT_SCHEMA": SCHEMA,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    done = subprocess.run(
        [str(BIN / "mdq"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def analyst_dbt(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    """``eval "$(mdq db env)"; dbt <args>`` in a shell, from the repository root."""
    env = {
        **os.environ,
        "MDQ_DATABASE_URL": db.url(),
        "MDQ_DBT_SCHEMA": SCHEMA,
        "MDQ_AS_OF": AS_OF,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    script = 'eval "$(mdq db env)" && exec dbt "$@"'
    return subprocess.run(
        ["bash", "-c", script, "dbt", *args],
        cwd=DBT_PROFILES_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def run_results() -> dict[str, dict[str, Any]]:
    """The last dbt command's results by node name (unit tests by ``unit:<name>``)."""
    results = json.loads((DBT_PROJECT_DIR / "target" / "run_results.json").read_text())
    by_name: dict[str, dict[str, Any]] = {}
    for r in results["results"]:
        parts = r["unique_id"].split(".")
        by_name[f"unit:{parts[3]}" if parts[0] == "unit_test" else parts[2]] = r
    return by_name


def build_args() -> list[str]:
    return ["build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", "."]


def test_only_warn_rows_make_dbt_build_warn_and_exit_0(vdb: Database) -> None:
    done = analyst_dbt(vdb, *build_args())
    assert done.returncode == 0, done.stdout[-3000:]
    results = run_results()
    integrity = results["ohlc_integrity_stg_market__candles"]
    assert (integrity["status"], integrity["failures"]) == ("warn", 1)
    assert results["future_candles_stg_market__candles_"]["status"] == "pass"
    statuses = {r["status"] for r in results.values()}
    assert statuses == {"success", "pass", "warn", "no-op"}
    assert [n for n, r in results.items() if r["status"] == "no-op"] == ["mdq_anomaly_reports"]
    assert [name for name, r in results.items() if r["status"] == "warn"] == [
        "ohlc_integrity_stg_market__candles"
    ]
    # the plain build still runs the dbt unit tests (mdq's own runs leave them out)
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    unit = [r for r in results.values() if r["unique_id"].startswith("unit_test.")]
    assert len(unit) == len(manifest["unit_tests"]) == 8
    assert {r["status"] for r in unit} == {"pass"}


CHECKS = [
    "candle_gaps",
    "candle_staleness",
    "duplicate_candles",
    "flat_filler_candles",
    "future_candles",
    "misaligned_candles",
    "ohlc_integrity",
    "out_of_session_candles",
    "price_outliers",
    "quarantined_rows",
    "split_suspects",
    "unit_changes",
    "wick_outliers",
]


def undocumented(manifest: dict[str, Any], catalog: dict[str, Any]) -> list[str]:
    """Models, sources, tests, exposures and catalog columns without a description (the
    project's on-run-start hook is an ``operation`` node, which dbt gives no description)."""
    missing = []
    nodes = {**manifest["nodes"], **manifest["sources"], **manifest["exposures"]}
    for uid, node in nodes.items():
        if node["resource_type"] == "operation":
            continue
        if not node.get("description", "").strip():
            missing.append(uid)
        if node["resource_type"] in ("test", "exposure"):
            continue
        described = {k.lower(): v.get("description", "") for k, v in node["columns"].items()}
        in_db = catalog["nodes"].get(uid) or catalog["sources"].get(uid)
        if in_db is None:
            missing.append(f"{uid} (not in catalog)")
            continue
        missing += [f"{uid}.{c}" for c in in_db["columns"] if not described.get(c.lower(), "")]
    return missing


def test_docs_describe_everything_and_draw_each_check_to_data_anomalies(vdb: Database) -> None:
    # the build graph of the last `dbt build` (test 1), with dbt's test edges
    summary = json.loads((DBT_PROJECT_DIR / "target" / "graph_summary.json").read_text())
    graph = summary["with_test_edges"]
    name_of = {int(i): n["name"] for i, n in graph.items()}
    edges = {(n["name"], name_of[s]) for n in graph.values() for s in n.get("succ", ())}

    done = analyst_dbt(vdb, "docs", "generate", *build_args()[1:])
    assert done.returncode == 0, done.stdout[-3000:]
    target = DBT_PROJECT_DIR / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    assert undocumented(manifest, catalog) == []
    overview = manifest["docs"]["doc.mdq.__overview__"]["block_contents"]
    assert "## What mdq checks" in overview and "## How to read a finding" in overview

    checks = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test" and node["config"]["meta"].get("mdq_check")
    }
    assert sorted(n["test_metadata"]["name"] for n in checks.values()) == CHECKS
    anomalies = "model.mdq.fct_data_anomalies"
    for uid, node in checks.items():
        generic = manifest["macros"][f"macro.mdq.test_{node['test_metadata']['name']}"]
        # each check's page says what its generic test's YAML says
        assert node["description"] == generic["description"] != ""
        # market_data -> staging -> intermediate -> the check -> data_anomalies
        assert (uid, anomalies) in edges, uid
    assert manifest["parent_map"][anomalies] == sorted(
        [
            "model.mdq.int_candle_splits_matched",
            "model.mdq.int_candles_scored",
            "model.mdq.int_candles_sessionized",
            "model.mdq.int_trading_sessions_clock_enumerated",
            "model.mdq.int_trading_sessions_enumerated",
            "model.mdq.stg_market__backfill_runs",
            "model.mdq.stg_market__candles",
            "model.mdq.stg_market__confirmed_empty_windows",
            "model.mdq.stg_market__data_anomalies",
            "model.mdq.stg_market__instruments",
            "model.mdq.stg_market__quarantined_candles",
            "model.mdq.stg_market__series_labels",
            "model.mdq.stg_market__trading_calendars",
            "source.mdq.market.check_scopes",
        ]
    )
    assert manifest["parent_map"]["model.mdq.stg_market__data_anomalies"] == [
        "source.mdq.market.data_anomalies"
    ]
    exposure = manifest["exposures"]["exposure.mdq.mdq_anomaly_reports"]
    assert sorted(exposure["depends_on"]["nodes"]) == [
        "model.mdq.fct_data_anomalies",
        "source.mdq.market.data_anomalies",
    ]


def test_an_error_row_makes_dbt_build_fail_and_exit_1(
    vdb: Database, vconn: psycopg.Connection
) -> None:
    insert_candles(vconn, FUTURE)
    done = analyst_dbt(vdb, *build_args())
    assert done.returncode == 1, done.stdout[-3000:]
    results = run_results()
    future = results["future_candles_stg_market__candles_"]
    assert (future["status"], future["failures"]) == ("fail", 1)
    assert future["message"] == f"Got 1 result, configured to fail if {ERROR_IF}"
    assert results["ohlc_integrity_stg_market__candles"]["status"] == "warn"
    failed = sorted(name for name, r in results.items() if r["status"] in ("fail", "error"))
    assert failed == ["future_candles_stg_market__candles_"]
    # dbt's rule: a failing test on stg_market__candles skips what is built from it
    assert results["int_candle_features_computed"]["status"] == "skipped"


def mdq(*args: str, db: Database) -> Any:
    """Run an mdq command in-process (the console script's code, stdout not a terminal)."""
    from typer.testing import CliRunner

    from mdq.cli import app

    env = {"MDQ_DATABASE_URL": db.url(), "MDQ_DBT_SCHEMA": SCHEMA}
    return CliRunner().invoke(app, list(args), env=env)


def anomaly_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select check_name, anomaly_type, severity, symbol, status, times_seen"
        " from data_anomalies order by symbol, check_name"
    ).fetchall()


DBT_LOG = DBT_PROJECT_DIR / "logs" / "dbt.log"


def log_since(offset: int) -> str:
    """What dbt logged after ``offset`` (the log's length before the command ran).

    dbt rotates logs/dbt.log at 10 MB into dbt.log.1: when the log is shorter than the
    offset, it rotated during the command, and the command's first lines are in dbt.log.1.
    """
    text = DBT_LOG.read_text(errors="replace")
    if len(text) >= offset:
        return text[offset:]
    rotated = DBT_LOG.with_name(DBT_LOG.name + ".1")
    before = rotated.read_text(errors="replace")[offset:] if rotated.exists() else ""
    return before + text


NODE_LINE = re.compile(
    r"^(SUCCESS|PASS|WARN|FAIL|ERROR|SKIPPED) +(model|test) \S+.* \(\d+\.\d\ds\)$"
)


def test_a_second_mdq_check_reuses_dbt_s_parse_and_records_warn_and_error_rows(
    vdb: Database, vconn: psycopg.Connection, no_prefect_api: None
) -> None:
    (DBT_PROJECT_DIR / "target" / "partial_parse.msgpack").unlink(missing_ok=True)
    start = len(DBT_LOG.read_text(errors="replace")) if DBT_LOG.exists() else 0
    # --record: a check --as-of another instant is otherwise a what-if that records nothing
    first = mdq("check", "--as-of", AS_OF, "--record", db=vdb)
    assert first.exit_code == 1, first.output
    first_log = log_since(start)
    assert "Unable to do partial parsing because saved manifest not found" in first_log

    start = len(DBT_LOG.read_text(errors="replace"))
    second = mdq("check", "--as-of", "2024-06-01T00:30:00Z", "--record", db=vdb)
    assert second.exit_code == 1, second.output
    second_log = log_since(start)
    # two dbt invocations (models, then checks), neither re-parses the project
    assert second_log.count("Running with dbt=") == 2
    assert "Unable to do partial parsing" not in second_log
    assert second_log.count("Partial parsing enabled, no changes found, skipping parsing") == 2

    # the progress: one plain line per node, no ANSI codes, no unit tests
    assert "\x1b[" not in second.output
    lines = [line for line in second.output.splitlines() if NODE_LINE.match(line)]
    assert sum(" model stg_market__candles " in line for line in lines) == 1
    assert "WARN    test ohlc_integrity_stg_market__candles: 1 rows (" in second.output
    assert "FAIL    test future_candles_stg_market__candles_: 1 rows (" in second.output
    assert "unit_test" not in second.output

    # the warn row is recorded although dbt only warned; nothing was skipped
    assert anomaly_rows(vconn) == [
        ("future_candles", "future_candle", "error", "BTCUSD", "open", 2),
        ("ohlc_integrity", "zero_volume_move", "warn", "ETHUSD", "open", 2),
    ]
    assert "could not run" not in second.output


def test_per_symbol_severity_vars_and_symbols_pass_through(
    vdb: Database, vconn: psycopg.Connection, no_prefect_api: None
) -> None:
    # one instrument's severity raised by a 'symbol:<SYMBOL>:<timeframe>' key, for one check
    raised = mdq(
        "check",
        "--as-of",
        "2024-06-01T01:00:00Z",
        "--record",
        "--select",
        "+test_name:ohlc_integrity",
        "--symbols",
        "ETHUSD",
        "--vars",
        "{mdq_zero_volume_move_severity: {'*:*': warn, 'symbol:ETHUSD:*': error}}",
        db=vdb,
    )
    assert raised.exit_code == 1, raised.output
    assert "FAIL    test ohlc_integrity_stg_market__candles: 1 rows (" in raised.output
    assert anomaly_rows(vconn) == [
        ("future_candles", "future_candle", "error", "BTCUSD", "open", 2),
        ("ohlc_integrity", "zero_volume_move", "error", "ETHUSD", "open", 3),
    ]

    # a run restricted to BTCUSD keeps no ETHUSD row (dbt passes) and resolves no ETHUSD
    # anomaly; its verdict counts only BTCUSD's open errors of the checks that ran (none)
    other = mdq(
        "check",
        "--as-of",
        "2024-06-01T02:00:00Z",
        "--record",
        "--select",
        "+test_name:ohlc_integrity",
        "--symbols",
        "BTCUSD",
        db=vdb,
    )
    assert other.exit_code == 0, other.output
    assert "PASS    test ohlc_integrity_stg_market__candles (" in other.output
    assert anomaly_rows(vconn) == [
        ("future_candles", "future_candle", "error", "BTCUSD", "open", 2),
        ("ohlc_integrity", "zero_volume_move", "error", "ETHUSD", "open", 3),
    ]
    stored = vconn.execute(
        f"select count(*) from {SCHEMA}_audit.ohlc_integrity_stg_market__candles"
    ).fetchone()
    assert stored == (0,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--vars", "[1, 2]"], "is not a mapping", id="vars-not-a-mapping"),
        pytest.param(["--symbols", " , "], "names no symbol", id="no-symbol"),
    ],
)
def test_bad_check_options_exit_2(vdb: Database, args: list[str], message: str) -> None:
    result = mdq("check", *args, db=vdb)
    assert result.exit_code == 2
    assert message in result.output


def test_the_default_project_needs_nothing_from_the_dbt_hub() -> None:
    """No packages.yml or dependencies.yml by default: every dbt command above ran without one,
    and nothing was installed."""
    assert not (DBT_PROJECT_DIR / "packages.yml").exists()
    assert not (DBT_PROJECT_DIR / "dependencies.yml").exists()
    assert not (DBT_PROJECT_DIR / "dbt_packages" / "dbt_expectations").exists()


def test_enabling_dbt_expectations_without_the_package_is_one_clear_error(
    vdb: Database, monkeypatch: pytest.MonkeyPatch, check_path: str
) -> None:
    from mdq.dbt_runner import ensure_packages

    monkeypatch.setenv("MDQ_DBT_EXPECTATIONS", "1")
    exit_code, output = mdq_on(check_path, "check", db=vdb)
    assert exit_code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "error: the dbt-expectations tests are enabled (MDQ_DBT_EXPECTATIONS=1) but the package "
        "metaplane/dbt_expectations is not installed: dbt deps could not install it ("
    )
    assert errors[0].endswith(
        "run dbt deps where hub.getdbt.com is reachable, or unset MDQ_DBT_EXPECTATIONS"
    )
    written = DBT_PROJECT_DIR / "packages.yml"
    assert written.read_text() == (DBT_PROJECT_DIR / "expectations" / "packages.yml").read_text()

    # switched off again: the next dbt command removes the packages.yml mdq wrote
    monkeypatch.delenv("MDQ_DBT_EXPECTATIONS")
    ensure_packages(None)
    assert not written.exists()
