"""The quality commands of ``mdq``: check, health, dedupe, docs, serve (``anomalies``:
:mod:`mdq.cli_anomalies`).

Registered on the main Typer app by :func:`register`. Exit statuses: 0 fine, 1 the data has
open error-severity anomalies (``check``) or health problems (``health``), 2 could not run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import typer
from rich.table import Table

from mdq.config import load_settings
from mdq.db import connect
from mdq.db.migrate import apply_migrations
from mdq.exceptions import DuplicateKeysBlockMigration, MdqError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_COULD_NOT_RUN = 2


#: ``--as-of`` values accepted: the checks refresh calendars up to as_of + 14 days and work in
#: pandas nanosecond timestamps (1677-09-22 to 2262-04-11); 9999-12-31 overflowed a date.
AS_OF_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def parse_as_of(value: str | None) -> datetime | None:
    """Parse ``--as-of``: ISO 8601 with an offset or ``Z`` (a date alone means 00:00 UTC).

    Raises:
        typer.BadParameter: unparseable, without a time zone, or outside :data:`AS_OF_RANGE`
            (exit status 2).
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO 8601 timestamp") from None
    if len(value.strip()) == 10:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"'{value}' has no time zone; add Z or an offset like +00:00")
    parsed = parsed.astimezone(UTC)
    if not AS_OF_RANGE[0] <= parsed < AS_OF_RANGE[1]:
        raise typer.BadParameter(
            f"'{value}' is outside the supported range [{AS_OF_RANGE[0].date()}, "
            f"{AS_OF_RANGE[1].date()})"
        )
    return parsed


def parse_symbols(value: str | None) -> list[str] | None:
    """``--symbols A,B``: the symbols, stripped, in order, without repeats (None: all).

    Raises:
        typer.BadParameter: the list names no symbol.
    """
    if value is None:
        return None
    symbols = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not symbols:
        raise typer.BadParameter(f"--symbols '{value}' names no symbol; e.g. --symbols AAPL,MSFT")
    return symbols


def _fail(message: str) -> typer.Exit:
    from mdq.cli import err_console

    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_COULD_NOT_RUN)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_dbt_vars(value: str | None) -> dict[str, Any] | None:
    """Parse ``--vars``: a YAML (or JSON) mapping, as dbt's own ``--vars`` takes.

    Raises:
        typer.BadParameter: not YAML, or not a mapping (exit status 2).
    """
    if value is None or not value.strip():
        return None
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise typer.BadParameter(
            f"--vars '{value}' is not YAML, e.g. '{{mdq_outlier_z: ...}}'"
        ) from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter(f"--vars '{value}' is not a mapping of var names to values")
    return parsed


def parse_selection(values: list[str] | None) -> list[str] | None:
    """``--select`` values (repeatable, each may hold several space-separated selectors)."""
    selectors = [part for value in values or () for part in value.split()]
    return selectors or None


