"""The ``mdq`` command line.

Every command reads settings once, resolves the database (``MDQ_DATABASE_URL`` or the embedded
server under ``MDQ_HOME``), applies pending migrations, then does its work. Project errors print
one line on stderr and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mdq.config import Settings, load_settings
from mdq.db import Database, connect, open_database
from mdq.db.migrate import apply_migrations
from mdq.exceptions import MdqError

app = typer.Typer(
    help="Market-data quality: load OHLCV candles, check them with dbt, record what is wrong.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The project's PostgreSQL: start/stop the embedded one, print its env.")
app.add_typer(db_app, name="db")
calendars_app = typer.Typer(help="Trading calendars: expected sessions for the gap checks.")
app.add_typer(calendars_app, name="calendars")

#: Width of tables when stdout is not a terminal (a pipe, a file, CI): rich would use 80 and
#: fold the reason column into slivers. COLUMNS still wins.
_PIPE_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(soft_wrap=True, width=_PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status when a command could not run (bad settings, database unreachable, ...).
EXIT_COULD_NOT_RUN = 2


def friendly_errors(func: F) -> F:
    """Turn project errors into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MdqError as exc:
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_COULD_NOT_RUN) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def project_database(
    settings: Settings, *, keep_running: bool = False, migrate: bool = True
) -> Iterator[Database]:
    """Open the project's database and bring its schema up to date (for CLI commands).

    A new embedded database (no data directory under MDQ_HOME yet) is announced on stderr
    with its path, so that a command never silently starts from an empty database.

    Yields:
        The database, migrated.
    """
    from mdq import embedded

    pgdata = embedded.pgdata_dir(settings.home)
    is_new = settings.database_url is None and not pgdata.exists()
    with open_database(settings, keep_running=keep_running) as database:
        if is_new:
            err_console.print(
                f"created a new embedded database in {pgdata} (MDQ_HOME={settings.home}; set "
                "MDQ_HOME or MDQ_DATABASE_URL to use another)",
                highlight=False,
            )
        if migrate:
            with connect(database, timeout=settings.connect_timeout) as conn:
                applied = apply_migrations(conn)
            for migration in applied:
                err_console.print(f"applied migration {migration.name}")
        yield database


def _describe(database: Database) -> str:
    if database.embedded_home is not None:
        return f"embedded PostgreSQL (data in {database.embedded_home.resolve() / 'pgdata'})"
    return f"PostgreSQL at {database.target}"


@db_app.command("start")
@friendly_errors
def db_start() -> None:
    """Start the embedded PostgreSQL (if MDQ_DATABASE_URL is unset), apply migrations, and leave
    it running for dbt, psql and other tools. Stop it with `mdq db stop`."""
    settings = load_settings()
    with project_database(settings, keep_running=True) as database:
        console.print(f"ready: {_describe(database)}; schema up to date")
        console.print('for dbt and psql: eval "$(mdq db env)"')


@db_app.command("stop")
@friendly_errors
def db_stop() -> None:
    """Stop the embedded PostgreSQL of MDQ_HOME (does nothing for an external MDQ_DATABASE_URL)."""
    from mdq import embedded

    settings = load_settings()
    if settings.database_url is not None:
        console.print("MDQ_DATABASE_URL is set: no embedded server to stop")
        return
    stopped = embedded.stop(settings.home)
    console.print("stopped" if stopped else "not running")


@db_app.command("env")
@friendly_errors
def db_env() -> None:
    """Print `export` lines for dbt's profile and psql (use: eval "$(mdq db env)").

    Starts the embedded server and leaves it running, so that the printed socket stays valid."""
    settings = load_settings()
    with project_database(settings, keep_running=True) as database:
        env = database.dbt_env(settings.dbt_schema)
        env.update(
            {
                "PGHOST": database.host,
                "PGPORT": str(database.port),
                "PGUSER": database.user,
                "PGDATABASE": database.dbname,
            }
        )
        if database.secret:
            env["PGPASSWORD"] = database.secret
        for key, value in env.items():
            sys.stdout.write(f"export {key}={shlex.quote(value)}\n")


