"""``mdq anomalies``: find findings (filters, table/JSON/CSV, ``show ID``) and triage them
(``ack``, ``unack``, ``mute``, ``unmute``, ``mutes``).

Registered on the main app by :func:`register`. Exit statuses: 0 done, 2 could not run (bad
option, unknown id, database unreachable). The logic lives in :mod:`mdq.db.anomalies` and
:mod:`mdq.db.triage`, which are the Python API of the same operations.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import typer
from rich.table import Table

from mdq.config import load_settings
from mdq.db import connect
from mdq.db.anomalies import STATUS_FILTERS, StoredAnomaly
from mdq.exceptions import MdqError

app = typer.Typer(
    help="Recorded findings: list and filter them, show one, acknowledge or mute them.",
    no_args_is_help=False,
    invoke_without_command=True,
)

#: Formats of ``mdq anomalies --format``.
FORMATS: tuple[str, ...] = ("table", "json", "csv")

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_instant(value: str | None, option: str, *, relative: bool = False) -> datetime | None:
    """Parse an instant option: ISO 8601 with ``Z``/offset, a date (00:00 UTC), or, with
    ``relative``, a duration from now such as ``30m``, ``12h``, ``7d``, ``2w``.

    Raises:
        typer.BadParameter: anything else (exit status 2).
    """
    if value is None:
        return None
    match = _DURATION.match(value.strip()) if relative else None
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return datetime.now(UTC) + timedelta(**{unit: amount})
    from mdq.cli_quality import parse_as_of

    try:
        return parse_as_of(value)
    except typer.BadParameter as exc:
        hint = " or a duration like 7d" if relative else ""
        raise typer.BadParameter(f"{exc.message}{hint}", param_hint=option) from None


def _fail(exc: Exception) -> typer.Exit:
    from rich.markup import escape

    from mdq.cli import err_console

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@contextmanager
def _connection() -> Iterator[psycopg.Connection]:
    """A connection to the project's database, migrated; project errors exit with status 2."""
    from mdq.cli import project_database

    try:
        settings = load_settings()
        with project_database(settings) as database, connect(database) as conn:
            yield conn
    except (MdqError, psycopg.Error) as exc:
        raise _fail(exc) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else ""


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


def anomalies_table(
    rows: Sequence[StoredAnomaly], title: str | None = None, *, new_since: datetime | None = None
) -> Table:
    """A rich table of anomalies: id, status, severity, check, type, series, start, values,
    reason.

    Args:
        rows: the anomalies.
        title: the table's title.
        new_since: for a what-if run's findings, its time: findings first seen then are new
            and have no stored id (shown as ``new``).
    """
    table = Table(title=title)
    for name in ("id", "status", "severity", "check", "type", "symbol", "tf", "ts_start (UTC)"):
        table.add_column(name)
    table.add_column("observed", justify="right")
    table.add_column("expected", justify="right")
    table.add_column("reason", overflow="fold")
    for row in rows:
        is_new = new_since is not None and row.first_seen_at == new_since
        table.add_row(
            "new" if is_new else str(row.anomaly_id),
            row.triage_status,
            row.severity,
            row.check_name,
            row.anomaly_type,
            row.symbol or "",
            row.timeframe or "",
            _stamp(row.ts_start),
            _number(row.observed_value),
            _number(row.expected_value),
            str(row.details.get("failure_reason", "")),
        )
    return table


def summarize_anomalies(rows: Sequence[StoredAnomaly]) -> list[dict[str, Any]]:
    """Count anomalies per (symbol, timeframe, anomaly_type, severity).

    Args:
        rows: ``StoredAnomaly`` rows (e.g. from ``list_anomalies``).

    Returns:
        One dict per group with keys symbol, timeframe, anomaly_type, severity, count; sorted
        by symbol, timeframe, type, severity (missing symbol/timeframe as "").
    """
    counts = Counter((r.symbol or "", r.timeframe or "", r.anomaly_type, r.severity) for r in rows)
    return [
        {"symbol": s, "timeframe": t, "anomaly_type": a, "severity": v, "count": n}
        for (s, t, a, v), n in sorted(counts.items())
    ]