def check(
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Reference time (ISO 8601, e.g. 2024-06-01T00:00:00Z); default now. A check as of "
        "another instant is a what-if: it prints its findings and records nothing.",
    ),
    record: bool = typer.Option(
        False, "--record", help="Record an --as-of run too (never behind the recorded state)."
    ),
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            "-s",
            help="dbt selectors of the checks to run (repeatable), e.g. '+tag:gaps' or "
            "'+test_name:future_candles' (with '+' the models they need are built first); "
            "default every check.",
        ),
    ] = None,
    symbols: str | None = typer.Option(
        None,
        "--symbols",
        help="Comma-separated symbols: check only these series (others' anomalies stay as "
        "they are).",
    ),
    dbt_vars: str | None = typer.Option(
        None,
        "--vars",
        help="dbt vars as YAML, e.g. \"{mdq_outlier_z: {'*:*': 12}}\" (a var replaces the "
        "project's value; dbt re-parses the project when vars change).",
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Re-read every candle and rebuild the incremental models from scratch. By default "
        "a check re-reads only the series written since the last successful check (from a few "
        "candles before the first change) and resolves only findings inside that range.",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="i/n: check only the symbols whose hash falls in shard i of n (n workers check "
        "one database; shards never resolve each other's findings).",
    ),
) -> None:
    """Run every dbt check (or a selection) and record the findings in data_anomalies.

    With --as-of it is a what-if: it prints what it finds and leaves data_anomalies,
    acknowledgements and alerts as they were, unless --record. Acknowledged and muted findings
    do not count. Exit 0: no error-severity anomaly is open; 1: some are; 2: the checks could
    not run."""
    from mdq.db.check_scope import Shard

    try:
        shard_of = Shard.parse(shard) if shard is not None else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    when = parse_as_of(as_of)
    selection = parse_selection(select)
    symbol_list = parse_symbols(symbols)
    variables = parse_dbt_vars(dbt_vars)
    from mdq.cli import console, project_database
    from mdq.dbt_runner import prefect_api_available
    from mdq.quality import QualityReport, run_quality_checks
    from mdq.resources import load_flow

    try:
        settings = load_settings()
        with project_database(settings) as database:
            if prefect_api_available():
                from prefect import tags

                quality_checks = load_flow("quality_checks.py:quality_checks")
                with tags("mdq", "cli"):
                    state = quality_checks(
                        as_of=when,
                        select=selection,
                        record=record or when is None,
                        symbols=symbol_list,
                        dbt_vars=variables,
                        full=full,
                        shard=shard_of.label if shard_of else None,
                        return_state=True,
                    )
                report = state.result(raise_on_failure=False)
            else:
                report = run_quality_checks(
                    database,
                    settings.dbt_schema,
                    as_of=when,
                    use_prefect=False,
                    record=record or when is None,
                    select=selection,
                    symbols=symbol_list,
                    dbt_vars=variables,
                    full=full,
                    shard=shard_of,
                )
    except (MdqError, psycopg.Error) as exc:
        raise _fail(str(exc).strip().splitlines()[0]) from None
    if isinstance(report, (MdqError, psycopg.Error)):
        # the flow failed on the same error the direct path raises: say it the same way
        raise _fail(str(report).strip().splitlines()[0])
    if not isinstance(report, QualityReport):
        raise _fail(f"the quality flow did not finish: {report}")
    if not report.recorded:
        from mdq.cli_anomalies import anomalies_table

        shown = [f for f in report.findings if f.triage_status != "resolved"]
        when_text = report.as_of.isoformat() if report.as_of else "now"
        console.print(
            anomalies_table(
                shown, title=f"{len(shown)} finding(s) as of {when_text}", new_since=report.seen_at
            )
        )
    console.print(report.summary(), highlight=False)
    if report.verdict == "broken":
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    if report.open_errors:
        if report.recorded:
            console.print("see them with: mdq anomalies", highlight=False)
        raise typer.Exit(EXIT_FINDINGS)


