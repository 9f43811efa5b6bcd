"""Health (every 6 hours): staleness per series, symbols failing their backfill, open
gaps, outliers and split suspects → a row in ``health_snapshots`` and one alert per problem
streak at or above the minimum severity (default ``error``: warn-level problems, such as likely
real moves, are in the snapshot and never page). Acknowledged and muted anomalies are counted
apart in the snapshot (``triage``, with the mute rules in force) and are never problems.

A run with ``as_of`` is a what-if (unless ``record``): it computes the same snapshot and the
alerts it would send, in a transaction that is rolled back, and sends nothing.

Staleness is judged by the project's calendar-aware staleness checks (dbt tests tagged
``staleness``), which the flow runs first unless told not to; the snapshot also keeps each
series' newest candle and its age at ``as_of`` for reference.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mdq.db import Database, connect
from mdq.db import health as health_db
from mdq.dbt_runner import DbtBuildResult, DbtTestResult
from mdq.health_rules import (
    DEFAULT_MIN_SEVERITY,
    FAILURE_THRESHOLD,
    Problem,
    find_problems,
    pages,
    plan_alerts,
)
from mdq.notify import Alert, Notifier


@dataclass(frozen=True)
class HealthSnapshot:
    """One health run.

    Attributes:
        snapshot_id: the row in health_snapshots (None for a what-if: nothing was written).
        as_of: reference time (UTC).
        series_tracked: (symbol, timeframe) pairs seen.
        problems: every current problem, sorted by kind and subject.
        alerted: the problems alerted on in this run (new streaks only); for a what-if, the
            ones it would alert on.
        min_severity: problems below it are listed and never alert.
        acknowledged: open anomalies acknowledged (not problems).
        muted: open anomalies muted (not problems).
        recorded: False for a what-if run.
    """

    snapshot_id: int | None
    as_of: datetime
    series_tracked: int
    problems: tuple[Problem, ...]
    alerted: tuple[Problem, ...]
    min_severity: str = DEFAULT_MIN_SEVERITY
    acknowledged: int = 0
    muted: int = 0
    recorded: bool = True

    def summary(self) -> str:
        """One human line."""
        where = f"snapshot {self.snapshot_id}" if self.recorded else "what-if, nothing recorded"
        triage = (
            f"; {self.acknowledged} acknowledged and {self.muted} muted finding(s) not counted"
            if self.acknowledged or self.muted
            else ""
        )
        if not self.problems:
            return f"healthy: {self.series_tracked} series, no problem ({where}){triage}"
        paging = sum(1 for p in self.problems if pages(p, self.min_severity))
        verb = "new alert(s)" if self.recorded else "alert(s) it would send"
        return (
            f"{len(self.problems)} problem(s) over {self.series_tracked} series, {paging} at "
            f"{self.min_severity} or above, {len(self.alerted)} {verb} ({where}){triage}"
        )


def run_health_check(
    database: Database,
    notifier: Notifier,
    *,
    as_of: datetime | None = None,
    failure_threshold: int = FAILURE_THRESHOLD,
    refresh_staleness: bool = False,
    schema: str = "mdq",
    min_severity: str = DEFAULT_MIN_SEVERITY,
    record: bool | None = None,
) -> HealthSnapshot:
    """Take a health snapshot and alert on problems that start a streak.

    Args:
        database: the project's database.
        notifier: where alerts go.
        as_of: reference time (UTC-aware; default now).
        failure_threshold: consecutive backfill failures that make a problem (default 3).
        refresh_staleness: run the dbt checks tagged ``staleness`` first (at ``as_of``).
        schema: dbt schema, for the refresh.
        min_severity: ``error`` (default) or ``warn``: problems below it never alert.
        record: write the snapshot, streaks and staleness findings and send alerts; None
            (default): only a live run (no ``as_of``) does, one with ``as_of`` is a what-if.

    Returns:
        The snapshot.

    Raises:
        ValueError: naive ``as_of``, a threshold < 1 or an unknown ``min_severity``.
        DbtRunError: the staleness refresh could not run.
        RecordBackwards: ``record`` with an ``as_of`` behind the recorded quality state.
    """
    from mdq.health_rules import SEVERITY_RANK

    if as_of is not None and as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got naive {as_of.isoformat()}")
    if min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity {min_severity!r} not supported; expected warn, error")
    record = as_of is None if record is None else record
    now = datetime.now(UTC)
    given_as_of = as_of
    as_of = (as_of or now).astimezone(UTC)
    result = None
    locked = contextlib.ExitStack()
    by_index = None
    if refresh_staleness:
        from mdq.db.locks import SCHEDULED_WAIT_SECONDS, check_lock
        from mdq.quality import build_checks

        # dbt's staleness models and data_anomalies are the checks': one at a time
        locked.enter_context(check_lock(database, wait_seconds=SCHEDULED_WAIT_SECONDS))
        by_index = staleness_by_index(database, schema, as_of)
        if by_index is None:
            result = build_checks(
                database, schema, as_of=given_as_of, select=["+tag:staleness"], today=as_of.date()
            )
    with locked, connect(database) as conn, conn.transaction(force_rollback=not record):
        if by_index is not None:
            result = by_index.store(conn)
        if result is not None:
            from mdq.quality import persist_on

            persist_on(conn, result, full_run=False, seen_at=now, as_of=given_as_of, record=record)
        series = health_db.read_series(conn)
        failures = health_db.read_failures(conn)
        problems = find_problems(series, failures, failure_threshold=failure_threshold)
        plan = plan_alerts(problems, health_db.lock_streaks(conn), min_severity)
        health_db.record_streaks(conn, plan, now)
        acknowledged = sum(s.acknowledged for s in series)
        muted = sum(s.muted for s in series)
        from mdq.db.triage import list_mutes

        snapshot_id = health_db.insert_snapshot(
            conn,
            {
                "taken_at": now,
                "as_of": as_of,
                "status": "problems" if problems else "ok",
                "series_tracked": len(series),
                "stale_series": sum(1 for s in series if s.open_stale),
                "failing_symbols": sum(
                    1 for f in failures if f.consecutive_failures >= failure_threshold
                ),
                "open_gaps": sum(s.open_gaps for s in series),
                "open_outliers": sum(s.open_outliers for s in series),
                "open_error_anomalies": health_db.open_error_count(conn),
                "min_severity": min_severity,
                "problems": [
                    {
                        "kind": p.kind,
                        "subject": p.subject,
                        "severity": p.severity,
                        "message": p.message,
                        "pages": pages(p, min_severity),
                    }
                    for p in problems
                ],
                "series": [
                    {
                        "symbol": s.symbol,
                        "timeframe": s.timeframe,
                        "last_ts": s.last_ts.isoformat() if s.last_ts else None,
                        "age_seconds": (as_of - s.last_ts).total_seconds() if s.last_ts else None,
                        "is_stale": bool(s.open_stale),
                        "open_gaps": s.open_gaps,
                        "open_outliers": s.open_outliers,
                        "open_split_suspects": s.open_splits,
                        "acknowledged": s.acknowledged,
                        "muted": s.muted,
                    }
                    for s in series
                ],
                "triage": {
                    "acknowledged": acknowledged,
                    "muted": muted,
                    "mute_rules": [
                        {
                            "mute_id": m.mute_id,
                            "covers": m.describe(),
                            "by": m.muted_by,
                            "reason": m.reason,
                            "expires_at": m.expires_at.isoformat(),
                            "findings": m.covered,
                        }
                        for m in list_mutes(conn)
                    ],
                },
            },
        )
    if record:
        for problem in plan.start:
            notifier.send(
                Alert(
                    kind=problem.kind,
                    subject=problem.subject,
                    message=problem.message,
                    details={"severity": problem.severity, "snapshot_id": snapshot_id},
                )
            )
    return HealthSnapshot(
        snapshot_id if record else None,
        as_of,
        len(series),
        tuple(problems),
        plan.start,
        min_severity=min_severity,
        acknowledged=acknowledged,
        muted=muted,
        recorded=record,
    )


@dataclass(frozen=True)
class IndexedStaleness:
    """The dbt test ``candle_staleness`` judged by index look-ups (:func:`staleness_by_index`).

    Attributes:
        test: the test as dbt would report it (its manifest node; status from the rows).
        rows: its failing rows, in the test's columns.
    """

    test: DbtTestResult
    rows: tuple[dict[str, Any], ...]

    def store(self, conn: Any) -> DbtBuildResult:
        """Write the rows into the test's store_failures table (as ``dbt test`` does), in the
        caller's transaction, and return a build result holding the test, for
        :func:`mdq.quality.persist_on`."""
        from psycopg import sql

        table = sql.Identifier(str(self.test.audit_schema), str(self.test.audit_table))
        conn.execute(sql.SQL("delete from {}").format(table))
        if self.rows:
            columns = list(self.rows[0])
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("insert into {} ({}) values ({})").format(
                        table,
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
                    ),
                    [tuple(row[c] for c in columns) for row in self.rows],
                )
        return DbtBuildResult(
            command="health: candle_staleness by index look-ups",
            success=self.test.status != "fail",
            tests=(self.test,),
            nodes=(),
            runner="mdq",
        )


def staleness_by_index(database: Database, schema: str, as_of: datetime) -> IndexedStaleness | None:
    """Judge the project's staleness check at ``as_of`` without dbt, by index look-ups.

    The health run's refresh (issue 15, P4): re-running the dbt staleness test read and
    sessionized every candle (26-29 s at 10M candles); this computes the same rows per series
    (:func:`mdq.db.health.series_staleness`: the last in-session candle by a backward index
    scan, the completed slots from dbt's session enumerations) and the test's thresholds
    (dbt vars ``mdq_stale_after_candles``, ``mdq_stale_error_after_candles``, resolved like the
    macro ``mdq_setting``: ``symbol:S:tf``, ``symbol:S:*``, ``class:tf``, ``class:*``, ``*:tf``,
    ``*:*``; the project's values in ``dbt_project.yml``, not a check run's ``--vars``).

    Returns:
        The test and its rows, or None when dbt must run instead: no earlier dbt run left the
        manifest, the staleness test (exactly one), its store_failures table and the relations
        it reads; or the trading sessions had to be extended (the enumerations are older).
    """
    from mdq.db.calendars import ensure_sessions

    node = _staleness_node()
    if node is None:
        return None
    # dbt's default schema naming: the run's schema, then "_" and the test's custom schema
    # ("+schema: audit" in dbt_project.yml); the manifest's own may be another run's schema
    custom = (node.get("config") or {}).get("schema")
    audit = (f"{schema}_{custom}" if custom else schema, str(node.get("alias") or node["name"]))
    project_vars = _project_vars()
    with connect(database, autocommit=True) as conn:
        if ensure_sessions(conn, today=as_of.date()):
            return None
        if not health_db.enumerations_cover(conn, schema, as_of):
            return None
        found = conn.execute("select to_regclass(%s)", (f'"{audit[0]}"."{audit[1]}"',)).fetchone()
        if found is None or found[0] is None:
            return None
        measured = health_db.series_staleness(
            conn,
            schema,
            as_of=as_of,
            default_calendars=dict(project_vars.get("calendar_by_asset_class") or {}),
        )
    stale_after = project_vars["mdq_stale_after_candles"]
    error_after = project_vars["mdq_stale_error_after_candles"]
    rows: list[dict[str, Any]] = []
    for symbol, asset_class, timeframe, calendar, last_ts, missed in measured:
        threshold = _setting(stale_after, symbol, asset_class, timeframe)
        if missed < threshold:
            continue
        severity = (
            "error" if missed >= _setting(error_after, symbol, asset_class, timeframe) else "warn"
        )
        rows.append(
            {
                "check_name": "candle_staleness",
                "anomaly_type": "stale",
                "severity": severity,
                "symbol": symbol,
                "asset_class": asset_class,
                "timeframe": timeframe,
                "ts_start": last_ts,
                "ts_end": as_of,
                "observed_value": float(missed),
                "expected_value": float(threshold),
                "failure_reason": (
                    f"no {timeframe} candle since {_minute(last_ts)}: {missed} completed "
                    f"candle(s) of calendar {calendar} missed by {_minute(as_of)} "
                    f"(threshold {threshold})"
                ),
                "calendar": calendar,
            }
        )
    status = "fail" if any(r["severity"] == "error" for r in rows) else "warn" if rows else "pass"
    config = node.get("config") or {}
    attached = node.get("attached_node")
    test = DbtTestResult(
        unique_id=str(node["unique_id"]),
        name=str(node["name"]),
        test_name="candle_staleness",
        status=status,  # type: ignore[arg-type]
        severity="warn" if str(config.get("severity", "error")).lower() == "warn" else "error",
        failures=len(rows),
        message=None,
        audit_schema=audit[0],
        audit_table=audit[1],
        model=str(attached).split(".")[-1] if attached else None,
        tags=tuple(node.get("tags") or ()),
    )
    return IndexedStaleness(test, tuple(rows))


def _staleness_node() -> dict[str, Any] | None:
    """The manifest node of the project's one ``candle_staleness`` test (None: no manifest,
    none or several)."""
    import json

    from mdq.dbt_runner import dbt_paths

    try:
        manifest = json.loads((dbt_paths().target_path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    nodes = [
        node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "test"
        and (node.get("test_metadata") or {}).get("name") == "candle_staleness"
    ]
    if len(nodes) != 1 or not (nodes[0].get("config") or {}).get("store_failures", True):
        return None
    return nodes[0]


def _project_vars() -> dict[str, Any]:
    """The vars of ``dbt_project.yml``."""
    import yaml

    from mdq.dbt_runner import DBT_PROJECT_DIR

    return dict(yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"])


def _setting(table: dict[str, Any], symbol: str, asset_class: str, timeframe: str) -> Any:
    """A threshold of a dbt var keyed like the macro ``mdq_setting`` (most specific key wins)."""
    for key in (
        f"symbol:{symbol}:{timeframe}",
        f"symbol:{symbol}:*",
        f"{asset_class}:{timeframe}",
        f"{asset_class}:*",
        f"*:{timeframe}",
        "*:*",
    ):
        if key in table:
            return table[key]
    raise KeyError(f"no '*:*' default in {table}")


def _minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