def summary_table(counts: list[dict[str, Any]], title: str | None = None) -> Table:
    """A rich table of :func:`summarize_anomalies` (``mdq anomalies --summary``, the demo)."""
    table = Table(title=title)
    for name in ("symbol", "timeframe", "anomaly_type", "severity"):
        table.add_column(name)
    table.add_column("count", justify="right")
    for c in counts:
        table.add_row(
            c["symbol"], c["timeframe"], c["anomaly_type"], c["severity"], str(c["count"])
        )
    return table


def anomalies_csv(rows: Sequence[StoredAnomaly]) -> str:
    """CSV of anomalies: one header line, then one line per anomaly; instants ISO 8601 UTC,
    ``details`` as JSON text."""
    out = io.StringIO()
    names = list(StoredAnomaly.__dataclass_fields__)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        values = []
        for name in names:
            value = getattr(row, name)
            if isinstance(value, datetime):
                value = value.astimezone(UTC).isoformat()
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True, default=_json_default)
            values.append("" if value is None else value)
        writer.writerow(values)
    return out.getvalue()


@app.callback()
def list_command(
    ctx: typer.Context,
    status: str = typer.Option(
        "active",
        "--status",
        help="open (needs attention), acknowledged, muted, resolved, active (the first three) "
        "or all.",
    ),
    symbol: str | None = typer.Option(None, "--symbol", help="Only this symbol."),
    timeframe: str | None = typer.Option(None, "--timeframe", help="Only this timeframe."),
    severity: str | None = typer.Option(None, "--severity", help="Only warn or error."),
    anomaly_type: str | None = typer.Option(None, "--type", help="Only this type (gap, ...)."),
    check_name: str | None = typer.Option(None, "--check", help="Only this check."),
    since: str | None = typer.Option(
        None, "--since", help="Only findings about candles at or after this instant (ISO 8601)."
    ),
    output: str = typer.Option("table", "--format", help="table, json or csv."),
    summary: bool = typer.Option(
        False, "--summary", help="Counts per symbol, timeframe, type and severity instead."
    ),
) -> None:
    """List recorded anomalies (most severe first) with their status; filter them, or count
    them (--summary). Subcommands show one and triage them."""
    if ctx.invoked_subcommand is not None:
        return
    from mdq.cli import console
    from mdq.db.anomalies import list_anomalies

    if status not in STATUS_FILTERS:
        raise typer.BadParameter(
            f"'{status}' not supported; expected {', '.join(STATUS_FILTERS)}", param_hint="--status"
        )
    if output not in FORMATS:
        raise typer.BadParameter(
            f"'{output}' not supported; expected {', '.join(FORMATS)}", param_hint="--format"
        )
    if severity not in (None, "warn", "error"):
        raise typer.BadParameter(f"'{severity}' not supported; expected warn, error")
    when = parse_instant(since, "--since")
    with _connection() as conn:
        rows = list_anomalies(
            conn,
            status,  # type: ignore[arg-type]
            symbol=symbol,
            timeframe=timeframe,
            severity=severity,
            anomaly_type=anomaly_type,
            check_name=check_name,
            since=when,
        )
    title = f"{len(rows)} {status} anomalies"
    if summary:
        counts = summarize_anomalies(rows)
        if output == "json":
            typer.echo(json.dumps(counts, indent=2))
        elif output == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(counts[0]) if counts else ["count"])
            writer.writeheader()
            writer.writerows(counts)
            typer.echo(out.getvalue(), nl=False)
        else:
            console.print(summary_table(counts, title=title))
        return
    if output == "json":
        payload = [row.__dict__ for row in rows]
        typer.echo(json.dumps(payload, default=_json_default, indent=2))
    elif output == "csv":
        typer.echo(anomalies_csv(rows), nl=False)
    else:
        console.print(anomalies_table(rows, title=title))


