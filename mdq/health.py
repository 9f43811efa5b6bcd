"""Health (every 6 hours): staleness per series, symbols failing their backfill, open
gaps and outliers → a row in ``health_snapshots`` and one alert per problem streak.

Staleness is judged by the project's calendar-aware staleness checks (dbt tests tagged
``staleness``), which the flow runs first unless told not to; the snapshot also keeps each
series' newest candle and its age at ``as_of`` for reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mdq.db import Database, connect
from mdq.db import health as health_db
from mdq.health_rules import FAILURE_THRESHOLD, Problem, find_problems, plan_alerts
from mdq.notify import Alert, Notifier


@dataclass(frozen=True)
class HealthSnapshot:
    """One health run.

    Attributes:
        snapshot_id: the row in health_snapshots.
        as_of: reference time (UTC).
        series_tracked: (symbol, timeframe) pairs seen.
        problems: every current problem, sorted by kind and subject.
        alerted: the problems alerted on in this run (new streaks only).
    """

    snapshot_id: int
    as_of: datetime
    series_tracked: int
    problems: tuple[Problem, ...]
    alerted: tuple[Problem, ...]

    def summary(self) -> str:
        """One human line."""
        if not self.problems:
            return (
                f"healthy: {self.series_tracked} series, no problem (snapshot {self.snapshot_id})"
            )
        return (
            f"{len(self.problems)} problem(s) over {self.series_tracked} series, "
            f"{len(self.alerted)} new alert(s) (snapshot {self.snapshot_id})"
        )


def run_health_check(
    database: Database,
    notifier: Notifier,
    *,
    as_of: datetime | None = None,
    failure_threshold: int = FAILURE_THRESHOLD,
    refresh_staleness: bool = False,
    schema: str = "mdq",
) -> HealthSnapshot:
    """Take a health snapshot and alert on problems that start a streak.

    Args:
        database: the project's database.
        notifier: where alerts go.
        as_of: reference time (UTC-aware; default now).
        failure_threshold: consecutive backfill failures that make a problem (default 3).
        refresh_staleness: run the dbt checks tagged ``staleness`` first (at ``as_of``).
        schema: dbt schema, for the refresh.

    Returns:
        The snapshot.

    Raises:
        ValueError: naive ``as_of`` or a threshold < 1.
        DbtRunError: the staleness refresh could not run.
    """
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got naive {as_of.isoformat()}")
    now = datetime.now(UTC)
    as_of = (as_of or now).astimezone(UTC)
    if refresh_staleness:
        from mdq.quality import run_quality_checks

        run_quality_checks(database, schema, as_of=as_of, select=["+tag:staleness"])
    with connect(database) as conn:
        series = health_db.read_series(conn)
        failures = health_db.read_failures(conn)
        problems = find_problems(series, failures, failure_threshold=failure_threshold)
        with conn.transaction():
            plan = plan_alerts(problems, health_db.lock_streaks(conn))
            health_db.record_streaks(conn, plan, now)
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
                    "problems": [
                        {
                            "kind": p.kind,
                            "subject": p.subject,
                            "severity": p.severity,
                            "message": p.message,
                        }
                        for p in problems
                    ],
                    "series": [
                        {
                            "symbol": s.symbol,
                            "timeframe": s.timeframe,
                            "last_ts": s.last_ts.isoformat() if s.last_ts else None,
                            "age_seconds": (as_of - s.last_ts).total_seconds()
                            if s.last_ts
                            else None,
                            "is_stale": bool(s.open_stale),
                            "open_gaps": s.open_gaps,
                            "open_outliers": s.open_outliers,
                        }
                        for s in series
                    ],
                },
            )
    for problem in plan.start:
        notifier.send(
            Alert(
                kind=problem.kind,
                subject=problem.subject,
                message=problem.message,
                details={"severity": problem.severity, "snapshot_id": snapshot_id},
            )
        )
    return HealthSnapshot(snapshot_id, as_of, len(series), tuple(problems), plan.start)