@db_app.command("migrate")
@friendly_errors
def db_migrate() -> None:
    """Apply pending schema migrations and list what was applied."""
    settings = load_settings()
    with project_database(settings, migrate=False) as database, connect(database) as conn:
        applied = apply_migrations(conn)
        console.print(f"{_describe(database)}: applied {len(applied)} migration(s)")
        for migration in applied:
            console.print(f"  {migration.name}")


@calendars_app.command("refresh")
@friendly_errors
def calendars_refresh(
    start: str | None = typer.Option(
        None, help="First session date, YYYY-MM-DD (default: first candle minus 14 days)."
    ),
    end: str | None = typer.Option(
        None,
        help="End session date, exclusive, YYYY-MM-DD (default: last candle or today, + 14 days).",
    ),
    calendar: list[str] | None = typer.Option(  # noqa: B008
        None, "--calendar", help="Calendar code to refresh (repeatable; default: all in use)."
    ),
) -> None:
    """Write the expected trading sessions of every calendar named in instruments (plus the
    default calendar of unlisted asset classes) into trading_sessions. Idempotent."""
    from datetime import UTC, date, datetime

    from mdq.db.calendars import refresh_calendars

    def parse(name: str, value: str | None) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            message = f"{value!r} is not a date YYYY-MM-DD"
            raise typer.BadParameter(message, param_hint=name) from None

    settings = load_settings()
    start_date, end_date = parse("--start", start), parse("--end", end)
    with project_database(settings) as database, connect(database) as conn:
        try:
            results = refresh_calendars(
                conn,
                today=datetime.now(UTC).date(),
                start=start_date,
                end=end_date,
                calendars=calendar or None,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if not results:
        console.print("no calendar in use: add instruments or candles first")
    for r in results:
        console.print(
            f"{r.calendar}: {r.sessions} sessions in [{r.start}, {r.end}); "
            f"{r.written} written, {r.deleted} removed"
        )


@app.command("demo")
@friendly_errors
def demo(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Reference time of the checks (ISO 8601 with offset); default the end of the "
            "shipped files (their newest candle plus its timeframe), as they are historical.",
        ),
    ] = None,
) -> None:
    """The main job end to end: database, schema, backfill of the shipped real files, trading
    calendars, every dbt check as of the files' end, findings into data_anomalies, and a table
    of what was found; staleness against today is shown apart.

    Idempotent: a second run inserts no candle and only re-sees the same anomalies."""
    from datetime import UTC, datetime

    from mdq.backfill_core import load_sample_data
    from mdq.cli_anomalies import summarize_anomalies, summary_table
    from mdq.cli_quality import parse_as_of
    from mdq.db.anomalies import list_anomalies, series_ends
    from mdq.exceptions import RecordBackwards
    from mdq.quality import run_quality_checks
    from mdq.windows import next_cursor

    when = parse_as_of(as_of)
    settings = load_settings()
    # dbt's per-node log would bury the demo's summary; `mdq check` keeps it.
    os.environ.setdefault("DBT_QUIET", "true")
    with project_database(settings) as database:
        console.print(f"1. database: {_describe(database)}; schema up to date")

        console.print("2. backfill of the shipped real files (mdq/sample_data):")
        results = load_sample_data(database)
        for r in results:
            console.print(
                f"   {r.symbol}/{r.timeframe}: {r.status}, fetched {r.fetched}, "
                f"inserted {r.inserted}, updated {r.updated}, unchanged {r.unchanged}, "
                f"quarantined {r.quarantined}",
                highlight=False,
            )
        with connect(database) as conn:
            ends = series_ends(conn)
        files_end = max((next_cursor(last, tf) for _, tf, last in ends), default=None)
        when = when or files_end
        origin = "the end of the shipped files" if when == files_end else "--as-of"
        console.print(
            f"3. trading calendars refreshed, dbt build (every check) as of "
            f"{when.isoformat() if when else 'now'} ({origin}, not today: the files are "
            "historical) ...",
            highlight=False,
        )
        try:
            report = run_quality_checks(
                database, settings.dbt_schema, as_of=when, use_prefect=False, record=True
            )
        except RecordBackwards as exc:
            console.print(
                f"   not recorded: the recorded state is already as of {exc.latest_as_of} "
                "(a later check ran); this run's findings are shown, data_anomalies is left "
                "as it is",
                highlight=False,
            )
            report = run_quality_checks(
                database, settings.dbt_schema, as_of=when, use_prefect=False, record=False
            )
        console.print(f"   {report.summary()}", highlight=False)
        if report.recorded:
            with connect(database) as conn:
                rows = list_anomalies(conn, "active", seen_at=report.seen_at)
        else:
            rows = [f for f in report.findings if f.triage_status != "resolved"]
        found = [r for r in rows if r.anomaly_type not in STALENESS_TYPES]
        stale = [r for r in rows if r.anomaly_type in STALENESS_TYPES]
        console.print(
            summary_table(summarize_anomalies(found), title=f"{len(found)} findings in the data")
        )
        console.print(f"   headline: {headline(found)}", highlight=False)
        today = datetime.now(UTC)
        at = when.isoformat() if when else "now"
        console.print(
            f"4. staleness, apart: {len(stale)} series stale as of {at}"
            f" ({', '.join(sorted({f'{r.symbol}/{r.timeframe}' for r in stale})) or 'none'}); "
            f"against today ({today:%Y-%m-%d}) every shipped series is old, as expected of "
            "historical files:",
            highlight=False,
        )
        for symbol, timeframe, last in ends:
            console.print(
                f"   {symbol}/{timeframe}: last candle {last:%Y-%m-%d %H:%M} UTC, "
                f"{(today - last).days} days before today",
                highlight=False,
            )
    mdq = _mdq_command()
    console.print(
        "Look further:\n"
        f"  {mdq} anomalies                  every open anomaly with its id, range and reason\n"
        f"  {mdq} anomalies show ID          one in full, with the candles around it\n"
        f"  {mdq} anomalies ack ID --reason  acknowledge one (mute: a rule for many)\n"
        f"  {mdq} docs                       the dbt docs site: lineage from market_data to "
        "each check\n"
        f'  eval "$({mdq} db env)"; psql    then: select * from data_anomalies;',
        highlight=False,
    )


