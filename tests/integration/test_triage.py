"""Triage end to end (issue 12): acknowledge, mute, what-if checks that record nothing.

Real PostgreSQL, real dbt, the real `mdq` CLI in-process. One module database used in order:
a 1h crypto series with a 12-candle hole (one gap, error severity) and a candle stamped in
the future of AS_OF (one future_candle, error severity).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from mdq.db import Database, connect, triage
from mdq.db.migrate import apply_migrations
from mdq.exceptions import RecordBackwards, TriageError
from mdq.health import run_health_check
from mdq.notify import RecordingNotifier
from mdq.quality import run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "mdq"
AS_OF = datetime(2024, 6, 1, 1, tzinfo=UTC)
EARLIER = "2024-05-30T12:00:00Z"
GAP_CHECK = ["+test_name:candle_gaps", "+test_name:future_candles"]
SEEN_LATER = datetime(2026, 8, 8, tzinfo=UTC)


def series() -> str:
    """48 hourly BTCUSD candles from 2024-05-30 00:00 UTC, minus 2024-05-31 00:00-11:00."""
    start = datetime(2024, 5, 30, tzinfo=UTC)
    lines = []
    for hour in range(48):
        ts = start + timedelta(hours=hour)
        if datetime(2024, 5, 31, tzinfo=UTC) <= ts < datetime(2024, 5, 31, 12, tzinfo=UTC):
            continue
        price = 67000 + 10 * (hour % 5)
        lines.append(
            f"BTCUSD,crypto,1h,{ts.isoformat()},{price},{price + 20},{price - 20},"
            f"{price + 5},{10 + hour % 3}"
        )
    lines.append("BTCUSD,crypto,1h,2024-06-03T05:00:00+00:00,67050,67200,67000,67100,9")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tdb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db) as conn:
        apply_migrations(conn)
    with connect(db, autocommit=True) as conn:
        insert_candles(conn, series())
    return db


@pytest.fixture()
def tconn(tdb: Database) -> Iterator[psycopg.Connection]:
    with connect(tdb, autocommit=True) as conn:
        yield conn


def mdq(monkeypatch: pytest.MonkeyPatch, db: Database, *args: str) -> Any:
    """Run an mdq command in-process (the console script's code path)."""
    from typer.testing import CliRunner

    from mdq.cli import app

    monkeypatch.setenv("MDQ_DATABASE_URL", db.url())
    monkeypatch.setenv("MDQ_DBT_SCHEMA", SCHEMA)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("DBT_QUIET", "true")
    return CliRunner().invoke(app, list(args))


def dump(conn: psycopg.Connection) -> bytes:
    """Every row of the triage state, byte for byte (COPY text format, in key order)."""
    out = b""
    for table, key in (
        ("data_anomalies", "anomaly_id"),
        ("anomaly_acks", "ack_id"),
        ("anomaly_mutes", "mute_id"),
        ("quality_runs", "run_id"),
        ("health_alert_streaks", "problem_key"),
    ):
        with conn.cursor().copy(f"copy (select * from {table} order by {key}) to stdout") as copy:
            out += b"".join(bytes(chunk) for chunk in copy)
    return out


def gap(conn: psycopg.Connection) -> dict[str, Any]:
    cur = conn.execute(
        "select a.anomaly_id, a.status, a.observed_value, a.ts_end, t.triage_status"
        " from data_anomalies as a join data_anomaly_triage as t using (anomaly_id)"
        " where a.anomaly_type = 'gap'"
    )
    names = [d.name for d in cur.description or ()]
    (row,) = cur.fetchall()
    return dict(zip(names, row, strict=True))


def health(db: Database) -> list[tuple[str, str]]:
    notifier = RecordingNotifier()
    run_health_check(db, notifier)
    return [(a.kind, a.subject) for a in notifier.sent]


def test_a_recorded_run_finds_the_gap_and_the_future_candle(
    tdb: Database, tconn: psycopg.Connection
) -> None:
    report = run_quality_checks(
        tdb, SCHEMA, as_of=AS_OF, select=GAP_CHECK, use_prefect=False, record=True
    )
    assert (report.recorded, report.inserted, report.open_errors) == (True, 2, 2)
    row = gap(tconn)
    assert (row["status"], row["observed_value"], row["triage_status"]) == ("open", 12.0, "open")
    assert health(tdb) == [("open_gaps", "BTCUSD/1h")]


def test_ack_makes_the_check_pass_and_health_quiet_until_the_finding_changes(
    tdb: Database, tconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [r[0] for r in tconn.execute("select anomaly_id from data_anomalies order by 1")]
    acked = mdq(
        monkeypatch, tdb, "anomalies", "ack", *map(str, ids), "--reason", "known", "--by", "ann"
    )
    assert acked.exit_code == 0, acked.output
    assert f"acknowledged anomaly {ids[0]}" in acked.stdout
    listed = mdq(monkeypatch, tdb, "anomalies", "--status", "acknowledged", "--format", "csv")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("anomaly_id,fingerprint,")
    assert all(line.endswith(",acknowledged") for line in lines[1:])

    checked = mdq(monkeypatch, tdb, "check", "--as-of", AS_OF.isoformat(), "--record")
    assert checked.exit_code == 0, checked.output
    assert "open: 0 error, 0 warn (besides 2 acknowledged, 0 muted)" in checked.stdout
    assert health(tdb) == []  # the gap streak of the first test ends, no new alert

    # The hole grows by one candle at its end: the gap's extent and count change → reopened.
    tconn.execute("delete from market_data where ts = '2024-05-31T12:00:00Z'")
    report = run_quality_checks(
        tdb, SCHEMA, as_of=AS_OF, select=GAP_CHECK, use_prefect=False, record=True
    )
    assert (report.acks_ended, report.open_errors, report.acknowledged) == (1, 1, 1)
    row = gap(tconn)
    assert (row["status"], row["observed_value"], row["triage_status"]) == ("open", 13.0, "open")
    (ack,) = triage.ack_history(tconn, row["anomaly_id"])
    assert (ack.acked_by, ack.reason, ack.end_reason, ack.ended_by) == (
        "ann",
        "known",
        "changed",
        "check",
    )
    assert health(tdb) == [("open_gaps", "BTCUSD/1h")]
    shown = mdq(monkeypatch, tdb, "anomalies", "show", str(row["anomaly_id"]))
    assert shown.exit_code == 0, shown.output
    assert "acknowledged" in shown.stdout and "(changed, by check)" in shown.stdout
    assert shown.stdout.count("│ *  │") == 0  # a gap has no candle inside its range
    assert "2024-05-30 23:00" in shown.stdout and "2024-05-31 13:00" in shown.stdout


def test_a_mute_with_expiry_is_quiet_then_the_finding_is_back(
    tdb: Database, tconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TriageError, match="must name a symbol"):
        triage.mute(tconn, by="bo", reason="x", expires_at=datetime.now(UTC) + timedelta(days=1))
    expires = datetime.now(UTC) + timedelta(hours=1)
    rule = triage.mute(
        tconn,
        by="bo",
        reason="vendor outage",
        expires_at=expires,
        symbol="BTCUSD",
        anomaly_type="gap",
    )
    assert (rule.covered, rule.describe()) == (1, "symbol=BTCUSD type=gap")
    report = run_quality_checks(
        tdb, SCHEMA, as_of=AS_OF, select=GAP_CHECK, use_prefect=False, record=True
    )
    assert (report.open_errors, report.muted, report.acknowledged) == (0, 1, 1)
    assert gap(tconn)["triage_status"] == "muted"
    assert health(tdb) == []
    mutes = mdq(monkeypatch, tdb, "anomalies", "mutes")
    assert "symbol=BTCUSD type=gap" in mutes.stdout and "vendor outage" in mutes.stdout

    # Time passes: the rule's hour is brought down to the next second (a dbt run under load
    # takes longer than any short expiry would allow), then it lapses by itself.
    soon = tconn.execute(
        "update anomaly_mutes set expires_at = now() + interval '1 second'"
        " where mute_id = %s returning expires_at",
        (rule.mute_id,),
    ).fetchone()
    assert soon is not None and gap(tconn)["triage_status"] == "muted"
    time.sleep(max(0.0, (soon[0] - datetime.now(UTC)).total_seconds()) + 0.2)
    assert gap(tconn)["triage_status"] == "open"
    report = run_quality_checks(
        tdb, SCHEMA, as_of=AS_OF, select=GAP_CHECK, use_prefect=False, record=True
    )
    assert (report.open_errors, report.muted) == (1, 0)
    assert health(tdb) == [("open_gaps", "BTCUSD/1h")]
    assert triage.list_mutes(tconn) == []
    (expired,) = triage.list_mutes(tconn, include_ended=True)
    assert (expired.mute_id, expired.ended_at) == (rule.mute_id, None)


def test_an_as_of_run_records_nothing_and_prints_its_findings_unless_record(
    tdb: Database, tconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dump(tconn)
    what_if = mdq(monkeypatch, tdb, "check", "--as-of", EARLIER)
    assert what_if.exit_code == 1, what_if.output
    assert dump(tconn) == before
    assert "what-if, nothing recorded:" in what_if.stdout
    assert "finding(s) as of 2024-05-30T12:00:00+00:00" in what_if.stdout
    # As of 2024-05-30 12:00 the hole has not happened and many candles lie in the future.
    future = [line for line in what_if.stdout.splitlines() if "future_candle" in line]
    assert len(future) == 1 and "│ new " in future[0]
    assert not [line for line in what_if.stdout.splitlines() if "│ gap " in line]

    refused = mdq(monkeypatch, tdb, "check", "--as-of", EARLIER, "--record")
    assert refused.exit_code == 2, refused.output
    assert "only moves forward" in refused.output
    with pytest.raises(RecordBackwards):
        run_quality_checks(
            tdb, SCHEMA, as_of=datetime(2024, 5, 30, tzinfo=UTC), select=GAP_CHECK, record=True
        )
    assert dump(tconn) == before

    recorded = mdq(monkeypatch, tdb, "check", "--as-of", "2024-06-01T02:00:00Z", "--record")
    assert recorded.exit_code == 1, recorded.output
    assert "what-if" not in recorded.stdout
    assert dump(tconn) != before
    runs = tconn.execute("select as_of from quality_runs order by run_id desc limit 1").fetchone()
    assert runs == (datetime(2024, 6, 1, 2, tzinfo=UTC),)


def test_a_stale_acknowledgement_survives_the_growing_count_not_a_severity_change(
    tconn: psycopg.Connection,
) -> None:
    stale = tconn.execute(
        "insert into data_anomalies (fingerprint, check_name, anomaly_type, severity, symbol,"
        " timeframe, ts_start, ts_end, observed_value, expected_value) values ('st1',"
        " 'candle_staleness', 'stale', 'warn', 'FB', '1d', '2013-03-01T05:00Z',"
        " '2026-08-06T14:12Z', 3, 2) returning anomaly_id"
    ).fetchone()
    assert stale is not None
    triage.acknowledge(tconn, stale[0], by="cy", reason="historic file")

    def status() -> str:
        row = tconn.execute(
            "select triage_status from data_anomaly_triage where anomaly_id = %s", stale
        ).fetchone()
        return str(row[0]) if row else ""

    # the next run: one more candle missed, a later as_of
    tconn.execute(
        "update data_anomalies set observed_value = 4, ts_end = '2026-08-07T14:12Z'"
        " where anomaly_id = %s",
        stale,
    )
    assert (triage.end_stale_acks(tconn, seen_at=SEEN_LATER), status()) == (0, "acknowledged")
    tconn.execute("update data_anomalies set severity = 'error' where anomaly_id = %s", stale)
    assert status() == "open"
    assert triage.end_stale_acks(tconn, seen_at=SEEN_LATER) == 1
    (ack,) = triage.ack_history(tconn, stale[0])
    assert (ack.end_reason, ack.ended_at) == ("changed", SEEN_LATER)
    tconn.execute("delete from data_anomalies where anomaly_id = %s", stale)
