"""The Prefect flows ``quality-checks`` and ``detect-data-anomalies``: thin wrappers over
:mod:`mdq.quality` (dbt build → ``data_anomalies``).

A flow ends **Failed** when an error-severity anomaly of the tests it ran is open (or when a
model or a check could not run), **Completed** otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task
from prefect.states import Completed, Failed, State

from mdq import dbt_runner as dbt
from mdq.config import load_settings
from mdq.db import Database, open_database
from mdq.db.locks import SCHEDULED_WAIT_SECONDS, check_lock
from mdq.quality import QualityReport, check_selection, persist_build_result


@task(name="persist-anomalies")
def persist_task(
    database: Database,
    result: dbt.DbtBuildResult,
    full_run: bool,
    seen_at: datetime,
    as_of: datetime | None,
    record: bool | None = None,
) -> QualityReport:
    """Task wrapper of :func:`persist_build_result` (database I/O)."""
    return persist_build_result(
        database, result, full_run=full_run, seen_at=seen_at, as_of=as_of, record=record
    )


@flow(name="quality-checks", log_prints=True)
def quality_checks(
    as_of: datetime | None = None, select: list[str] | None = None, record: bool | None = None
) -> State[QualityReport]:
    """Run every dbt check (or a selection) and record the findings in ``data_anomalies``.

    Reads the settings (``MDQ_*``) for the database and dbt schema.

    Args:
        as_of: reference time for "now"-dependent checks (UTC-aware); None: now.
        select: dbt selection (None: the whole project).
        record: write the findings; None (default): only a live run (no ``as_of``) does,
            a run with ``as_of`` is a what-if that leaves ``data_anomalies`` untouched.

    Returns:
        Completed with the report, or Failed (with the report) when error-severity
        anomalies are open or something could not run.
    """
    return _run_in_flow(as_of, select, record)


def _run_in_flow(
    as_of: datetime | None, select: list[str] | None, record: bool | None = None
) -> State[QualityReport]:
    settings = load_settings()
    seen_at = datetime.now(UTC)
    with (
        open_database(settings) as database,
        check_lock(database, wait_seconds=SCHEDULED_WAIT_SECONDS),
    ):
        result = dbt.build(
            database,
            settings.dbt_schema,
            select=select,
            dbt_vars={"as_of": as_of.astimezone(UTC).isoformat()} if as_of else None,
            indirect_selection="empty" if select is not None else None,
        )
        report = persist_task(database, result, select is None, seen_at, as_of, record)
    return final_state(report)


def final_state(report: QualityReport) -> State[QualityReport]:
    """Completed when no error anomaly is open and everything ran; Failed otherwise."""
    print(report.summary())
    if report.verdict == "ok":
        return Completed(message=report.summary(), data=report)
    return Failed(message=report.summary(), data=report)


@flow(name="detect-data-anomalies")
def detect_data_anomalies(
    check_gaps: bool = True,
    check_outliers: bool = True,
    check_staleness: bool = True,
    as_of: datetime | None = None,
) -> State[QualityReport]:
    """The seed's entry point: run the chosen check families and record their findings.

    All three flags set runs the whole project (see :func:`check_selection`).

    Args:
        check_gaps: run the tests tagged ``gaps``.
        check_outliers: run the tests tagged ``outliers``.
        check_staleness: run the tests tagged ``staleness``.
        as_of: reference time (UTC-aware); None: now.

    Returns:
        As :func:`quality_checks`.
    """
    return _run_in_flow(as_of, check_selection(check_gaps, check_outliers, check_staleness))