#: Anomaly types the demo shows apart from the headline (they measure age, not the data).
STALENESS_TYPES: tuple[str, ...] = ("stale", "future_candle")


def headline(rows: list[Any]) -> str:
    """One line naming the findings by type, most severe first, e.g.
    ``4 split_suspect (AAPL, IBM, MSFT), 1 gap (BTCUSD)``."""
    by_type: dict[str, list[Any]] = {}
    for row in rows:
        by_type.setdefault(row.anomaly_type, []).append(row)
    ordered = sorted(
        by_type.items(),
        key=lambda item: (-sum(r.severity == "error" for r in item[1]), -len(item[1]), item[0]),
    )
    parts = []
    for anomaly_type, found in ordered:
        symbols = ", ".join(sorted({r.symbol or "-" for r in found}))
        errors = sum(r.severity == "error" for r in found)
        severity = f"{errors} error" if errors else "warn"
        parts.append(f"{len(found)} {anomaly_type} ({symbols}; {severity})")
    return "; ".join(parts) or "no findings"


def _mdq_command() -> str:
    """How the user can call mdq: ``mdq`` when it is on PATH, else the script's path."""
    import shutil

    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("mdq")
    if (
        script is not None
        and script.name == "mdq"
        and not (on_path and Path(on_path).resolve() == script)
    ):
        return os.path.relpath(script)
    return "mdq"


@app.command("split")
def split_command(
    symbol: Annotated[str, typer.Argument(help="The instrument, e.g. AAPL.")],
    effective_date: Annotated[
        str, typer.Argument(help="Ex-date: first session on the new basis (YYYY-MM-DD).")
    ],
    ratio: Annotated[
        str, typer.Argument(help="New shares per old share: 2:1, 7:1, 1:10, or 2, 0.1.")
    ],
) -> None:
    """Record a split in corporate_actions, so the checks neutralise its price step (no
    outlier, no split_suspect; a date off by a session is reported as split_date_mismatch).
    Same as `mdq corporate-actions add SYMBOL DATE --split RATIO`; unknown symbols are
    refused."""
    from mdq.cli_corporate_actions import add

    add(symbol, effective_date, split=ratio)