@app.command("show")
def show_command(
    anomaly_id: int = typer.Argument(..., help="The anomaly's id (first column of the list)."),
    output: str = typer.Option("table", "--format", help="table or json."),
    context: int = typer.Option(5, "--context", min=0, max=100, help="Candles on each side."),
) -> None:
    """One anomaly in full: its fields, details, sample rows, acknowledgements, the mute rule
    covering it, and the candles around it."""
    from mdq.cli import console
    from mdq.db.anomalies import candles_around, get_anomaly
    from mdq.db.triage import ack_history, list_mutes
    from mdq.exceptions import AnomalyNotFound

    with _connection() as conn:
        row = get_anomaly(conn, anomaly_id)
        if row is None:
            raise _fail(AnomalyNotFound(anomaly_id))
        acks = ack_history(conn, anomaly_id)
        mutes = list_mutes(conn)
        candles = candles_around(conn, row, context=context)
        mute_id = conn.execute(
            "select mute_id from data_anomaly_triage where anomaly_id = %s", (anomaly_id,)
        ).fetchone()
    rule = next((m for m in mutes if mute_id and m.mute_id == mute_id[0]), None)
    if output == "json":
        payload = {
            "anomaly": row.__dict__,
            "acknowledgements": [a.__dict__ for a in acks],
            "mute_rule": rule.__dict__ if rule else None,
            "candles": candles,
        }
        typer.echo(json.dumps(payload, default=_json_default, indent=2))
        return
    fields = Table(title=f"anomaly {row.anomaly_id}", show_header=False)
    fields.add_column("field")
    fields.add_column("value", overflow="fold")
    for name, value in row.__dict__.items():
        if name == "details":
            continue
        fields.add_row(name, value.isoformat() if isinstance(value, datetime) else str(value))
    details = dict(row.details)
    samples = details.pop("sample_rows", None)
    for name, value in details.items():
        fields.add_row(f"details.{name}", json.dumps(value, default=_json_default))
    console.print(fields)
    if samples:
        console.print(f"sample rows ({len(samples)}):")
        for sample in samples:
            console.print(f"  {json.dumps(sample, default=_json_default)}", highlight=False)
    for ack in acks:
        state = (
            f"ended {_stamp(ack.ended_at)} ({ack.end_reason}, by {ack.ended_by})"
            if ack.ended_at
            else f"in force{' until ' + _stamp(ack.expires_at) if ack.expires_at else ''}"
        )
        console.print(
            f"acknowledged {_stamp(ack.acked_at)} by {ack.acked_by}: {ack.reason} — {state}",
            highlight=False,
        )
    if rule:
        console.print(
            f"muted by rule {rule.mute_id} ({rule.describe()}) by {rule.muted_by} until "
            f"{_stamp(rule.expires_at)}: {rule.reason}",
            highlight=False,
        )
    if candles:
        table = Table(title=f"{row.symbol}/{row.timeframe} around it (* = inside)")
        for name in ("", "ts (UTC)", "open", "high", "low", "close", "volume", "final", "source"):
            table.add_column(name)
        for c in candles:
            table.add_row(
                "*" if c["inside"] else "",
                _stamp(c["ts"]),
                *(_number(c[k]) for k in ("open", "high", "low", "close", "volume")),
                "yes" if c["is_final"] else "no",
                c["source"] or "",
            )
        console.print(table)
    elif row.symbol:
        console.print("no candles of this series around it in market_data")


def _who(by: str | None) -> str:
    return by if by is not None else getpass.getuser()


