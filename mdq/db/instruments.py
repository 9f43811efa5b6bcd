"""SQL of the instruments' sources (migration 100): which provider, provider symbol, exchange
and timeframes each instrument is loaded from, and whether it is active.

Values always travel as ``%s`` parameters. Table: ``instruments``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class InstrumentSource:
    """One row of ``instruments`` seen from the scheduler.

    Attributes:
        symbol: the project's symbol (the key of market_data), e.g. ``binance:BTC/USDT``.
        provider: ``yfinance``, ``ccxt``, ``csv``, ``synthetic``, or None (not scheduled).
        provider_symbol: the provider's spelling (``BTC/USDT``); None: same as ``symbol``.
        provider_exchange: ccxt: the exchange id (``binance``); None otherwise.
        timeframes: the timeframes the scheduled backfill loads, sorted as stored.
        active: False once removed (``mdq instruments remove``): no longer scheduled.
        asset_class: the instrument's asset class.
        calendar: its trading calendar.
        exchange: the venue (MIC or name), when known.
        quote_currency: the price currency, when known.
        calendar_source: how the calendar was decided (``mapping``, ``instruments``,
            ``suffix``, ``inferred``, ``asset_class``; None: set by hand), migration 061.
    """

    symbol: str
    provider: str | None
    provider_symbol: str | None
    provider_exchange: str | None
    timeframes: tuple[str, ...]
    active: bool
    asset_class: str
    calendar: str
    exchange: str | None = None
    quote_currency: str | None = None
    calendar_source: str | None = None

    @property
    def source_symbol(self) -> str:
        """The symbol as the provider spells it."""
        return self.provider_symbol or self.symbol


_COLUMNS = (
    "symbol, provider, provider_symbol, provider_exchange, timeframes, active, asset_class, "
    "calendar, exchange, quote_currency, calendar_source"
)


def _source(row: Sequence[object]) -> InstrumentSource:
    values = list(row)
    values[4] = tuple(values[4] or ())  # type: ignore[arg-type]
    return InstrumentSource(*values)  # type: ignore[arg-type]


def upsert_instrument_source(
    conn: psycopg.Connection,
    *,
    symbol: str,
    provider: str,
    provider_symbol: str | None,
    provider_exchange: str | None,
    timeframes: Sequence[str],
    asset_class: str,
    calendar: str,
) -> bool:
    """Insert an instrument with its source, or point an existing one at it (and re-activate
    it). An existing row keeps its asset class and calendar (the provider's metadata refreshes
    them at the next backfill).

    Returns:
        True when a row was inserted or changed.

    Raises:
        psycopg.errors.UniqueViolation: another instrument already has this provider series.
    """
    cur = conn.execute(
        """
        insert into instruments as i (
            symbol, asset_class, calendar, provider, provider_symbol, provider_exchange,
            timeframes, active
        )
        values (%s, %s, %s, %s, %s, %s, %s, true)
        on conflict (symbol) do update
        set provider = excluded.provider,
            provider_symbol = excluded.provider_symbol,
            provider_exchange = excluded.provider_exchange,
            timeframes = excluded.timeframes,
            active = true,
            updated_at = now()
        where (i.provider, i.provider_symbol, i.provider_exchange, i.timeframes, i.active)
            is distinct from (
                excluded.provider, excluded.provider_symbol, excluded.provider_exchange,
                excluded.timeframes, true
            )
        """,
        (
            symbol,
            asset_class,
            calendar,
            provider,
            provider_symbol,
            provider_exchange,
            list(timeframes),
        ),
    )
    return cur.rowcount > 0


def deactivate_instrument(conn: psycopg.Connection, symbol: str) -> bool | None:
    """Stop scheduling an instrument (``active = false``); its candles, findings and calendar
    stay.

    Returns:
        True when it was active, False when it was inactive already, None when unknown.
    """
    row = conn.execute(
        """
        with target as (
            select symbol, active from instruments where symbol = %s for update
        ),
        changed as (
            update instruments as i
            set active = false, updated_at = now()
            from target
            where i.symbol = target.symbol and target.active
            returning i.symbol
        )
        select target.active from target
        """,
        (symbol,),
    ).fetchone()
    return None if row is None else bool(row[0])


def list_instrument_sources(
    conn: psycopg.Connection, *, scheduled_only: bool = False, include_inactive: bool = True
) -> list[InstrumentSource]:
    """Instruments with their sources, sorted by symbol.

    Args:
        conn: an open connection.
        scheduled_only: only active instruments with a provider (what the daily backfill
            loads).
        include_inactive: also removed (inactive) instruments (ignored with
            ``scheduled_only``).
    """
    where = "true"
    if scheduled_only:
        where = "active and provider is not null"
    elif not include_inactive:
        where = "active"
    rows = conn.execute(
        f"select {_COLUMNS} from instruments where {where} order by symbol"  # noqa: S608 - constant
    ).fetchall()
    return [_source(r) for r in rows]


def find_by_provider_symbol(
    conn: psycopg.Connection, provider: str, provider_exchange: str | None, provider_symbol: str
) -> InstrumentSource | None:
    """The instrument registered for one provider series, if any."""
    row = conn.execute(
        f"""
        select {_COLUMNS} from instruments
        where provider = %s
            and coalesce(provider_exchange, '') = coalesce(%s, '')
            and coalesce(provider_symbol, symbol) = %s
        """,  # noqa: S608 - constant column list
        (provider, provider_exchange, provider_symbol),
    ).fetchone()
    return None if row is None else _source(row)
