"""``mdq corporate-actions list|add|remove``: splits and dividends the checks neutralise.

Registered from :mod:`mdq.cli` with one line (:func:`register`). A split's ratio is new shares
per old share: ``7:1`` (seven for one) = 7, ``1:10`` (a one-for-ten reverse split) = 0.1, or a
decimal. Unknown symbols (in neither ``instruments`` nor ``market_data``) are refused.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Annotated

import typer

from mdq.exceptions import TerminalError

actions_app = typer.Typer(
    help="Corporate actions: splits (ratio new:old, e.g. 7:1, 1:10) and cash dividends.",
    no_args_is_help=True,
)


def parse_split_ratio(text: str) -> float:
    """New shares per old share from ``N:M`` (``7:1`` → 7.0, ``1:10`` → 0.1, ``3:2`` → 1.5) or
    a decimal (``0.5``).

    Raises:
        TerminalError: not of that shape, not positive and finite, or equal to 1 (no split).
    """
    value = text.strip()
    try:
        if ":" in value:
            new, old = (float(part) for part in value.split(":", 1))
            ratio = new / old
        else:
            ratio = float(value)
    except (ValueError, ZeroDivisionError):
        raise TerminalError(
            f"split ratio {text!r} not understood; expected NEW:OLD such as 7:1 or 1:10, or a "
            "decimal such as 0.5"
        ) from None
    if not (math.isfinite(ratio) and ratio > 0) or ratio == 1:
        raise TerminalError(
            f"split ratio {text!r} not usable; expected a positive ratio other than 1"
        )
    return ratio


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise TerminalError(f"{text!r} is not a date YYYY-MM-DD") from None


@actions_app.command("list")
def list_command(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List corporate actions by symbol and effective date, with their source (cli, a file
    name, yfinance:SYMBOL)."""
    from rich.table import Table

    from mdq.cli import console, friendly_errors, project_database
    from mdq.config import load_settings
    from mdq.db import connect
    from mdq.db.reference import list_corporate_actions

    @friendly_errors
    def run() -> None:
        if output not in ("table", "json"):
            raise TerminalError(f"--format {output!r}; expected table or json")
        with project_database(load_settings()) as database, connect(database) as conn:
            rows = list_corporate_actions(conn, symbol)
        keys = ("symbol", "action_type", "effective_date", "ratio", "cash_amount", "currency")
        if output == "json":
            typer.echo(
                json.dumps(
                    [
                        {**dict(zip(keys, r[:6], strict=True)), "source": r[6]}
                        | {"effective_date": r[2].isoformat()}
                        for r in rows
                    ],
                    indent=2,
                )
            )
            return
        table = Table(title=f"{len(rows)} corporate actions")
        for name in (*keys, "source"):
            table.add_column(name)
        for r in rows:
            table.add_row(
                r[0],
                r[1],
                r[2].isoformat(),
                "" if r[3] is None else f"{r[3]:g}",
                "" if r[4] is None else f"{r[4]:g}",
                r[5] or "",
                r[6] or "",
            )
        console.print(table)

    run()


@actions_app.command("add")
def add_command(
    symbol: Annotated[str, typer.Argument(help="The instrument, e.g. AAPL.")],
    effective_date: Annotated[
        str, typer.Argument(help="Ex-date: first session on the new basis (YYYY-MM-DD).")
    ],
    split: Annotated[
        str | None, typer.Option(help="Split ratio NEW:OLD (7:1, 1:10) or a decimal.")
    ] = None,
    dividend: Annotated[
        float | None, typer.Option(help="Cash dividend per share, in --currency.")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="The dividend's currency.")] = None,
) -> None:
    """Record a split (--split) or a cash dividend (--dividend) for a known symbol."""
    add(symbol, effective_date, split=split, dividend=dividend, currency=currency)


def add(
    symbol: str,
    effective_date: str,
    *,
    split: str | None = None,
    dividend: float | None = None,
    currency: str | None = None,
) -> None:
    """The body of ``add`` (also behind ``mdq split``).

    Raises:
        typer.Exit: 2 on a bad ratio, date or unknown symbol (one line on stderr).
    """
    from mdq.cli import console, friendly_errors, project_database
    from mdq.config import load_settings
    from mdq.db import connect
    from mdq.db.reference import symbol_is_known, upsert_corporate_action
    from mdq.providers.base import CorporateAction

    @friendly_errors
    def run() -> None:
        if (split is None) == (dividend is None):
            raise TerminalError("give exactly one of --split RATIO or --dividend AMOUNT")
        when = _date(effective_date)
        if split is not None:
            action = CorporateAction(symbol, "split", when, ratio=parse_split_ratio(split))
        else:
            assert dividend is not None
            if not (math.isfinite(dividend) and dividend > 0):
                raise TerminalError(f"dividend {dividend!r} not usable; expected a positive amount")
            action = CorporateAction(
                symbol, "dividend", when, cash_amount=dividend, currency=currency
            )
        with project_database(load_settings()) as database, connect(database) as conn:
            if not symbol_is_known(conn, symbol):
                raise TerminalError(
                    f"unknown symbol {symbol!r}: not in instruments or market_data "
                    "(load its candles or `mdq instruments add` it first)"
                )
            changed = upsert_corporate_action(conn, action, source="cli")
        what = (
            f"split {action.ratio:g}" if action.action_type == "split" else f"dividend {dividend:g}"
        )
        verb = "recorded" if changed else "already recorded"
        console.print(f"{verb}: {symbol} {what} effective {when.isoformat()}", highlight=False)

    run()


@actions_app.command("remove")
def remove_command(
    symbol: Annotated[str, typer.Argument(help="The instrument.")],
    effective_date: Annotated[str, typer.Argument(help="Its effective date (YYYY-MM-DD).")],
    action_type: Annotated[str, typer.Option("--type", help="split or dividend.")] = "split",
) -> None:
    """Delete one corporate action (symbol, type, effective date)."""
    from mdq.cli import console, friendly_errors, project_database
    from mdq.config import load_settings
    from mdq.db import connect
    from mdq.db.reference import delete_corporate_action

    @friendly_errors
    def run() -> None:
        if action_type not in ("split", "dividend"):
            raise TerminalError(f"--type {action_type!r}; expected split or dividend")
        when = _date(effective_date)
        with project_database(load_settings()) as database, connect(database) as conn:
            deleted = delete_corporate_action(conn, symbol, action_type, when)
        if not deleted:
            raise TerminalError(
                f"no {action_type} of {symbol!r} effective {when.isoformat()} "
                "(see `mdq corporate-actions list`)"
            )
        console.print(f"removed: {symbol} {action_type} effective {when.isoformat()}")

    run()


def register(app: typer.Typer) -> None:
    """Add ``mdq corporate-actions`` to the ``mdq`` app."""
    app.add_typer(actions_app, name="corporate-actions")
