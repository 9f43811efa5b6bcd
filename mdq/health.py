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

from mdq.db import Database, connect
from mdq.db import health as health_db
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
    if refresh_staleness:
        from mdq.db.locks import SCHEDULED_WAIT_SECONDS, check_lock
        from mdq.quality import build_checks

        # dbt's staleness models and data_anomalies are the checks': one at a time
        locked.enter_context(check_lock(database, wait_seconds=SCHEDULED_WAIT_SECONDS))
        result = build_checks(
            database, schema, as_of=given_as_of, select=["+tag:staleness"], today=as_of.date()
        )
    with locked, connect(database) as conn, conn.transaction(force_rollback=not record):
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