def dedupe(
    apply: bool = typer.Option(False, "--apply", help="Remove the duplicates (logged)."),
    restore: str | None = typer.Option(None, "--restore", help="Put back a cleanup by its id."),
    swap: str | None = typer.Option(
        None,
        "--swap",
        help="Keep the removed version of a cleanup's conflicting keys instead (undo: swap the "
        "id it prints).",
    ),
    row: int | None = typer.Option(None, "--row", help="With --swap: only this log row."),
    log: str | None = typer.Option(None, "--log", help="List the rows a cleanup logged."),
    symbol: str | None = typer.Option(None, "--symbol", help="Only this symbol."),
    rows: int = typer.Option(20, "--rows", min=0, help="Rows to show in the preview."),
) -> None:
    """Preview duplicate (symbol, timeframe, ts) rows in market_data, the rows themselves next
    to the row kept; --apply removes them (logged, undoable).

    Works while the unique key cannot be added yet (migration 002 blocked by duplicates);
    after --apply the pending migrations are applied."""
    from mdq.cli import console, err_console, project_database
    from mdq.dedupe import (
        cleanup_duplicate_records,
        cleanup_log,
        restore_duplicate_records,
        swap_kept_version,
    )

    try:
        settings = load_settings()
        with project_database(settings, migrate=False) as database, connect(database) as conn:
            _migrate_allowing_duplicates(conn)
            if log:
                logged = cleanup_log(conn, log)
                console.print(_rows_table(logged, title=f"cleanup {log}: {len(logged)} row(s)"))
                return
            if restore:
                restored = restore_duplicate_records(conn, restore)
                console.print(f"restored {restored} row(s) of cleanup {restore}")
                if not restored:
                    console.print(
                        "(market_data has its unique key: the removed exact copies are "
                        "already there, so nothing was inserted)"
                    )
                return
            if swap:
                swap_id, swapped = swap_kept_version(conn, swap, row)
                console.print(f"swapped {swapped} key(s): the removed version is kept now")
                console.print(f"undo with: mdq dedupe --swap {swap_id}")
                return
            report = cleanup_duplicate_records(
                conn, symbol=symbol, dry_run=not apply, preview_rows=rows
            )
            table = Table(title="duplicate (symbol, timeframe, ts) keys in market_data")
            for name in ("symbol", "timeframe", "keys", "rows to remove", "conflicting"):
                table.add_column(name)
            for g in report.groups:
                table.add_row(
                    g.symbol,
                    g.timeframe,
                    str(g.duplicate_keys),
                    str(g.rows_to_remove),
                    str(g.conflicting_rows),
                )
            console.print(table)
            if report.preview:
                shown = len(report.preview)
                title = f"rows to remove ({shown} of {report.rows_to_remove})"
                console.print(_rows_table(report.preview, title=title))
            verb = "would remove" if report.dry_run else "removed"
            console.print(
                f"{verb} {report.rows_to_remove} row(s) for {report.duplicate_keys} key(s) "
                f"({report.conflicting_rows} with values differing from the kept row)"
            )
            if report.dry_run:
                if report.rows_to_remove:
                    console.print("remove them with: mdq dedupe --apply (every row is logged)")
                return
            if report.cleanup_id:
                console.print(f"cleanup id: {report.cleanup_id}")
                console.print(f"undo with: mdq dedupe --restore {report.cleanup_id}")
                if report.conflicting_rows:
                    console.print(
                        f"keep the removed versions instead: mdq dedupe --swap {report.cleanup_id}"
                    )
            for migration in _migrate_allowing_duplicates(conn):
                err_console.print(f"applied migration {migration.name}")
    except (MdqError, psycopg.Error) as exc:
        raise _fail(str(exc).strip().splitlines()[0]) from None


def _rows_table(rows: Any, title: str) -> Table:
    """Removed rows next to the kept ones: key, reason, o/h/l/c/v of each, log id."""
    table = Table(title=title)
    for name in ("log", "symbol", "tf", "ts", "reason", "removed o/h/l/c/v", "kept o/h/l/c/v"):
        table.add_column(name)
    table.add_column("restored")

    def ohlcv(row: dict[str, Any]) -> str:
        return "/".join(f"{row.get(k)}" for k in ("open", "high", "low", "close", "volume"))

    for r in rows:
        table.add_row(
            str(r.log_id or ""),
            r.symbol,
            r.timeframe,
            str(r.ts),
            r.reason,
            ohlcv(r.removed),
            ohlcv(r.kept),
            str(r.restored_at or ""),
        )
    return table


def _migrate_allowing_duplicates(conn: psycopg.Connection) -> list[Any]:
    """Apply migrations; duplicates blocking 002 are reported, not fatal (dedupe fixes them)."""
    from mdq.cli import err_console

    try:
        return apply_migrations(conn)
    except DuplicateKeysBlockMigration as exc:
        err_console.print(
            f"note: market_data has {exc.duplicate_keys} duplicated key(s); its unique key "
            "(migration 002) waits until they are removed",
            highlight=False,
        )
        return []


