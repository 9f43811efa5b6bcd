"""The Prefect flow ``health``: a thin wrapper over :func:`mdq.health.run_health_check`
(a row in ``health_snapshots`` and one alert per problem streak).

Runs are named ``health <scheduled start>``; each publishes its snapshot as the markdown
artifact ``mdq-health-snapshot``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from mdq.config import load_settings
from mdq.db import Database
from mdq.db.migrate import open_migrated_database
from mdq.health import HealthSnapshot, run_health_check
from mdq.health_rules import FAILURE_THRESHOLD
from mdq.notify import LogNotifier
from mdq.reports import ARTIFACT_KEYS, health_markdown, run_name


@task(name="health-snapshot")
def health_task(
    database: Database,
    as_of: datetime | None,
    failure_threshold: int,
    refresh: bool,
    schema: str,
    min_severity: str = "error",
    record: bool | None = None,
) -> HealthSnapshot:
    """Task wrapper of :func:`run_health_check` with the default notifier (database I/O)."""
    return run_health_check(
        database,
        LogNotifier(),
        as_of=as_of,
        failure_threshold=failure_threshold,
        refresh_staleness=refresh,
        schema=schema,
        min_severity=min_severity,
        record=record,
    )


def _name() -> str:
    from prefect.runtime import flow_run

    return run_name("health", flow_run.scheduled_start_time or datetime.now(UTC))


@flow(name="health", flow_run_name=_name, log_prints=True)
def health_check(
    as_of: datetime | None = None,
    failure_threshold: int = FAILURE_THRESHOLD,
    refresh_staleness: bool = True,
    min_severity: str | None = None,
    record: bool | None = None,
) -> HealthSnapshot:
    """Health of the market data: a snapshot, and one alert per problem streak.

    Reads the settings (``MDQ_*``) for the database. Ends Completed whatever it finds (the
    alerts and the snapshot carry the findings); Failed only when it could not run.

    Args:
        as_of: reference time (UTC-aware; default now).
        failure_threshold: consecutive backfill failures that make a problem.
        refresh_staleness: run the staleness checks first.
        min_severity: least severe problem that alerts (default ``MDQ_ALERT_MIN_SEVERITY``,
            ``error``).
        record: write the snapshot and send alerts; None: only a live run (no ``as_of``).
    """
    settings = load_settings()
    with open_migrated_database(settings) as database:
        snapshot = health_task(
            database,
            as_of,
            failure_threshold,
            refresh_staleness,
            settings.dbt_schema,
            min_severity or settings.alert_min_severity,
            record,
        )
    print(snapshot.summary())
    create_markdown_artifact(
        key=ARTIFACT_KEYS["health"],
        markdown=health_markdown(snapshot),
        description=f"Health snapshot {snapshot.snapshot_id}.",
    )
    return snapshot
