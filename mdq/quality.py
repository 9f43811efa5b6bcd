"""Quality checks: ``dbt build`` → every warning/failing test into ``data_anomalies``.

The flow ends **Failed** when an error-severity anomaly of the tests it ran is open and neither
acknowledged nor muted (or when a model or a check could not run), **Completed** otherwise.

**Live or what-if.** A run without ``as_of`` is the live one and records its findings. A run
with ``as_of`` is a what-if: it writes its findings in a transaction that is rolled back, so its
report (counts and ``findings``) says what it found and what it would change while
``data_anomalies`` and the acknowledgements stay exactly as they were; ``record=True`` records
it, but never behind the latest recorded run (:class:`~mdq.exceptions.RecordBackwards`): the
recorded state only moves forward in time. :func:`run_quality_checks` is the same
work as a plain function (the CLI uses it when no Prefect API is around);
:func:`detect_data_anomalies` is the seed's entry point, selecting check families by dbt tag.

**Incremental by default.** A live run (no ``as_of``) re-reads only the series whose candles
were inserted, updated or deleted since the last successful run of the whole project (the
change log of migration 130, :mod:`mdq.db.check_scope`): the calendar checks (gaps,
duplicates, misalignment, out-of-session) and the price checks (outliers, wicks, splits, unit
changes, fillers, OHLC integrity: :data:`SCOPED_CHECKS`) read those series from a few candles
before the first change, and only their findings inside that range can be resolved; staleness
reads the last in-session candle of every series by index;
``full=True`` (``mdq check --full``, which also rebuilds the incremental models from scratch:
dbt ``--full-refresh``), a run with ``as_of``, the first run and a run without
the change log re-read everything. ``shard`` (``mdq check --shard i/n``) keeps only the
findings of the symbols whose hash falls in the shard, and resolves only those.

Check families are dbt tags on the tests: ``gaps``, ``outliers``, ``staleness`` (see
:data:`CHECK_FAMILY_TAGS`); a check that belongs to a family must carry its tag in YAML.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from mdq import dbt_runner as dbt
from mdq.anomalies import (
    SAMPLE_SIZE,
    AnomalyRecord,
    anomalies_from_rows,
    row_shape,
    unique_by_fingerprint,
)
from mdq.db import Database, connect
from mdq.db import anomalies as anomalies_db
from mdq.db import check_scope as scope_db
from mdq.db.anomalies import StoredAnomaly
from mdq.db.check_scope import CheckScope, Shard
from mdq.exceptions import RecordBackwards

logger = logging.getLogger(__name__)

#: The seed's check families → the dbt tag their tests carry.
CHECK_FAMILY_TAGS: dict[str, str] = {
    "check_gaps": "gaps",
    "check_outliers": "outliers",
    "check_staleness": "staleness",
}

#: The generic tests that read only an incremental run's scope: the calendar checks (macro
#: ``mdq_sessionized_candles`` with its look-back applied), the price checks (macros
#: ``price_check_ctes`` and ``mdq_check_scope_findings``) and ``ohlc_integrity``
#: (``mdq_check_scope_rows``). Their findings are resolved only inside what the run re-read.
#: The others judge every series each run: ``candle_staleness`` (the last in-session candle of
#: every series by index on an incremental run), ``future_candles`` (candles after as_of only),
#: the dbt schema tests.
SCOPED_CHECKS = frozenset(
    {
        "candle_gaps",
        "duplicate_candles",
        "misaligned_candles",
        "out_of_session_candles",
        "price_outliers",
        "wick_outliers",
        "split_suspects",
        "unit_changes",
        "flat_filler_candles",
        "ohlc_integrity",
    }
)

#: At most this many failing rows are read per test; a test with more is not resolved by
#: absence in that run (its unread findings would otherwise be wrongly closed).
MAX_ROWS_PER_TEST = 200_000


@dataclass(frozen=True)
class QualityReport:
    """The outcome of one quality run.

    Attributes:
        as_of: the reference time given to dbt (None: dbt's default, now).
        seen_at: the run's time, written to last_seen_at / resolved_at (UTC).
        runner: ``prefect-dbt`` or ``dbt``.
        tests_run: data tests that ran to a verdict.
        tests_failed: tests with status warn or fail.
        inserted: new anomalies.
        updated: anomalies seen again.
        reopened: anomalies that had been resolved and came back.
        resolved: anomalies no longer found.
        open_errors: open error-severity anomalies of the tests that ran, neither
            acknowledged nor muted.
        open_warnings: the same for warn severity.
        broken: one line per model, unit test or check that could not run.
        acknowledged: open anomalies of the tests that ran that are acknowledged.
        muted: open anomalies of the tests that ran that a mute rule covers.
        acks_ended: acknowledgements ended because their anomaly changed or resolved.
        recorded: False for a what-if run: nothing above was written.
        findings: for a what-if run, every finding it reported (with its effective status;
            an ``anomaly_id`` of a finding new to the table is not stored anywhere).
        scope: what the run re-read (:meth:`mdq.db.check_scope.CheckScope.describe`).
    """

    as_of: datetime | None
    seen_at: datetime
    runner: str
    tests_run: int
    tests_failed: int
    inserted: int
    updated: int
    reopened: int
    resolved: int
    open_errors: int
    open_warnings: int
    broken: tuple[str, ...]
    acknowledged: int = 0
    muted: int = 0
    acks_ended: int = 0
    recorded: bool = True
    findings: tuple[StoredAnomaly, ...] = ()
    scope: str = "full"

    @property
    def verdict(self) -> Literal["ok", "anomalies", "broken"]:
        """``broken`` if something could not run, else ``anomalies`` if errors are open."""
        if self.broken:
            return "broken"
        return "anomalies" if self.open_errors else "ok"

    def summary(self) -> str:
        """One human line."""
        text = "" if self.recorded else "what-if, nothing recorded: "
        text += f"[{self.scope}] "
        text += (
            f"{self.tests_run} checks ran ({self.tests_failed} reported findings); anomalies: "
            f"{self.inserted} new, {self.updated} seen again ({self.reopened} reopened), "
            f"{self.resolved} resolved; open: {self.open_errors} error, "
            f"{self.open_warnings} warn"
        )
        if self.acknowledged or self.muted:
            text += f" (besides {self.acknowledged} acknowledged, {self.muted} muted)"
        if self.acks_ended:
            text += f"; {self.acks_ended} acknowledgement(s) ended: the finding changed"
        if self.broken:
            text += f"; {len(self.broken)} could not run: " + "; ".join(self.broken[:5])
        return text


def check_selection(
    check_gaps: bool = True, check_outliers: bool = True, check_staleness: bool = True
) -> list[str] | None:
    """The dbt ``--select`` for the seed's flags.

    Returns:
        None (the whole project: every check, also duplicates, integrity and any analyst's
        test) when all three flags are set; otherwise ``+tag:<family>`` for each chosen family
        (the tagged tests and the models they need), or ``[]`` when none is chosen.
    """
    flags = {"check_gaps": check_gaps, "check_outliers": check_outliers}
    flags["check_staleness"] = check_staleness
    if all(flags.values()):
        return None
    return [f"+tag:{CHECK_FAMILY_TAGS[name]}" for name, on in flags.items() if on]


def run_quality_checks(
    database: Database,
    schema: str,
    *,
    as_of: datetime | None = None,
    select: Sequence[str] | None = None,
    project_dir: Path | None = None,
    use_prefect: bool | None = None,
    seen_at: datetime | None = None,
    record: bool | None = None,
    wait_seconds: float = 0.0,
    dbt_vars: Mapping[str, Any] | None = None,
    symbols: Sequence[str] | None = None,
    full: bool = False,
    shard: Shard | None = None,
) -> QualityReport:
    """Run dbt, persist every warning/failing test as anomalies (live runs), and report.

    One run at a time per database, except shards of one count, which run in parallel, each
    in its own dbt schema (:func:`mdq.db.locks.check_lock`,
    :func:`mdq.db.check_scope.shard_schema`).

    Args:
        database: the project's database.
        schema: dbt's schema (audit tables in ``<schema>_audit``); a shard builds in
            ``<schema>_shard_<i>_of_<n>``.
        as_of: reference time for "now"-dependent checks (UTC-aware); None: now.
        select: dbt selection; None runs the whole project, and then also resolves open
            anomalies of tests that no longer exist. With a selection only the selected tests
            run (``--indirect-selection empty``), plus the models they need when the selectors
            ask for them (``+tag:gaps``).
        project_dir: another dbt project (tests); default the repository's.
        use_prefect: force or forbid prefect-dbt (None: when a Prefect API is reachable).
        seen_at: the run's time (default now, UTC).
        record: write the findings to ``data_anomalies``; None (default): only a live run
            (no ``as_of``) does, a run with ``as_of`` is a what-if (module docstring).
        wait_seconds: how long to wait for another run holding the check lock (0: fail at
            once).
        dbt_vars: dbt ``--vars`` (e.g. ``{"mdq_outlier_z": {"*:*": 12}}``); a change of
            vars makes dbt re-parse the whole project, so per-run values (as_of) never go
            here.
        symbols: check only these symbols: the checks keep only their rows (dbt's verdict
            too), only their anomalies are recorded, resolved and counted; None: all.
        full: re-read every candle and rebuild the incremental models from scratch (``mdq
            check --full``); otherwise a live run re-reads only what changed since the last
            successful run (module docstring).
        shard: check only this shard's symbols (``mdq check --shard i/n``): its findings are
            recorded, resolved and counted, the other shards' are left alone; other shards of
            the same count may run at the same time.

    Returns:
        The report; ``verdict`` says ok / anomalies / broken.

    Raises:
        CheckAlreadyRunning: another run held the check lock for ``wait_seconds``.
        DbtRunError: dbt could not run at all.
        DatabaseUnreachable: PostgreSQL is down.
        RecordBackwards: ``record`` with an ``as_of`` before the latest recorded run's.
        ValueError: a naive ``as_of``.
    """
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got naive {as_of.isoformat()}")
    seen_at = seen_at or datetime.now(UTC)
    record = as_of is None if record is None else record
    if record and as_of is not None:
        with connect(database) as conn:
            ensure_forward(conn, as_of)
    from mdq.db.locks import check_lock

    with check_lock(database, wait_seconds=wait_seconds, shard=shard):
        scope = begin_scope(database, full=full or as_of is not None, shard=shard, symbols=symbols)
        try:
            result = build_checks(
                database,
                scope_db.shard_schema(schema, shard),
                as_of=as_of,
                select=select,
                project_dir=project_dir,
                use_prefect=use_prefect,
                today=(as_of or seen_at).astimezone(UTC).date(),
                dbt_vars=dbt_vars,
                symbols=symbols,
                scope=scope,
                full_refresh=full,
            )
            return persist_build_result(
                database,
                result,
                full_run=select is None and symbols is None,
                seen_at=seen_at,
                as_of=as_of,
                record=record,
                symbols=symbols,
                scope=scope,
            )
        finally:
            end_scope(database, scope)


def begin_scope(
    database: Database,
    *,
    full: bool,
    shard: Shard | None = None,
    symbols: Sequence[str] | None = None,
) -> CheckScope:
    """Decide what a run re-reads and, for an incremental one, write its ``check_scopes``.

    Call it under the check lock, before dbt reads anything; pair it with :func:`end_scope`.

    Args:
        database: the project's database.
        full: re-read everything (``--full``, a run with ``as_of``).
        shard: the shard the run checks (its scope holds only the shard's symbols).
        symbols: the symbols the run checks (None: all).

    Returns:
        The scope: incremental when not ``full``, the change log is installed and a
        successful run of the whole project (or of this shard) recorded where it read up to;
        full otherwise, with the reason.
    """
    with connect(database, autocommit=True) as conn:
        if not scope_db.change_log_ready(conn):
            logger.warning("market_data has no change-log triggers: the check re-reads all")
            return CheckScope("full", None, None, shard=shard, reason="no change log")
        xmin = scope_db.current_xmin(conn)
        if full:
            return CheckScope("full", None, xmin, shard=shard)
        since = scope_db.last_watermark(conn, shard)
        if since is None:
            return CheckScope("full", None, xmin, shard=shard, reason="no earlier run")
        scope_id, series = scope_db.write_scope(
            conn, since_xmin=since, shard=shard, symbols=symbols
        )
    return CheckScope("incremental", scope_id, xmin, since, series, shard)


def end_scope(database: Database, scope: CheckScope) -> None:
    """Delete an incremental run's ``check_scopes`` rows (a no-op for a full run)."""
    if scope.scope_id is None:
        return
    with connect(database, autocommit=True) as conn:
        scope_db.drop_scope(conn, scope.scope_id)


def build_checks(
    database: Database,
    schema: str,
    *,
    as_of: datetime | None,
    select: Sequence[str] | None,
    today: date,
    project_dir: Path | None = None,
    use_prefect: bool | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    symbols: Sequence[str] | None = None,
    scope: CheckScope | None = None,
    full_refresh: bool = False,
) -> dbt.DbtBuildResult:
    """Refresh the trading sessions, then ``dbt build`` the checks (nothing is persisted).

    Args:
        database: the project's database.
        schema: dbt's schema.
        as_of: reference time given to dbt (None: dbt's default, now).
        select: dbt selection (None: the whole project).
        today: the current UTC date, for the sessions' range.
        project_dir: another dbt project (tests).
        use_prefect: force or forbid prefect-dbt.
        dbt_vars: dbt ``--vars`` (a change makes dbt re-parse the project).
        symbols: keep only these symbols' rows of the checks (None: all).
        scope: what the run re-reads and its shard (:func:`begin_scope`; None: everything).
        full_refresh: rebuild the incremental models from scratch (``mdq check --full``).

    Raises:
        DbtRunError: dbt could not run at all.
        UnknownCalendar: an instrument names a calendar the project cannot build.
    """
    refresh_sessions(database, today=today)
    return dbt.build(
        database,
        schema,
        select=select,
        dbt_vars=dbt_vars,
        as_of=as_of_text(as_of),
        symbols=symbols,
        indirect_selection="empty" if select is not None else None,
        project_dir=project_dir,
        use_prefect=use_prefect,
        scope_id=scope.scope_id if scope else None,
        shard=scope.shard.label if scope and scope.shard else None,
        full_refresh=full_refresh,
    )


def as_of_text(as_of: datetime | None) -> str | None:
    """``as_of`` as dbt receives it: ISO 8601 in UTC (``2024-06-01T00:00:00+00:00``), or None.

    Raises:
        ValueError: a naive datetime.
    """
    if as_of is None:
        return None
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got naive {as_of.isoformat()}")
    return as_of.astimezone(UTC).isoformat()


def ensure_forward(conn: Any, as_of: datetime) -> None:
    """Refuse to record a run judged at an instant before the latest recorded run's.

    Args:
        conn: an open connection.
        as_of: the run's reference time (UTC-aware).

    Raises:
        RecordBackwards: a recorded run is as of a later instant.
    """
    latest = anomalies_db.latest_recorded_as_of(conn)
    if latest is not None and as_of < latest:
        raise RecordBackwards(as_of.isoformat(), latest.isoformat())


def refresh_sessions(database: Database, *, today: date) -> None:
    """Make ``trading_sessions`` cover every calendar in use over the data's range and today.

    The gap and staleness checks only expect candles inside refreshed sessions, so this runs
    before every dbt build. Only what is missing is written
    (:func:`mdq.db.calendars.ensure_sessions`): a repeat check builds no calendar.

    Args:
        database: the project's database.
        today: the current UTC date (the range reaches ``today`` plus a margin).

    Raises:
        UnknownCalendar: an instrument names a calendar the project cannot build.
    """
    from mdq.db.calendars import ensure_sessions

    with connect(database, autocommit=True) as conn:
        ensure_sessions(conn, today=today)


def persist_build_result(
    database: Database,
    result: dbt.DbtBuildResult,
    *,
    full_run: bool,
    seen_at: datetime,
    as_of: datetime | None = None,
    record: bool | None = None,
    symbols: Sequence[str] | None = None,
    scope: CheckScope | None = None,
) -> QualityReport:
    """Read the failing rows of ``result``'s tests and persist them (see module docstring).

    Args:
        database: the project's database.
        result: a parsed ``dbt build``.
        full_run: the whole project ran (anomalies of tests that no longer exist get resolved).
        seen_at: the run's time.
        as_of: the reference time given to dbt, for the report.
        record: write them; False (what-if) rolls everything back and returns the findings
            in the report; None: record only when ``as_of`` is None.
        symbols: the run was restricted to these symbols: findings of other symbols are
            dropped (an analyst's test that ignores the restriction may report them) and only
            these symbols' anomalies are resolved and counted; None: all.
        scope: what the run re-read (:func:`begin_scope`): an incremental run resolves the
            calendar checks' findings only inside it, a shard only its own findings, and a
            successful run of the whole project records where the next incremental run
            starts; None: a full run of every shard.

    Raises:
        RecordBackwards: ``record`` with an ``as_of`` before the latest recorded run's.
    """
    record = as_of is None if record is None else record
    with connect(database) as conn, conn.transaction(force_rollback=not record):
        return persist_on(
            conn,
            result,
            full_run=full_run,
            seen_at=seen_at,
            as_of=as_of,
            record=record,
            symbols=symbols,
            scope=scope,
        )


def persist_on(
    conn: Any,
    result: dbt.DbtBuildResult,
    *,
    full_run: bool,
    seen_at: datetime,
    as_of: datetime | None,
    record: bool,
    symbols: Sequence[str] | None = None,
    scope: CheckScope | None = None,
) -> QualityReport:
    """:func:`persist_build_result` on a connection whose transaction the caller owns (and
    rolls back for a what-if: ``record`` False only lists the findings in the report).

    ``symbols``, ``scope``: as :func:`persist_build_result`.

    Raises:
        RecordBackwards: ``record`` with an ``as_of`` before the latest recorded run's.
    """
    records: list[AnomalyRecord] = []
    complete: list[str] = []
    findings: list[StoredAnomaly] = []
    shard = scope.shard if scope else None
    if record and as_of is not None:
        ensure_forward(conn, as_of)
    for test in result.tests:
        if not test.ran:
            continue
        if not test.found_something:
            complete.append(test.unique_id)
            continue
        rows, whole = _failing_rows(conn, test)
        records += [
            found
            for found in anomalies_from_rows(test, rows)
            if (symbols is None or found.symbol is None or found.symbol in symbols)
            and (shard is None or shard.owns(found.symbol))
        ]
        if whole:
            complete.append(test.unique_id)
    counts = anomalies_db.persist_findings(
        conn,
        unique_by_fingerprint(records),
        completed_test_ids=complete,
        seen_at=seen_at,
        retire_unknown_except=[t.unique_id for t in result.tests] if full_run else None,
        symbols=symbols,
        shard=shard,
        scope_id=scope.scope_id if scope and scope.incremental else None,
        scoped_test_ids=[t.unique_id for t in result.tests if t.test_name in SCOPED_CHECKS],
    )
    open_ = anomalies_db.open_counts(
        conn, [t.unique_id for t in result.tests if t.ran], symbols=symbols, shard=shard
    )
    broken = [f"{n.resource_type} {n.name}: {n.message or n.status}" for n in result.failed_nodes]
    broken += [f"test {t.name}: {t.message or 'error'}" for t in result.errored_tests]
    if record and any(t.ran for t in result.tests):  # a run that judged nothing moves nothing
        # the next incremental run starts where a successful run of the whole project (or of
        # a shard, for that shard) read the change log
        starts_next = full_run and not broken and as_of is None
        anomalies_db.record_run(
            conn,
            seen_at=seen_at,
            as_of=as_of,
            full_run=full_run,
            changes_xmin=scope.changes_xmin if scope and starts_next else None,
            scope=scope.mode if scope else "full",
            shard=shard,
        )
        if starts_next and scope is not None and scope.changes_xmin is not None:
            scope_db.prune_changes(conn)
    else:
        findings = anomalies_db.list_anomalies(conn, "all", seen_at=seen_at)
    return QualityReport(
        as_of=as_of,
        seen_at=seen_at,
        runner=result.runner,
        tests_run=sum(1 for t in result.tests if t.ran),
        tests_failed=sum(1 for t in result.tests if t.found_something),
        inserted=counts.inserted,
        updated=counts.updated,
        reopened=counts.reopened,
        resolved=counts.resolved,
        open_errors=open_["error"],
        open_warnings=open_["warn"],
        broken=tuple(broken),
        acknowledged=open_["acknowledged"],
        muted=open_["muted"],
        acks_ended=counts.acks_ended,
        recorded=record,
        findings=tuple(findings),
        scope=scope.describe() if scope else "full",
    )


def _failing_rows(conn: Any, test: dbt.DbtTestResult) -> tuple[list[dict[str, Any]], bool]:
    """A test's failing rows: all of them for row-per-finding shapes, a sample otherwise.

    Returns:
        (rows, whole): ``whole`` is False when rows were cut at :data:`MAX_ROWS_PER_TEST`.
    """
    if not (test.audit_schema and test.audit_table):
        return [], True
    sample = anomalies_db.read_failing_rows(
        conn, test.audit_schema, test.audit_table, limit=SAMPLE_SIZE
    )
    if not sample or row_shape(sample[0].keys()) == "other" or len(sample) < SAMPLE_SIZE:
        return sample, True
    rows = anomalies_db.read_failing_rows(
        conn, test.audit_schema, test.audit_table, limit=MAX_ROWS_PER_TEST
    )
    whole = len(rows) < MAX_ROWS_PER_TEST
    if not whole:
        logger.warning(
            "test %s has more than %d failing rows: only the first %d are recorded and its "
            "older anomalies are not resolved in this run",
            test.name,
            MAX_ROWS_PER_TEST,
            MAX_ROWS_PER_TEST,
        )
    return rows, whole
