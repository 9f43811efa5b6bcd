"""Reference data the checks join: corporate actions (splits, dividends)."""

from __future__ import annotations

from datetime import date

import psycopg

from mdq.providers.base import CorporateAction


def record_split(
    conn: psycopg.Connection, symbol: str, effective_date: date, ratio: float, *, source: str
) -> bool:
    """Insert or correct one split in ``corporate_actions`` (natural key: symbol, 'split',
    effective_date).

    Args:
        conn: an open connection (the caller commits).
        symbol: the instrument.
        effective_date: first session traded on the new basis (ex-date), exchange-local.
        ratio: new shares per old share (2:1 split = 2, 1:10 reverse split = 0.1); > 0.
        source: who recorded it (e.g. ``cli``).

    Returns:
        True when a row was inserted or its ratio changed, False when it was already there.

    Raises:
        ValueError: ratio is not a positive finite number, or equals 1 (not a split).
    """
    if not (ratio > 0 and ratio != float("inf")) or ratio == 1:
        raise ValueError(
            f"split ratio {ratio!r} not usable; expected a positive number other than 1"
        )
    cur = conn.execute(
        """
        insert into corporate_actions as ca (symbol, action_type, effective_date, ratio, source)
        values (%s, 'split', %s, %s, %s)
        on conflict (symbol, action_type, effective_date) do update
        set ratio = excluded.ratio, source = excluded.source
        where ca.ratio is distinct from excluded.ratio
        """,
        (symbol, effective_date, ratio, source),
    )
    return cur.rowcount > 0


def upsert_corporate_action(
    conn: psycopg.Connection, action: CorporateAction, *, source: str
) -> bool:
    """Insert or correct one split or dividend (natural key: symbol, action_type,
    effective_date), as a provider reported it.

    Args:
        conn: an open connection (the caller's transaction).
        action: the action; a split's ratio is new shares per old share, a dividend's cash
            amount is per share as paid, in ``action.currency``.
        source: where it came from (``yfinance:AAPL``).

    Returns:
        True when a row was inserted or one of its values changed; a rerun returns False.
    """
    cur = conn.execute(
        """
        insert into corporate_actions as ca (
            symbol, action_type, effective_date, ratio, cash_amount, currency, source
        )
        values (%s, %s, %s, %s, %s, %s, %s)
        on conflict (symbol, action_type, effective_date) do update
        set ratio = excluded.ratio,
            cash_amount = excluded.cash_amount,
            currency = coalesce(excluded.currency, ca.currency),
            source = excluded.source
        where (ca.ratio, ca.cash_amount, ca.currency)
            is distinct from (
                excluded.ratio, excluded.cash_amount, coalesce(excluded.currency, ca.currency)
            )
        """,
        (
            action.symbol,
            action.action_type,
            action.effective_date,
            action.ratio,
            action.cash_amount,
            action.currency,
            source,
        ),
    )
    return cur.rowcount > 0


def symbol_is_known(conn: psycopg.Connection, symbol: str) -> bool:
    """True when ``instruments`` or ``market_data`` has the symbol."""
    row = conn.execute(
        """
        select exists (select 1 from instruments where symbol = %s)
            or exists (select 1 from market_data where symbol = %s)
        """,
        (symbol, symbol),
    ).fetchone()
    return bool(row and row[0])


def list_corporate_actions(
    conn: psycopg.Connection, symbol: str | None = None
) -> list[tuple[str, str, date, float | None, float | None, str | None, str | None]]:
    """Corporate actions sorted by symbol, effective date and type: (symbol, action_type,
    effective_date, ratio, cash_amount, currency, source)."""
    rows = conn.execute(
        """
        select symbol, action_type, effective_date, ratio::float, cash_amount::float, currency,
            source
        from corporate_actions
        where %(symbol)s::text is null or symbol = %(symbol)s
        order by symbol, effective_date, action_type
        """,
        {"symbol": symbol},
    ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def delete_corporate_action(
    conn: psycopg.Connection, symbol: str, action_type: str, effective_date: date
) -> bool:
    """Delete one corporate action by its natural key; True when a row was deleted."""
    cur = conn.execute(
        """
        delete from corporate_actions
        where symbol = %s and action_type = %s and effective_date = %s
        """,
        (symbol, action_type, effective_date),
    )
    return cur.rowcount > 0