@app.command("ack")
def ack_command(
    anomaly_ids: list[int] = typer.Argument(..., help="Anomaly id(s) to acknowledge."),  # noqa: B008
    reason: str = typer.Option(..., "--reason", help="Why (required)."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
    until: str | None = typer.Option(
        None, "--until", help="Until when (ISO 8601 or 7d, 12h); default: until it changes."
    ),
) -> None:
    """Acknowledge findings as they are now: they stop failing `mdq check` and alerting, and
    reopen by themselves when they change (observed value, extent, severity) or --until
    passes."""
    from mdq.cli import console
    from mdq.db.triage import acknowledge

    expires = parse_instant(until, "--until", relative=True)
    with _connection() as conn:
        try:
            acks = [
                acknowledge(conn, i, by=_who(by), reason=reason, expires_at=expires)
                for i in anomaly_ids
            ]
        except MdqError as exc:
            raise _fail(exc) from None
    for ack in acks:
        until_text = f" until {_stamp(ack.expires_at)} UTC" if ack.expires_at else ""
        console.print(
            f"acknowledged anomaly {ack.anomaly_id} (ack {ack.ack_id}) by {ack.acked_by}"
            f"{until_text}",
            highlight=False,
        )


@app.command("unack")
def unack_command(
    anomaly_ids: list[int] = typer.Argument(..., help="Anomaly id(s)."),  # noqa: B008
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
) -> None:
    """End the acknowledgement of findings: they count as open again."""
    from mdq.cli import console
    from mdq.db.triage import unacknowledge

    with _connection() as conn:
        try:
            ended = [(i, unacknowledge(conn, i, by=_who(by))) for i in anomaly_ids]
        except MdqError as exc:
            raise _fail(exc) from None
    for anomaly_id, n in ended:
        verb = "unacknowledged" if n else "was not acknowledged:"
        console.print(f"{verb} anomaly {anomaly_id}", highlight=False)


@app.command("mute")
def mute_command(
    reason: str = typer.Option(..., "--reason", help="Why (required)."),
    until: str = typer.Option(..., "--until", help="Until when: ISO 8601 or 7d, 12h (required)."),
    symbol: str | None = typer.Option(None, "--symbol", help="Only this symbol."),
    timeframe: str | None = typer.Option(None, "--timeframe", help="Only this timeframe."),
    check_name: str | None = typer.Option(None, "--check", help="Only this check."),
    anomaly_type: str | None = typer.Option(None, "--type", help="Only this anomaly type."),
    ts_from: str | None = typer.Option(
        None, "--from", help="Only findings starting at or after this instant."
    ),
    ts_to: str | None = typer.Option(None, "--to", help="Only findings starting before it."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
) -> None:
    """Mute the findings a rule covers (symbol, timeframe, check, type, time range) until
    --until: they neither fail `mdq check` nor alert, and come back when the rule expires."""
    from mdq.cli import console
    from mdq.db.triage import mute

    expires = parse_instant(until, "--until", relative=True)
    assert expires is not None
    with _connection() as conn:
        try:
            rule = mute(
                conn,
                by=_who(by),
                reason=reason,
                expires_at=expires,
                symbol=symbol,
                timeframe=timeframe,
                check_name=check_name,
                anomaly_type=anomaly_type,
                ts_from=parse_instant(ts_from, "--from"),
                ts_to=parse_instant(ts_to, "--to"),
            )
        except MdqError as exc:
            raise _fail(exc) from None
    console.print(
        f"mute rule {rule.mute_id}: {rule.describe()} until {_stamp(rule.expires_at)} UTC; "
        f"covers {rule.covered} open finding(s) now",
        highlight=False,
    )


@app.command("unmute")
def unmute_command(
    mute_id: int = typer.Argument(..., help="The rule's id (see: mdq anomalies mutes)."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
) -> None:
    """End a mute rule now: the findings it covered count as open again."""
    from mdq.cli import console
    from mdq.db.triage import unmute

    with _connection() as conn:
        try:
            rule = unmute(conn, mute_id, by=_who(by))
        except MdqError as exc:
            raise _fail(exc) from None
    console.print(f"unmuted rule {rule.mute_id} ({rule.describe()})", highlight=False)


@app.command("mutes")
def mutes_command(
    history: bool = typer.Option(False, "--all", help="Also ended and expired rules."),
    output: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List the mute rules in force (with --all: their history too)."""
    from mdq.cli import console
    from mdq.db.triage import list_mutes

    with _connection() as conn:
        rules = list_mutes(conn, include_ended=history)
    if output == "json":
        typer.echo(json.dumps([r.__dict__ for r in rules], default=_json_default, indent=2))
        return
    table = Table(title=f"{len(rules)} mute rule(s)" + (" (with history)" if history else ""))
    for name in ("id", "covers", "by", "reason", "created", "until", "ended", "findings now"):
        table.add_column(name)
    for r in rules:
        table.add_row(
            str(r.mute_id),
            r.describe(),
            r.muted_by,
            r.reason,
            _stamp(r.created_at),
            _stamp(r.expires_at),
            f"{_stamp(r.ended_at)} by {r.ended_by}" if r.ended_at else "",
            str(r.covered),
        )
    console.print(table)


def register(main: typer.Typer) -> None:
    """Add ``mdq anomalies`` and its subcommands to the ``mdq`` app."""
    main.add_typer(app, name="anomalies")
