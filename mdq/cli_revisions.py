"""``mdq revisions list|restore``: final candles a later backfill changed, and undoing one.

Registered from :mod:`mdq.cli` with one line (:func:`register`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

revisions_app = typer.Typer(
    help="Candle revisions: the previous values of final candles a later backfill changed.",
    no_args_is_help=True,
)


@revisions_app.command("list")
def list_command(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include restored revisions.")] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List revisions, newest first: the candle, its previous and new close and volume, the
    backfill execution that changed it."""
    from rich.table import Table

    from mdq.cli import console, friendly_errors, project_database
    from mdq.config import load_settings
    from mdq.db import connect
    from mdq.db.revisions import list_revisions
    from mdq.exceptions import TerminalError

    @friendly_errors
    def run() -> None:
        if output not in ("table", "json"):
            raise TerminalError(f"--format {output!r}; expected table or json")
        with project_database(load_settings()) as database, connect(database) as conn:
            rows = list_revisions(conn, symbol=symbol, include_restored=all_)
        if output == "json":
            typer.echo(
                json.dumps(
                    [
                        {
                            **{k: v for k, v in r.__dict__.items()},
                            "ts": r.ts.isoformat(),
                            "revised_at": r.revised_at.isoformat(),
                            "restored_at": r.restored_at.isoformat() if r.restored_at else None,
                            "execution_id": str(r.execution_id) if r.execution_id else None,
                        }
                        for r in rows
                    ],
                    indent=2,
                )
            )
            return
        table = Table(title=f"{len(rows)} revisions")
        for name in (
            "id",
            "symbol",
            "tf",
            "ts (UTC)",
            "close",
            "new close",
            "volume",
            "new volume",
            "execution",
            "restored",
        ):
            table.add_column(name)
        for r in rows:
            table.add_row(
                str(r.revision_id),
                r.symbol,
                r.timeframe,
                r.ts.strftime("%Y-%m-%d %H:%M"),
                f"{r.close:g}",
                "" if r.new_close is None else f"{r.new_close:g}",
                f"{r.volume:g}",
                "" if r.new_volume is None else f"{r.new_volume:g}",
                str(r.execution_id or "(restore)"),
                r.restored_at.strftime("%Y-%m-%d %H:%M") if r.restored_at else "",
            )
        console.print(table)

    run()


@revisions_app.command("restore")
def restore_command(
    revision_id: Annotated[int, typer.Argument(help="The revision id (mdq revisions list).")],
) -> None:
    """Put a revision's previous values back into market_data (the values replaced are kept as
    a new revision, so this can be undone the same way)."""
    from mdq.cli import console, friendly_errors, project_database
    from mdq.config import load_settings
    from mdq.db import connect
    from mdq.db.revisions import restore_revision

    @friendly_errors
    def run() -> None:
        with project_database(load_settings()) as database, connect(database) as conn:
            r = restore_revision(conn, revision_id)
        console.print(
            f"restored revision {r.revision_id}: {r.symbol}/{r.timeframe} "
            f"{r.ts.isoformat()} close {r.close:g} volume {r.volume:g}",
            highlight=False,
        )

    run()


def register(app: typer.Typer) -> None:
    """Add ``mdq revisions`` to the ``mdq`` app."""
    app.add_typer(revisions_app, name="revisions")