def _utc(value: str | None, name: str) -> Any:
    """Parse an ISO date/time option; a value without offset is read as UTC."""
    from datetime import UTC, datetime

    from mdq.exceptions import InvalidWindow

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidWindow(f"--{name} {value!r} is not an ISO date or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@app.command("backfill")
@friendly_errors
def backfill_command(
    provider: Annotated[
        str,
        typer.Option(
            help="Where candles come from: csv (also parquet), synthetic, yfinance or ccxt."
        ),
    ] = "csv",
    exchange: Annotated[
        str | None,
        typer.Option(help="ccxt: the exchange id (binance, kraken, coinbase, ...)."),
    ] = None,
    path: Annotated[
        str | None, typer.Option(help="csv: the file (.csv, .csv.gz, .parquet).")
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(help="csv: mapping TOML (default: FILE.mapping.toml beside the file)."),
    ] = None,
    symbols: Annotated[
        list[str] | None,
        typer.Option(
            "--symbols", "--symbol", help="Symbols (repeat or comma-separate); default all."
        ),
    ] = None,
    timeframe: Annotated[
        list[str] | None,
        typer.Option(help="Timeframes to load (repeat); default all the provider serves."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Window start, INCLUDED (ISO, UTC unless an offset is given)."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            help="Window end, EXCLUDED: the window is [start, end). To load 2024-12-31, give "
            "--end 2025-01-01."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="synthetic: the seed (same seed, same candles).")] = 0,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=32, help="Series loaded at once (default MDQ_BACKFILL_MAX_CONCURRENCY)."
        ),
    ] = None,
    prefect: Annotated[
        bool | None,
        typer.Option(
            "--prefect/--no-prefect",
            help="Run as the Prefect flow `backfill` (default: only when PREFECT_API_URL is "
            "set; an ephemeral Prefect server takes tens of seconds to start).",
        ),
    ] = None,
) -> None:
    """Load candles into market_data for the window [start, end): start included, end excluded.

    Without --start/--end a file loads its whole range and other providers load from each
    series' watermark minus the look-back up to now. Re-running a window changes nothing.
    """
    import os

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from mdq.backfill_core import run_backfill
    from mdq.exceptions import ProviderConfigError

    settings = load_settings()
    if provider not in ("csv", "synthetic", "yfinance", "ccxt"):
        raise ProviderConfigError(
            provider, f"unknown provider {provider!r}; expected csv, synthetic, yfinance or ccxt"
        )
    use_prefect = prefect if prefect is not None else bool(os.environ.get("PREFECT_API_URL"))
    names = [n.strip() for item in symbols or [] for n in item.split(",") if n.strip()] or None
    accounting: list[Any] = []
    with project_database(settings) as database:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
        ) as progress:
            bar = progress.add_task("backfill", total=None)
            window = {"start": _utc(start, "start"), "end": _utc(end, "end")}
            if use_prefect:
                results = _backfill_as_flow(
                    dict(
                        provider=provider,
                        symbols=names,
                        timeframes=timeframe,
                        path=path,
                        exchange=exchange,
                        **window,
                    ),
                    dict(
                        database=database,
                        mapping=mapping,
                        seed=seed,
                        max_concurrency=concurrency,
                        on_result=lambda r: progress.advance(bar),
                        on_accounting=accounting.append,
                    ),
                )
            else:
                results = run_backfill(
                    provider=provider,
                    symbols=names,
                    timeframes=timeframe,
                    path=path,
                    mapping=mapping,
                    seed=seed,
                    exchange=exchange,
                    database=database,
                    max_concurrency=concurrency,
                    on_result=lambda r: progress.advance(bar),
                    on_accounting=accounting.append,
                    **window,
                )
            progress.update(bar, total=len(results), completed=len(results))
    for r in results:
        console.print(
            f"{r.symbol}/{r.timeframe} {r.status}: window {r.window or '(no row placed in time)'}"
            f", fetched {r.fetched}, "
            f"inserted {r.inserted}, updated {r.updated}, unchanged {r.unchanged}, "
            f"quarantined {r.quarantined}, duplicates {r.duplicates}"
            + (f", outside the window {r.outside_window}" if r.outside_window else "")
            + (f" ({_one_line(r.error)})" if r.error else ""),
            highlight=False,
        )
    for line in accounting:
        console.print(line.line(), highlight=False)
    if not results:
        err_console.print("error: nothing to load: the source has no series", highlight=False)
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    if all(r.status == "skipped" for r in results):
        err_console.print(
            f"error: every series was skipped ({len(results)}): another backfill holds them; "
            "nothing was loaded",
            highlight=False,
        )
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    outages = [r for r in results if r.status == "failed" and r.transient]
    if outages:
        # an outage (database, disk, network) is "could not run", not a finding about the data
        first = outages[0]
        err_console.print(
            f"error: {len(outages)} series failed on an outage (database, disk or network), "
            f"first {first.symbol}/{first.timeframe}: {_one_line(first.error or '')}; "
            "what was written is kept, a rerun loads the rest",
            highlight=False,
        )
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _backfill_as_flow(parameters: dict[str, Any], plumbing: dict[str, Any]) -> list[Any]:
    """Run the Prefect flow ``backfill`` in this process, tagged ``mdq`` and ``cli``.

    Returns:
        The series' results, also when the flow ends Failed (some series failed).

    Raises:
        MdqError: what stopped the flow before any series ran (bad window, bad provider).
    """
    from prefect import tags

    from mdq.backfill_core import in_process
    from mdq.resources import load_flow

    flow = load_flow("backfill.py:backfill")
    with in_process(**plumbing), tags("mdq", "cli"):
        state = flow(**parameters, return_state=True)
    results = state.result(raise_on_failure=False)
    if isinstance(results, BaseException):
        raise results
    return list(results)


