"""The provider interface: one small Protocol every candle source implements.

A provider answers two questions: which series it knows (with the instrument's metadata where
the source knows it) and which candles lie in a window. It returns UTC-aware, parsed candles and
the rows it could not parse (with a reason); it never writes to the database. Validation of the
values (prices, grid) happens in :mod:`mdq.validation` before writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import pandas as pd

from mdq.validation import CANONICAL_COLUMNS, Rejected
from mdq.windows import Window

#: Columns of :attr:`FetchResult.candles`, in order.
CANDLE_FRAME_COLUMNS: tuple[str, ...] = (*CANONICAL_COLUMNS, "source_row")


@dataclass(frozen=True)
class Instrument:
    """What a source knows about one instrument (a row of ``instruments``).

    Attributes:
        symbol: the ticker, e.g. ``AAPL``.
        asset_class: ``stock``, ``crypto``, ``forex``, ...
        calendar: an exchange_calendars code (``XNYS``), ``24/7`` or ``FX``; None when the
            source does not say (the backfill then takes the instruments row's calendar, else
            the asset class's default: stock → XNYS, forex → FX, crypto → 24/7).
        exchange: exchange MIC or venue name (``XNYS``, ``COINBASE``), or None.
        quote_currency: currency prices are quoted in, or None.
        calendar_source: how the calendar was decided (``mapping``, ``instruments``,
            ``suffix``, ``inferred``, ``asset_class``; see :mod:`mdq.instrument_calendars`), or
            None when unknown (a row set by hand).
    """

    symbol: str
    asset_class: str
    calendar: str | None
    exchange: str | None = None
    quote_currency: str | None = None
    calendar_source: str | None = None


@dataclass(frozen=True)
class Series:
    """One (symbol, timeframe) a provider can serve.

    Attributes:
        instrument: the instrument.
        timeframe: e.g. ``1h``.
        first_ts: open time of the first candle the source holds (UTC), when known.
        last_ts: open time of the last candle the source holds (UTC), when known.
    """

    instrument: Instrument
    timeframe: str
    first_ts: datetime | None = None
    last_ts: datetime | None = None


@dataclass(frozen=True)
class CorporateAction:
    """A split or a cash dividend the source reported (a row of ``corporate_actions``).

    Attributes:
        symbol: the instrument (the project's symbol, not the provider's).
        action_type: ``split`` or ``dividend``.
        effective_date: ex-date: the first session traded on the new basis, exchange-local.
        ratio: split: new shares per old share (4:1 = 4.0, 1:10 reverse = 0.1); None otherwise.
        cash_amount: dividend: cash per share as it was paid (not adjusted for later splits),
            in ``currency``; None otherwise.
        currency: the dividend's currency, when known.
    """

    symbol: str
    action_type: str
    effective_date: date
    ratio: float | None = None
    cash_amount: float | None = None
    currency: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """A provider's answer for one (symbol, timeframe, window).

    Attributes:
        candles: canonical columns plus ``source_row`` (1-based row in the source, -1 when
            unknown); ``ts`` is ``datetime64[ns, UTC]`` inside the window ``[start, end)``;
            prices in quote currency, volume in base units; any order, may hold duplicates.
        rejected: rows the provider could not parse (bad number, bad or naive timestamp),
            each with its reason and raw row.
        fetched_at: when the source answered (UTC); candles with ``ts + timeframe`` after it
            had not closed yet.
        source: where the rows came from (file name, ``synthetic:seed=1``, URL, ...).
        source_confirms_empty: True when the source states, authoritatively, that an empty
            answer means no candles exist there (a sparse feed, BH-07).
        raw: the source rows as given, indexed like ``candles`` (for quarantine), or None.
        outside_window: valid rows of this series the source holds outside the window (not
            returned; a file knows them, an API does not: 0).
        corporate_actions: splits and dividends the source reported inside the window (written
            to ``corporate_actions`` with the candles).
        stalled_at: set when the source stopped advancing before ``window.end`` (a page that
            did not move past its ``since``, BH-08 kind): the cursor it got stuck at (UTC).
            Candles before it are valid, nothing at or after it was loaded, and the series
            counts as failed ("no progress").
        stall_reason: what the source did, when ``stalled_at`` is set.
    """

    candles: pd.DataFrame
    rejected: list[Rejected]
    fetched_at: datetime
    source: str
    source_confirms_empty: bool = False
    raw: pd.DataFrame | None = field(default=None, repr=False)
    outside_window: int = 0
    corporate_actions: tuple[CorporateAction, ...] = ()
    stalled_at: datetime | None = None
    stall_reason: str | None = None


class Provider(Protocol):
    """A source of candles. Implementations: ``csv`` (files), ``synthetic`` (generated),
    ``yfinance`` (Yahoo Finance), ``ccxt`` (crypto exchanges).

    Attributes:
        name: short provider name, e.g. ``csv``.
    """

    name: str

    def list_series(self) -> list[Series]:
        """The series this provider can serve, sorted by symbol then timeframe.

        Raises:
            ProviderError: the source could not be read (transient).
            ProviderConfigError: the provider is misconfigured (terminal).
        """
        ...

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """Candles of one series with ``window.start <= ts < window.end``.

        An empty answer is a result, not an error.

        Raises:
            ProviderError: the source could not be read (transient).
            ProviderConfigError: the provider is misconfigured (terminal).
        """
        ...


def empty_candles() -> pd.DataFrame:
    """An empty frame with the columns and dtypes of :attr:`FetchResult.candles`."""
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in CANDLE_FRAME_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = pd.Series(dtype="float64")
    frame["source_row"] = pd.Series(dtype="int64")
    return frame
