"""``mdq instruments add|list|remove``: which instruments exist and where their candles come
from (provider, provider symbol, exchange, timeframes, active; migration 100).

The daily backfill (``backfill/daily``, ``mdq serve``) loads every active instrument with a
provider through that provider, from its watermark minus the look-back.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mdq.config import load_settings
from mdq.db import connect
from mdq.exceptions import ProviderConfigError, TerminalError

instruments_app = typer.Typer(
    help="Instruments and where their candles come from (the daily backfill loads the active "
    "ones through their provider).",
    no_args_is_help=True,
)

#: Default timeframes of a new instrument per provider.
DEFAULT_TIMEFRAMES = {"yfinance": "1d", "ccxt": "1h"}


@instruments_app.command("add")
def add(
    provider_symbol: Annotated[
        str, typer.Argument(help="The symbol as the provider spells it: AAPL, BTC/USDT, ...")
    ],
    provider: Annotated[str, typer.Option(help="yfinance or ccxt.")],
    exchange: Annotated[
        str | None, typer.Option(help="ccxt: the exchange id (binance, kraken, ...).")
    ] = None,
    timeframes: Annotated[
        str | None,
        typer.Option(help="Comma-separated timeframes (default: 1d for yfinance, 1h for ccxt)."),
    ] = None,
    symbol: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="The project's symbol (default: the ticker on yfinance, EXCHANGE:SYMBOL on "
            "ccxt, e.g. binance:BTC/USDT).",
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            help="Do not ask the provider (needs --asset-class and --calendar); the next "
            "backfill refreshes them from its metadata."
        ),
    ] = False,
    asset_class: Annotated[
        str | None, typer.Option(help="Override the provider's asset class.")
    ] = None,
    calendar: Annotated[
        str | None, typer.Option(help="Override the trading calendar (XNYS, 24/7, FX, ...).")
    ] = None,
) -> None:
    """Register (or re-activate) an instrument with its provider. Asks the provider for the
    instrument (exchange, currency, asset class, calendar), so a misspelt or delisted symbol
    is refused here rather than at 02:00."""
    from mdq.backfill_core import make_provider, project_symbol
    from mdq.cli import err_console, friendly_errors, project_database
    from mdq.db import backfill as db
    from mdq.db.instruments import upsert_instrument_source
    from mdq.providers.base import Instrument
    from mdq.validation import parse_timeframe

    @friendly_errors
    def run() -> None:
        if provider not in DEFAULT_TIMEFRAMES:
            raise ProviderConfigError(
                provider, f"unknown provider {provider!r}; expected yfinance or ccxt"
            )
        if provider == "ccxt" and not exchange:
            raise ProviderConfigError("ccxt", "--exchange is required (binance, kraken, ...)")
        frames = [
            parse_timeframe(t)
            for t in (timeframes or DEFAULT_TIMEFRAMES[provider]).split(",")
            if t.strip()
        ]
        name = symbol or project_symbol(provider, exchange, provider_symbol)
        if offline:
            if not (asset_class and calendar):
                raise ProviderConfigError(provider, "--offline needs --asset-class and --calendar")
            instrument = Instrument(name, asset_class, calendar)
        else:
            prov = make_provider(
                provider, symbols={name: provider_symbol}, timeframes=frames, exchange=exchange
            )
            described = prov.describe(name)  # type: ignore[attr-defined]
            instrument = Instrument(
                name,
                asset_class or described.asset_class,
                calendar or described.calendar or "24/7",
                described.exchange,
                described.quote_currency,
                # the provider's metadata said so ("mapping"); --calendar is by hand (None)
                calendar_source=None if calendar or not described.calendar else "mapping",
            )
        from mdq.db.instruments import find_by_provider_symbol

        with project_database(load_settings()) as database, connect(database) as conn:
            taken = find_by_provider_symbol(
                conn, provider, exchange if provider == "ccxt" else None, provider_symbol
            )
            if taken is not None and taken.symbol != name:
                raise TerminalError(
                    f"{provider} {provider_symbol} is already registered as {taken.symbol!r}; "
                    f"remove it first or add with --as {taken.symbol}"
                )
            db.upsert_instruments(conn, [instrument])
            changed = upsert_instrument_source(
                conn,
                symbol=name,
                provider=provider,
                provider_symbol=None if provider_symbol == name else provider_symbol,
                provider_exchange=exchange if provider == "ccxt" else None,
                timeframes=frames,
                asset_class=instrument.asset_class,
                calendar=instrument.calendar or "24/7",
            )
        verb = "added" if changed else "already registered"
        err_console.print(
            f"{verb}: {name} ({instrument.asset_class}, calendar {instrument.calendar}, "
            f"{instrument.exchange or '-'}, {instrument.quote_currency or '-'}) from {provider}"
            f"{':' + exchange if exchange else ''} {provider_symbol}, timeframes "
            f"{','.join(frames)}",
            highlight=False,
        )

    run()


@instruments_app.command("list")
def list_command(
    output: Annotated[
        str, typer.Option("--format", help="table or json.", case_sensitive=False)
    ] = "table",
    all_: Annotated[bool, typer.Option("--all", help="Include removed (inactive) ones.")] = False,
) -> None:
    """List instruments with their provider, provider symbol, timeframes, calendar and how
    the calendar was decided (mapping, instruments, suffix, inferred, asset_class; - = by
    hand)."""
    from rich.table import Table

    from mdq.cli import console, friendly_errors, project_database
    from mdq.db.instruments import list_instrument_sources

    @friendly_errors
    def run() -> None:
        with project_database(load_settings()) as database, connect(database) as conn:
            rows = list_instrument_sources(conn, include_inactive=all_)
        if output == "json":
            console.print_json(
                json.dumps(
                    [
                        {
                            "symbol": r.symbol,
                            "provider": r.provider,
                            "provider_symbol": r.source_symbol if r.provider else None,
                            "provider_exchange": r.provider_exchange,
                            "timeframes": list(r.timeframes),
                            "active": r.active,
                            "asset_class": r.asset_class,
                            "calendar": r.calendar,
                            "calendar_source": r.calendar_source,
                            "exchange": r.exchange,
                            "quote_currency": r.quote_currency,
                        }
                        for r in rows
                    ]
                )
            )
            return
        table = Table(title=f"{len(rows)} instruments")
        for column in (
            "symbol",
            "provider",
            "provider symbol",
            "timeframes",
            "active",
            "asset class",
            "calendar",
            "decided by",
            "exchange",
            "currency",
        ):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r.symbol,
                (r.provider or "-") + (f":{r.provider_exchange}" if r.provider_exchange else ""),
                r.source_symbol if r.provider else "-",
                ",".join(r.timeframes) or "-",
                "yes" if r.active else "no",
                r.asset_class,
                r.calendar,
                r.calendar_source or "-",
                r.exchange or "-",
                r.quote_currency or "-",
            )
        console.print(table)

    run()


@instruments_app.command("remove")
def remove(
    symbol: Annotated[str, typer.Argument(help="The project's symbol, e.g. binance:BTC/USDT.")],
) -> None:
    """Stop loading an instrument (it becomes inactive; its candles, findings and calendar
    stay; `mdq instruments add` re-activates it)."""
    from mdq.cli import console, friendly_errors, project_database
    from mdq.db.instruments import deactivate_instrument

    @friendly_errors
    def run() -> None:
        with project_database(load_settings()) as database, connect(database) as conn:
            was = deactivate_instrument(conn, symbol)
        if was is None:
            raise TerminalError(f"no instrument {symbol!r} (see `mdq instruments list --all`)")
        console.print(f"removed: {symbol}" if was else f"already inactive: {symbol}")

    run()


def register(app: typer.Typer) -> None:
    """Add ``mdq instruments`` to the ``mdq`` app."""
    app.add_typer(instruments_app, name="instruments")