def _register_quality_commands() -> None:
    from mdq.cli_quality import register

    register(app)
    from mdq.cli_instruments import register as register_instruments

    register_instruments(app)
    __import__("mdq.cli_revisions").cli_revisions.register(app)
    __import__("mdq.cli_corporate_actions").cli_corporate_actions.register(app)
    from mdq.cli_report import register as register_report

    register_report(app)
    from mdq.cli_anomalies import register as register_anomalies

    register_anomalies(app)


def _register_alert_commands() -> None:
    from mdq.cli_alerts import register

    register(app)


_register_quality_commands()
_register_alert_commands()


class _OneLineFormatter(logging.Formatter):
    """A log record on one line: a driver error's HINT and CONTEXT lines are joined with
    `` | `` (a full disk's warning would otherwise span three lines of stderr)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        text = super().formatMessage(record)
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _one_line(message: str) -> str:
    """The first non-empty line of a message (driver errors span several)."""
    return next((line.strip() for line in message.splitlines() if line.strip()), "unknown error")


def main() -> None:
    """Console-script entry point.

    The contract of every command: exit 0 ok, 1 findings, 2 could not run. Whatever could not
    run — a bad flag value (``--as-of 9999-12-31T23:59:59Z``), bad settings, an unreachable or
    failing database, a project error — prints one line on stderr and exits 2, never a
    traceback (exit 1 would read as "findings" to a scheduler).
    """
    import psycopg
    from typer import Abort

    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover - typer releases that use click itself
        from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:  # the help was printed
        code = EXIT_COULD_NOT_RUN
    except ClickException as exc:  # bad flag or argument: one line, exit 2
        hint = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
        err_console.print(
            f"[bold red]error:[/] {escape(_one_line(exc.format_message()))}{escape(hint)}",
            highlight=False,
            soft_wrap=True,
        )
        code = EXIT_COULD_NOT_RUN
    except (MdqError, psycopg.Error) as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(_one_line(str(exc)))}", highlight=False, soft_wrap=True
        )
        code = EXIT_COULD_NOT_RUN
    except Abort:
        err_console.print("aborted", highlight=False)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