def health(
    as_of: str | None = typer.Option(
        None, "--as-of", help="Reference time (ISO 8601 with zone); default now."
    ),
    refresh: bool = typer.Option(
        True, "--refresh/--no-refresh", help="Run the staleness checks (dbt) first."
    ),
    min_severity: str | None = typer.Option(
        None,
        "--min-severity",
        help="Least severe problem that alerts: warn or error (default MDQ_ALERT_MIN_SEVERITY).",
    ),
    record: bool = typer.Option(
        False, "--record", help="Record an --as-of run too (snapshot, streaks, alerts)."
    ),
) -> None:
    """Take a health snapshot and alert once per problem streak.

    Looks at staleness, symbols failing their backfill, open gaps, outliers and split
    suspects; acknowledged and muted findings are counted apart. Only problems at or above the
    minimum severity alert. With --as-of it is a what-if: nothing is recorded or sent unless
    --record. Exit 0: no problem at or above the minimum severity; 1: some; 2: could not
    run."""
    when = parse_as_of(as_of)
    from mdq.cli import console, project_database
    from mdq.health import run_health_check
    from mdq.notify import LogNotifier

    try:
        settings = load_settings()
        with project_database(settings) as database:
            snapshot = run_health_check(
                database,
                LogNotifier(),
                as_of=when,
                refresh_staleness=refresh,
                schema=settings.dbt_schema,
                min_severity=min_severity or settings.alert_min_severity,
                record=record or when is None,
            )
    except (MdqError, psycopg.Error, ValueError) as exc:
        raise _fail(str(exc).strip().splitlines()[0]) from None
    console.print(snapshot.summary(), highlight=False)
    for problem in snapshot.problems:
        console.print(
            f"  {problem.kind} {problem.subject} [{problem.severity}]: {problem.message}",
            highlight=False,
            markup=False,
        )
    from mdq.health_rules import pages

    if any(pages(p, snapshot.min_severity) for p in snapshot.problems):
        raise typer.Exit(EXIT_FINDINGS)


def docs(
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the site after building."),
    port: int = typer.Option(8080, "--port", help="Port for the docs site."),
) -> None:
    """Generate the dbt docs site (lineage from market_data to every check) and serve it."""
    from mdq.cli import console, project_database
    from mdq.dbt_runner import dbt_paths, run_dbt

    try:
        settings = load_settings()
        with project_database(settings) as database:
            result = run_dbt(database, settings.dbt_schema, "docs generate")
            if not result.success:
                raise _fail(f"dbt docs generate failed: {result.exception or 'see the log'}")
            site = dbt_paths().target_path
            console.print(f"docs generated in {site} (index.html, catalog.json)", highlight=False)
            if serve:
                console.print(f"serving on http://localhost:{port} (Ctrl-C to stop)")
                run_dbt(
                    database,
                    settings.dbt_schema,
                    "docs serve",
                    extra=["--port", str(port), "--no-browser"],
                )
    except (MdqError, psycopg.Error) as exc:
        raise _fail(str(exc).strip().splitlines()[0]) from None


def serve(
    check_shards: int = typer.Option(
        1,
        "--check-shards",
        help="n > 1: serve the quality deployments once per shard (after-backfill-shard-i-of-n, "
        "full-weekly-shard-i-of-n), so that n runs check the database at the same time.",
    ),
) -> None:
    """Run the schedules of prefect.yaml in this process (no worker needed).

    Backfill daily 02:00 UTC (one at a time), quality checks after each backfill (incremental)
    and a full re-read weekly (Sundays 04:00 UTC), health
    every 6 hours. Needs a Prefect API for the trigger, e.g. `prefect server start`.
    Deployments of the same names registered by `prefect deploy` (for a worker) are replaced;
    `prefect deploy --all` gives them back to the worker. With --check-shards n the quality
    deployments of another shard count are removed."""
    from prefect import serve as prefect_serve

    from mdq.cli import err_console
    from mdq.deployments import build_deployments, take_over

    if check_shards < 1:
        raise _fail(f"--check-shards must be >= 1, got {check_shards}")
    deployments = build_deployments(check_shards)
    served = {f"{d.flow_name}/{d.name}" for d in deployments}
    for name in take_over(deployments):
        err_console.print(
            f"{name}: replacing the work-pool deployment of `prefect deploy` with this "
            "process's (run `prefect deploy --all` to give it back to a worker)"
            if name in served
            else f"{name}: removed (this process serves the checks in {check_shards} shard(s))",
            highlight=False,
        )
    prefect_serve(*deployments)


def register(app: typer.Typer) -> None:
    """Add the quality commands to the ``mdq`` app."""
    app.command("check")(check)
    app.command("health")(health)
    app.command("dedupe")(dedupe)
    app.command("docs")(docs)
    app.command("serve")(serve)
