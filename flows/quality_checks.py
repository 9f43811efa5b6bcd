"""The Prefect flows ``quality-checks`` and ``detect-data-anomalies``: thin wrappers over
:mod:`mdq.quality` (dbt build → ``data_anomalies``).

A flow ends **Failed** when an error-severity anomaly of the tests it ran is open (or when a
model or a check could not run), **Completed** otherwise. Runs are named
``quality-checks <scheduled start>``; each publishes the artifacts ``mdq-open-anomalies`` (open
anomalies by symbol, type and severity, with what this run opened and resolved) and
``mdq-worst-findings`` (a markdown summary of the worst open findings, with the path of the
HTML quality report that a recorded run rewrites: settings ``MDQ_REPORT_DIR``,
``MDQ_REPORT_AFTER_CHECKS``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed, State

from mdq import dbt_runner as dbt
from mdq.config import load_settings
from mdq.db import Database, connect
from mdq.db import anomalies as anomalies_db
from mdq.db.anomalies import StoredAnomaly
from mdq.db.check_scope import CheckScope, Shard, shard_schema
from mdq.db.locks import SCHEDULED_WAIT_SECONDS, check_lock
from mdq.db.migrate import open_migrated_database
from mdq.quality import (
    QualityReport,
    as_of_text,
    begin_scope,
    check_selection,
    end_scope,
    persist_build_result,
    refresh_sessions,
)
from mdq.report import write_report
from mdq.reports import ARTIFACT_KEYS, anomaly_rows, quality_markdown, run_name


@task(name="persist-anomalies")
def persist_task(
    database: Database,
    result: dbt.DbtBuildResult,
    full_run: bool,
    seen_at: datetime,
    as_of: datetime | None,
    record: bool | None = None,
    symbols: list[str] | None = None,
    scope: CheckScope | None = None,
) -> QualityReport:
    """Task wrapper of :func:`persist_build_result` (database I/O)."""
    return persist_build_result(
        database,
        result,
        full_run=full_run,
        seen_at=seen_at,
        as_of=as_of,
        record=record,
        symbols=symbols,
        scope=scope,
    )


@task(name="read-anomalies")
def read_anomalies_task(database: Database, seen_at: datetime) -> list[StoredAnomaly]:
    """The open anomalies and those resolved by the run of ``seen_at`` (database I/O)."""
    with connect(database) as conn:
        return anomalies_db.list_open_and_resolved_since(conn, seen_at)


def _name(kind: str) -> Any:
    def name() -> str:
        from prefect.runtime import flow_run

        return run_name(kind, flow_run.scheduled_start_time or datetime.now(UTC))

    return name


@flow(name="quality-checks", flow_run_name=_name("quality-checks"), log_prints=True)
def quality_checks(
    as_of: datetime | None = None,
    select: list[str] | None = None,
    record: bool | None = None,
    symbols: list[str] | None = None,
    dbt_vars: dict[str, Any] | None = None,
    full: bool = False,
    shard: str | None = None,
) -> State[QualityReport]:
    """Run every dbt check (or a selection) and record the findings in ``data_anomalies``.

    Reads the settings (``MDQ_*``) for the database and dbt schema.

    Args:
        as_of: reference time for "now"-dependent checks (UTC-aware); None: now.
        select: dbt selection (None: the whole project).
        record: write the findings; None (default): only a live run (no ``as_of``) does,
            a run with ``as_of`` is a what-if that leaves ``data_anomalies`` untouched.
        symbols: check only these symbols (``mdq check --symbols``); None: all.
        dbt_vars: dbt ``--vars`` (``mdq check --vars``).
        full: re-read every candle and rebuild the incremental models from scratch (the
            weekly ``full-weekly`` deployment, ``mdq check --full``); by default a live run
            re-reads only what changed since the last successful run (:mod:`mdq.quality`).
        shard: ``i/n``: check only the symbols of that shard (``mdq check --shard``), in
            its own dbt schema; the other shards of ``n`` may run at the same time (one
            deployment per shard: :func:`mdq.deployments.build_deployments`).

    Returns:
        Completed with the report, or Failed (with the report) when error-severity
        anomalies are open or something could not run.

    Raises:
        ValueError: ``shard`` is not ``i/n`` with 1 <= i <= n.
    """
    return _run_in_flow(
        as_of, select, record, symbols, dbt_vars, full, Shard.parse(shard) if shard else None
    )


def _run_in_flow(
    as_of: datetime | None,
    select: list[str] | None,
    record: bool | None = None,
    symbols: list[str] | None = None,
    dbt_vars: dict[str, Any] | None = None,
    full: bool = False,
    shard: Shard | None = None,
) -> State[QualityReport]:
    settings = load_settings()
    seen_at = datetime.now(UTC)
    with (
        open_migrated_database(settings) as database,
        check_lock(database, wait_seconds=SCHEDULED_WAIT_SECONDS, shard=shard),
    ):
        scope = begin_scope(database, full=full or as_of is not None, shard=shard, symbols=symbols)
        get_run_logger().info("checks re-read: %s", scope.describe())
        try:
            # the sessions the calendar checks expect, as mdq check's direct path does
            refresh_sessions(database, today=(as_of or seen_at).astimezone(UTC).date())
            result = dbt.build(
                database,
                shard_schema(settings.dbt_schema, shard),
                select=select,
                as_of=as_of_text(as_of),
                symbols=symbols,
                dbt_vars=dbt_vars,
                indirect_selection="empty" if select is not None else None,
                scope_id=scope.scope_id,
                shard=shard.label if shard else None,
                full_refresh=full,
            )
            full_run = select is None and symbols is None
            report = persist_task(
                database, result, full_run, seen_at, as_of, record, symbols, scope
            )
        finally:
            end_scope(database, scope)
        touched = read_anomalies_task(database, seen_at)
        html_report = None
        if report.recorded and settings.report_after_checks:
            html_report = html_report_task(database, settings.report_folder)
    publish(report, touched, html_report)
    return final_state(report)


@task(name="write-html-report")
def html_report_task(database: Database, folder: Path) -> str:
    """Rewrite the HTML quality report (:func:`mdq.report.write_report`); returns the
    artifact's line about it. A report that cannot be written is said there and logged; it
    does not change the run's verdict, which is the checks'."""
    logger = get_run_logger()
    try:
        summary = write_report(database, folder)
    except OSError as exc:
        logger.warning("HTML quality report not written to %s: %s", folder, exc)
        return f"HTML quality report **not written** to `{folder}`: {exc}"
    index = summary.index.resolve()
    logger.info("HTML quality report: %s", index.as_uri())
    return f"HTML quality report: [{index}]({index.as_uri()}) (open it, or `mdq report --serve`)"


def publish(
    report: QualityReport, anomalies: list[StoredAnomaly], html_report: str | None = None
) -> None:
    """Publish the run's two artifacts (stable keys: the UI shows their history)."""
    create_table_artifact(
        key=ARTIFACT_KEYS["anomalies"],
        table=anomaly_rows(anomalies, report.seen_at),
        description=(
            f"Open anomalies by symbol, type and severity: {report.open_errors} error, "
            f"{report.open_warnings} warn open; this run: {report.inserted} new, "
            f"{report.resolved} resolved."
        ),
    )
    create_markdown_artifact(
        key=ARTIFACT_KEYS["findings"],
        markdown=quality_markdown(report, anomalies, html_report=html_report),
        description="The worst open findings after this quality run.",
    )


def final_state(report: QualityReport) -> State[QualityReport]:
    """Completed when no error anomaly is open and everything ran; Failed otherwise."""
    print(report.summary())
    if report.verdict == "ok":
        return Completed(message=report.summary(), data=report)
    return Failed(message=report.summary(), data=report)


@flow(name="detect-data-anomalies", flow_run_name=_name("detect-data-anomalies"))
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
