"""mdq's Python API: plain functions over the library, runnable without Prefect.

``import mdq`` exposes every name of :data:`__all__` (lazily: ``import mdq`` alone loads neither
dbt, Prefect nor pandas). The functions without a ``conn`` argument are entrypoints: they read
the settings (``MDQ_*``), open the project's database (``MDQ_DATABASE_URL``, else the embedded
server under ``MDQ_HOME``) and apply pending migrations, unless given a ``database``. The seed's
bookkeeping functions take an open connection (:func:`open_database` + :func:`connect`).

Exit statuses are the CLI's business; here results are returned and errors raised
(:mod:`mdq.exceptions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mdq.db import Database, connect
from mdq.db.backfill import (
    create_backfill_state,
    get_active_backfill_states,
    track_symbol_failure,
    update_backfill_state,
)
from mdq.dedupe import cleanup_duplicate_records

if TYPE_CHECKING:
    from mdq.backfill_core import SeriesResult
    from mdq.db.anomalies import StoredAnomaly, TStatusFilter
    from mdq.db.triage import Ack, MuteRule
    from mdq.health import HealthSnapshot
    from mdq.notify import Notifier
    from mdq.providers.base import Provider
    from mdq.quality import QualityReport

__all__ = [
    "acknowledge",
    "backfill",
    "check",
    "cleanup_duplicate_records",
    "connect",
    "create_backfill_state",
    "detect_data_anomalies",
    "get_active_backfill_states",
    "health_check",
    "list_anomalies",
    "list_mutes",
    "mute",
    "open_database",
    "track_symbol_failure",
    "unacknowledge",
    "unmute",
    "update_backfill_state",
]


@contextlib.contextmanager
def open_database(*, keep_running: bool = False) -> Iterator[Database]:
    """Open the project's database from the settings, with pending migrations applied.

    Args:
        keep_running: leave an embedded server this call started running on exit (it is
            stopped otherwise).

    Yields:
        The database (use :func:`connect` on it for a connection).

    Raises:
        SettingsError: an ``MDQ_*`` variable is invalid.
        DatabaseUnreachable: the server does not accept connections.
        EmbeddedDatabaseError: the embedded server could not start.
    """
    from mdq.config import load_settings
    from mdq.db import open_database as open_configured
    from mdq.db.migrate import apply_migrations

    settings = load_settings()
    with open_configured(settings, keep_running=keep_running) as database:
        with connect(database, timeout=settings.connect_timeout) as conn:
            apply_migrations(conn)
        yield database


@contextlib.contextmanager
def _database(database: Database | None) -> Iterator[Database]:
    if database is not None:
        yield database
        return
    with open_database() as opened:
        yield opened


def _schema() -> str:
    from mdq.config import load_settings

    return load_settings().dbt_schema


def backfill(
    provider: str | Provider = "csv",
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    path: str | None = None,
    mapping: str | None = None,
    seed: int = 0,
    max_concurrency: int | None = None,
    database: Database | None = None,
) -> list[SeriesResult]:
    """Load candles into ``market_data`` for the window ``[start, end)`` (what ``mdq backfill``
    does without Prefect; :func:`mdq.backfill_core.run_backfill`).

    Args:
        provider: ``csv`` (also parquet; needs ``path``), ``synthetic``, or a Provider object.
        symbols: only these symbols (None: all the provider offers).
        timeframes: only these timeframes (None: all).
        start: window start, included (UTC-aware); with ``end``, or neither (a file then loads
            its whole range, other providers from each series' watermark up to now).
        end: window end, excluded.
        path: csv provider: the file (.csv, .csv.gz, .parquet).
        mapping: csv provider: the mapping TOML (default: ``FILE.mapping.toml`` beside it).
        seed: synthetic provider: the seed.
        max_concurrency: series loaded at once (default ``MDQ_BACKFILL_MAX_CONCURRENCY``).
        database: the database (default: the configured one, migrated).

    Returns:
        One result per (symbol, timeframe): ``status`` (``completed``, ``failed``, ...),
        ``fetched``, ``inserted``, ``updated``, ``unchanged``, ``quarantined``, ``error``. A
        failed series is a result, not an exception.

    Raises:
        InvalidWindow: only one of start/end, naive datetimes, or end not after start.
        ProviderConfigError: unknown provider or bad provider options.
    """
    from mdq.backfill_core import run_backfill

    with _database(database) as target:
        return run_backfill(
            provider,
            symbols,
            timeframes,
            start,
            end,
            path=path,
            mapping=mapping,
            seed=seed,
            database=target,
            max_concurrency=max_concurrency,
        )


def check(
    *,
    as_of: datetime | None = None,
    select: Sequence[str] | None = None,
    database: Database | None = None,
    use_prefect: bool = False,
    record: bool | None = None,
    full: bool = False,
    shard: str | None = None,
) -> QualityReport:
    """Run the dbt checks and record their findings in ``data_anomalies`` (``mdq check``;
    :func:`mdq.quality.run_quality_checks`).

    Args:
        as_of: reference time of "now"-dependent checks (UTC-aware; None: now). A run with
            ``as_of`` is a what-if: it records nothing (its findings are in the report's
            ``findings``) unless ``record``.
        record: record the findings; None: only a live run (no ``as_of``) does.
        select: dbt selection, e.g. ``["+tag:gaps"]`` (None: the whole project).
        database: the database (default: the configured one, migrated).
        use_prefect: run dbt through prefect-dbt (each node a Prefect task); needs a Prefect API.
        full: re-read every candle and rebuild the incremental models (``mdq check --full``);
            by default a live run re-reads only what changed since the last successful run.
        shard: ``"i/n"``: only the symbols of that shard (``mdq check --shard``).

    Returns:
        The report: ``verdict`` (``ok``, ``anomalies``, ``broken``), ``open_errors``,
        ``open_warnings``, ``inserted``/``updated``/``reopened``/``resolved`` counts.

    Raises:
        DbtRunError: dbt could not run at all.
        DatabaseUnreachable: PostgreSQL is down.
        RecordBackwards: ``record`` with an ``as_of`` before the latest recorded run's.
        ValueError: a naive ``as_of``, or ``shard`` not ``i/n`` with 1 <= i <= n.
    """
    from mdq.db.check_scope import Shard
    from mdq.quality import run_quality_checks

    parsed = Shard.parse(shard) if shard is not None else None
    with _database(database) as target:
        return run_quality_checks(
            target,
            _schema(),
            as_of=as_of,
            select=select,
            use_prefect=use_prefect,
            record=record,
            full=full,
            shard=parsed,
        )


def detect_data_anomalies(
    check_gaps: bool = True,
    check_outliers: bool = True,
    check_staleness: bool = True,
    *,
    as_of: datetime | None = None,
    database: Database | None = None,
    record: bool | None = None,
) -> QualityReport:
    """The seed's entry point: run the chosen check families and record their findings.

    All three flags set runs the whole project (every check, also duplicates, integrity and
    any analyst's test); otherwise the tests tagged ``gaps``/``outliers``/``staleness`` and the
    models they need (:func:`mdq.quality.check_selection`). The Prefect flow of the same name
    (``flows/quality_checks.py``) does the same inside a flow run.

    Args:
        check_gaps: run the tests tagged ``gaps``.
        check_outliers: run the tests tagged ``outliers``.
        check_staleness: run the tests tagged ``staleness``.
        as_of: reference time (UTC-aware; None: now).
        database: the database (default: the configured one, migrated).
        record: as :func:`check`.

    Returns:
        As :func:`check`; with no family chosen nothing runs (``tests_run == 0``).

    Raises:
        As :func:`check`.
    """
    from mdq.quality import check_selection

    select = check_selection(check_gaps, check_outliers, check_staleness)
    return check(as_of=as_of, select=select, database=database, record=record)


def list_anomalies(
    status: TStatusFilter = "open",
    *,
    database: Database | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    severity: str | None = None,
    anomaly_type: str | None = None,
    check_name: str | None = None,
    since: datetime | None = None,
) -> list[StoredAnomaly]:
    """Recorded anomalies (``mdq anomalies``), most severe first, with their effective status
    (``triage_status``).

    Args:
        status: ``open`` (open, neither acknowledged nor muted), ``acknowledged``, ``muted``,
            ``resolved``, ``active`` (the first three) or ``all``.
        database: the database (default: the configured one, migrated).
        symbol: only this symbol.
        timeframe: only this timeframe.
        severity: only ``warn`` or ``error``.
        anomaly_type: only this type.
        check_name: only this check.
        since: only findings about candles at or after this instant (UTC-aware).

    Returns:
        Rows of ``data_anomalies`` sorted by severity (error first), symbol, timeframe,
        ``ts_start`` (UTC), check name.

    Raises:
        ValueError: an unknown ``status``.
    """
    from mdq.db.anomalies import list_anomalies as list_stored

    with _database(database) as target, connect(target) as conn:
        return list_stored(
            conn,
            status,
            symbol=symbol,
            timeframe=timeframe,
            severity=severity,
            anomaly_type=anomaly_type,
            check_name=check_name,
            since=since,
        )


def acknowledge(
    anomaly_id: int,
    *,
    by: str,
    reason: str,
    until: datetime | None = None,
    database: Database | None = None,
) -> Ack:
    """Acknowledge one anomaly as it is now (``mdq anomalies ack``;
    :func:`mdq.db.triage.acknowledge`): it no longer fails a check or alerts, and reopens by
    itself when it changes, resolves or ``until`` passes.

    Raises:
        AnomalyNotFound: no anomaly has this id.
        TriageError: empty ``by``/``reason``, a naive or past ``until``, a resolved anomaly.
    """
    from mdq.db.triage import acknowledge as ack

    with _database(database) as target, connect(target) as conn:
        return ack(conn, anomaly_id, by=by, reason=reason, expires_at=until)


def unacknowledge(anomaly_id: int, *, by: str, database: Database | None = None) -> int:
    """End the acknowledgement of one anomaly (``mdq anomalies unack``); returns 1, or 0 when
    none was in force.

    Raises:
        AnomalyNotFound: no anomaly has this id.
    """
    from mdq.db.triage import unacknowledge as unack

    with _database(database) as target, connect(target) as conn:
        return unack(conn, anomaly_id, by=by)


def mute(
    *,
    by: str,
    reason: str,
    until: datetime,
    symbol: str | None = None,
    timeframe: str | None = None,
    check_name: str | None = None,
    anomaly_type: str | None = None,
    ts_from: datetime | None = None,
    ts_to: datetime | None = None,
    database: Database | None = None,
) -> MuteRule:
    """Add a mute rule (``mdq anomalies mute``; :func:`mdq.db.triage.mute`): the anomalies it
    covers (None = any; ``ts_start`` in ``[ts_from, ts_to)``) neither fail a check nor alert
    until ``until``.

    Raises:
        TriageError: as :func:`mdq.db.triage.mute` (e.g. a rule naming nothing).
    """
    from mdq.db.triage import mute as add_rule

    with _database(database) as target, connect(target) as conn:
        return add_rule(
            conn,
            by=by,
            reason=reason,
            expires_at=until,
            symbol=symbol,
            timeframe=timeframe,
            check_name=check_name,
            anomaly_type=anomaly_type,
            ts_from=ts_from,
            ts_to=ts_to,
        )


def unmute(mute_id: int, *, by: str, database: Database | None = None) -> MuteRule:
    """End a mute rule now (``mdq anomalies unmute``).

    Raises:
        MuteNotFound: no rule in force has this id.
    """
    from mdq.db.triage import unmute as end_rule

    with _database(database) as target, connect(target) as conn:
        return end_rule(conn, mute_id, by=by)


def list_mutes(*, include_ended: bool = False, database: Database | None = None) -> list[MuteRule]:
    """Mute rules in force, newest first, with the findings each covers now (``mdq anomalies
    mutes``); ``include_ended`` adds the unmuted and expired ones."""
    from mdq.db.triage import list_mutes as rules

    with _database(database) as target, connect(target) as conn:
        return rules(conn, include_ended=include_ended)


def health_check(
    *,
    as_of: datetime | None = None,
    refresh_staleness: bool = True,
    failure_threshold: int | None = None,
    notifier: Notifier | None = None,
    database: Database | None = None,
    min_severity: str | None = None,
    record: bool | None = None,
) -> HealthSnapshot:
    """Take a health snapshot (a row in ``health_snapshots``) and alert once per problem streak
    (``mdq health``; :func:`mdq.health.run_health_check`).

    Args:
        as_of: reference time (UTC-aware; default now).
        refresh_staleness: run the dbt checks tagged ``staleness`` first.
        failure_threshold: consecutive backfill failures that make a problem (default 3,
            :data:`mdq.health_rules.FAILURE_THRESHOLD`).
        notifier: where alerts go (default: a log warning and a Prefect event).
        database: the database (default: the configured one, migrated).
        min_severity: least severe problem that alerts (default ``MDQ_ALERT_MIN_SEVERITY``,
            ``error``).
        record: write the snapshot and send alerts; None: only a live run (no ``as_of``).

    Returns:
        The snapshot: ``snapshot_id``, ``series_tracked``, ``problems``, ``alerted``.

    Raises:
        ValueError: naive ``as_of`` or a threshold < 1.
        DbtRunError: the staleness refresh could not run.
    """
    from mdq.config import load_settings
    from mdq.health import run_health_check
    from mdq.health_rules import FAILURE_THRESHOLD
    from mdq.notify import LogNotifier

    with _database(database) as target:
        return run_health_check(
            target,
            notifier or LogNotifier(),
            as_of=as_of,
            failure_threshold=FAILURE_THRESHOLD if failure_threshold is None else failure_threshold,
            refresh_staleness=refresh_staleness,
            schema=_schema(),
            min_severity=min_severity or load_settings().alert_min_severity,
            record=record,
        )
