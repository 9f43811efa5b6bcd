"""The ``yfinance`` provider: Yahoo Finance candles (stocks, ETFs, indices, FX, crypto).

Install with ``pip install 'mdq[yfinance]'``. Symbols are Yahoo's tickers (``AAPL``,
``VOD.L``, ``^GSPC``, ``EURUSD=X``, ``BTC-USD``); the project's symbol is the same ticker unless
an ``instruments`` row maps another name to it.

**Prices are stored unadjusted.** yfinance is called with ``auto_adjust=False``,
``back_adjust=False`` and ``repair=False``, so dividends are never folded into prices and no
value is "repaired". Yahoo's chart API itself still returns open/high/low/close and volume
*adjusted for splits that happened after each candle* (its ``adjclose`` is the split *and*
dividend adjusted series, dropped here). This provider undoes that: it reads every split from
the window's start up to now (one daily request, ``events=div,splits``) and multiplies the
prices of each candle before a split's ex-date by the split ratio (dividing its volume), so a
candle holds the prices that traded on its day (AAPL closed at 499.23 on 2020-08-28, the session
before its 4:1 split, not 124.81). The splits and the cash dividends (also un-split, per share
as paid) are returned as :class:`~mdq.providers.base.CorporateAction` rows for
``corporate_actions``, so the checks neutralise the split instead of calling it a crash (BH-12).

**Instruments**: Yahoo's chart metadata gives the instrument type (``EQUITY`` → ``stock``,
``ETF`` → ``etf``, ``INDEX`` → ``index``, ``CURRENCY`` → ``forex``, ``CRYPTOCURRENCY`` →
``crypto``, ``MUTUALFUND`` → ``fund``, ``FUTURE`` → ``future``), the exchange
(:data:`YAHOO_EXCHANGES` maps Yahoo's exchange code to the venue's MIC and its
exchange_calendars calendar; FX → ``FX``, crypto → ``24/7``) and the price currency.

**Timestamps**: daily candles are stamped at 00:00 exchange-local time of the session date, in
UTC (00:00Z for FX and crypto), like every daily candle in mdq; intraday candles at their open
instant (Yahoo's hourly bars start at the regular open, 09:30, 10:30, ... New York). Only the
regular session is read (``prepost=False``).

**Yahoo's limits** (:data:`MAX_AGE`, :data:`MAX_SPAN`; Yahoo answers HTTP 422 beyond them):
1-minute candles only for the last 30 days and at most 8 days per request (this provider asks
for 7-day pieces); 5/15/30-minute candles for the last 60 days; hourly candles for the last 730
days; daily candles for the whole history. There is no 4-hour interval. A window reaching
further back is refused (:class:`~mdq.exceptions.ProviderRefused`) rather than silently cut.
Yahoo rate-limits by IP without a published quota; a 429 is raised as
:class:`~mdq.exceptions.ProviderError` (transient, retried by the flow).

**Empty answers**: Yahoo answering HTTP 200 with the instrument's metadata but no candle in the
window (an illiquid stock's quiet minutes, a holiday) is a sparse feed's authoritative "no data"
(BH-07): the result says ``source_confirms_empty``. A ticker Yahoo does not know (delisted,
renamed) raises :class:`~mdq.exceptions.SymbolNotAvailable`.

Only the HTTP transport is replaced in tests: ``session`` takes a ``requests.Session`` (yfinance
accepts it in place of its default ``curl_cffi`` session), so yfinance's own request, cookie and
parsing code runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mdq.exceptions import (
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    SymbolNotAvailable,
    UnsupportedTimeframe,
)
from mdq.providers.base import CorporateAction, FetchResult, Instrument, Series, empty_candles
from mdq.validation import parse_timeframe
from mdq.windows import Window

logger = logging.getLogger(__name__)

PROVIDER = "yfinance"

#: The project's timeframe → Yahoo's interval (Yahoo has no 4-hour interval).
INTERVALS: dict[str, str] = {
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "1d": "1d",
}
#: How far back Yahoo serves each intraday interval (Yahoo's chart API answers HTTP 422
#: "The requested range must be within the last N days" beyond it; yfinance documents the same).
MAX_AGE: dict[str, timedelta] = {
    "1m": timedelta(days=30),
    "5m": timedelta(days=60),
    "15m": timedelta(days=60),
    "30m": timedelta(days=60),
    "1h": timedelta(days=730),
}
#: Longest window of one request (Yahoo: 1-minute requests span at most 8 days).
MAX_SPAN: dict[str, timedelta] = {"1m": timedelta(days=7)}

#: Yahoo's instrumentType → the project's asset class.
ASSET_CLASSES: dict[str, str] = {
    "EQUITY": "stock",
    "ETF": "etf",
    "INDEX": "index",
    "CURRENCY": "forex",
    "CRYPTOCURRENCY": "crypto",
    "MUTUALFUND": "fund",
    "FUTURE": "future",
}

#: Yahoo's exchange code (chart metadata ``exchangeName``) → (venue MIC, exchange_calendars
#: code). US venues and US indices trade the NYSE sessions (XNYS). Codes from Yahoo's
#: "Exchanges and data providers" list; MICs from ISO 10383.
YAHOO_EXCHANGES: dict[str, tuple[str, str]] = {
    "NMS": ("XNAS", "XNYS"),
    "NGM": ("XNAS", "XNYS"),
    "NCM": ("XNAS", "XNYS"),
    "NAS": ("XNAS", "XNYS"),
    "NYQ": ("XNYS", "XNYS"),
    "ASE": ("XASE", "XNYS"),
    "PCX": ("ARCX", "XNYS"),
    "BTS": ("BATS", "XNYS"),
    "SNP": ("SNP", "XNYS"),
    "DJI": ("DJI", "XNYS"),
    "NIM": ("XNAS", "XNYS"),
    "CXI": ("XCBO", "XNYS"),
    "LSE": ("XLON", "XLON"),
    "TOR": ("XTSE", "XTSE"),
    "GER": ("XETR", "XETR"),
    "FRA": ("XFRA", "XFRA"),
    "PAR": ("XPAR", "XPAR"),
    "AMS": ("XAMS", "XAMS"),
    "EBS": ("XSWX", "XSWX"),
    "MCE": ("XMAD", "XMAD"),
    "MIL": ("XMIL", "XMIL"),
    "STO": ("XSTO", "XSTO"),
    "JPX": ("XTKS", "XTKS"),
    "HKG": ("XHKG", "XHKG"),
    "ASX": ("XASX", "XASX"),
    "KSC": ("XKRX", "XKRX"),
    "NSI": ("XNSE", "XBOM"),
    "BSE": ("XBOM", "XBOM"),
    "SAO": ("BVMF", "BVMF"),
}


def _import_yfinance() -> Any:
    try:
        import yfinance
    except ImportError:
        raise ProviderConfigError(
            PROVIDER,
            "the yfinance package is not installed; install it with pip install 'mdq[yfinance]'",
        ) from None
    return yfinance


def instrument_from_metadata(symbol: str, meta: Mapping[str, Any]) -> Instrument:
    """The instrument Yahoo's chart metadata describes.

    Args:
        symbol: the project's symbol.
        meta: Yahoo's ``chart.result[0].meta`` (``instrumentType``, ``exchangeName``,
            ``currency``, ...).

    Returns:
        The instrument; ``calendar`` is None for an exchange not in :data:`YAHOO_EXCHANGES`
        (the backfill then uses the asset class's default calendar).
    """
    kind = str(meta.get("instrumentType") or "")
    code = meta.get("exchangeName")
    asset_class = ASSET_CLASSES.get(kind, kind.lower() or "stock")
    exchange, calendar = YAHOO_EXCHANGES.get(str(code), (code, None))
    if kind == "CURRENCY":
        exchange, calendar = None, "FX"
    elif kind == "CRYPTOCURRENCY":
        exchange, calendar = None, "24/7"
    if calendar is None:
        logger.warning(
            "yfinance %s: exchange %r has no known trading calendar; the asset class's "
            "default is used",
            symbol,
            code,
        )
    return Instrument(symbol, asset_class, calendar, exchange, meta.get("currency") or None)


class YFinanceProvider:
    """Candles from Yahoo Finance through yfinance.

    Args:
        symbols: the project's symbol → Yahoo's ticker, or a list of tickers (used as the
            project's symbols too).
        timeframes: the timeframes it serves: any of :data:`INTERVALS`.
        session: a ``requests`` or ``curl_cffi`` session for yfinance's HTTP requests
            (tests replay recorded responses through one); default: yfinance's own.
        now: the fetch time (UTC-aware) for Yahoo's look-back limits and for un-adjusting
            (splits up to ``now``); default: the real time of each fetch.

    Raises:
        ProviderConfigError: yfinance is not installed, or a timeframe Yahoo does not offer.
        UnsupportedTimeframe: a timeframe the project does not know.
    """

    name = PROVIDER

    def __init__(
        self,
        symbols: Mapping[str, str] | Sequence[str],
        timeframes: Sequence[str] = ("1d",),
        *,
        session: Any = None,
        now: datetime | None = None,
    ) -> None:
        self._yf = _import_yfinance()
        # mdq needs yfinance's errors raised (a delisted ticker, a rate limit), not logged.
        self._yf.config.debug.hide_exceptions = False
        self.symbols = dict(symbols) if isinstance(symbols, Mapping) else {s: s for s in symbols}
        self.timeframes = [parse_timeframe(t) for t in timeframes]
        unsupported = [t for t in self.timeframes if t not in INTERVALS]
        if unsupported:
            raise ProviderConfigError(
                PROVIDER,
                str(UnsupportedTimeframe(unsupported[0], tuple(INTERVALS))).replace(
                    "not supported", "not offered by Yahoo"
                ),
            )
        self.session = session
        self.now = now
        self._metadata: dict[str, Mapping[str, Any]] = {}

    def _ticker(self, ticker: str) -> Any:
        if self.session is not None:
            return self._yf.Ticker(ticker, session=self.session)
        return self._yf.Ticker(ticker)

    def _translate(self, exc: Exception, ticker: str, what: str) -> Exception:
        """yfinance's and the transport's errors → the project's (transient or terminal)."""
        from yfinance import exceptions as yfe

        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            return SymbolNotAvailable(
                PROVIDER, ticker, f"Yahoo answered 404 (delisted, renamed or misspelt) on {what}"
            )
        if isinstance(exc, yfe.YFRateLimitError) or status == 429:
            return ProviderError(PROVIDER, f"Yahoo rate limit (HTTP 429) on {what}")
        if isinstance(exc, yfe.YFTzMissingError):
            return SymbolNotAvailable(
                PROVIDER, ticker, "Yahoo knows no such ticker (delisted, renamed or misspelt)"
            )
        if isinstance(exc, yfe.YFPricesMissingError) and exc.yahoo_reason:
            return ProviderRefused(PROVIDER, f"Yahoo on {what}: {exc.yahoo_reason}")
        if isinstance(exc, yfe.YFException):
            return ProviderError(PROVIDER, f"{type(exc).__name__} on {what}: {exc}")
        return ProviderError(PROVIDER, f"{type(exc).__name__} on {what}: {exc}")

    def _history(
        self, ticker: Any, start: datetime, end: datetime | None, interval: str
    ) -> pd.DataFrame | None:
        """One yfinance ``history`` call: unadjusted, no repair, regular session, events on.

        Returns:
            yfinance's frame (index tz-aware in the exchange's zone), or None when Yahoo
            answered successfully with no candle in ``[start, end)``.
        """
        from yfinance import exceptions as yfe

        what = f"{ticker.ticker} {interval} from {start.isoformat()}"
        try:
            frame = ticker.history(
                start=start,
                end=end,
                interval=interval,
                auto_adjust=False,
                back_adjust=False,
                repair=False,
                actions=True,
                prepost=False,
                keepna=False,
                rounding=False,
            )
        except yfe.YFPricesMissingError as exc:
            if exc.yahoo_reason:
                raise self._translate(exc, ticker.ticker, what) from exc
            return None
        except Exception as exc:  # noqa: BLE001 - every transport/yfinance error is translated
            raise self._translate(exc, ticker.ticker, what) from exc
        meta = ticker.get_history_metadata()
        self._metadata[ticker.ticker] = {k: meta[k] for k in meta if k != "tradingPeriods"}
        return frame if len(frame) else None

    def metadata(self, ticker: str) -> Mapping[str, Any]:
        """Yahoo's chart metadata of a ticker (cached per provider).

        Raises:
            SymbolNotAvailable: Yahoo does not know the ticker.
            ProviderError: Yahoo could not be reached (transient).
        """
        if ticker not in self._metadata:
            t = self._ticker(ticker)
            try:
                meta = t.get_history_metadata()
            except Exception as exc:  # noqa: BLE001 - translated
                from yfinance import exceptions as yfe

                if isinstance(exc, yfe.YFPricesMissingError) and exc.yahoo_reason:
                    raise SymbolNotAvailable(PROVIDER, ticker, exc.yahoo_reason) from exc
                raise self._translate(exc, ticker, f"{ticker} metadata") from exc
            # not dict(meta): reading its lazy 'tradingPeriods' would cost an intraday request
            self._metadata[ticker] = {k: meta[k] for k in (meta or {}) if k != "tradingPeriods"}
        return self._metadata[ticker]

    def describe(self, symbol: str) -> Instrument:
        """The instrument Yahoo describes for one of this provider's symbols (``mdq
        instruments add`` uses it).

        Raises:
            SymbolNotAvailable: Yahoo does not know the ticker.
            ProviderError: Yahoo could not be reached (transient).
        """
        ticker = self.symbols[symbol]
        meta = self.metadata(ticker)
        if not meta.get("exchangeTimezoneName"):
            raise SymbolNotAvailable(PROVIDER, ticker, "Yahoo returned no metadata for it")
        return instrument_from_metadata(symbol, meta)

    def list_series(self) -> list[Series]:
        """Every (symbol, timeframe), sorted, with the instrument Yahoo describes.

        A ticker whose metadata cannot be read is listed without (calendar None): its fetch
        then fails by name, as that series' failure.
        """
        out = []
        for symbol in sorted(self.symbols):
            try:
                instrument = instrument_from_metadata(symbol, self.metadata(self.symbols[symbol]))
            except (ProviderError, SymbolNotAvailable, ProviderRefused) as exc:
                logger.warning("yfinance %s: no metadata: %s", symbol, exc)
                continue
            out.extend(Series(instrument, t) for t in self.timeframes)
        return out

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """Unadjusted candles of one series with ``window.start <= ts < window.end``.

        Returns:
            Candles sorted by ``ts``; ``source_row`` is the 1-based row in Yahoo's answer;
            prices in the instrument's currency, volume in shares (units for FX and crypto).
            ``corporate_actions`` holds the splits and dividends from ``window.start`` to now.

        Raises:
            ProviderRefused: the window reaches further back than Yahoo serves the interval,
                or Yahoo refused the request with a reason.
            SymbolNotAvailable: Yahoo does not know the ticker (delisted, renamed).
            ProviderError: Yahoo could not be reached or rate-limited us (transient).
        """
        timeframe = parse_timeframe(timeframe)
        now = self.now or datetime.now(UTC)
        ticker_name = self.symbols.get(symbol)
        source = f"yfinance:{ticker_name}"
        if ticker_name is None or timeframe not in self.timeframes:
            return FetchResult(empty_candles(), [], now, source)
        interval = INTERVALS[timeframe]
        oldest = now - MAX_AGE[timeframe] if timeframe in MAX_AGE else None
        if oldest is not None and window.start < oldest:
            raise ProviderRefused(
                PROVIDER,
                f"Yahoo serves {timeframe} candles only for the last "
                f"{MAX_AGE[timeframe].days} days (since {oldest.isoformat()}); the window "
                f"{window} starts before; use 1h or 1d for older history",
            )
        ticker = self._ticker(ticker_name)
        # Daily candles from the window's start to now: its splits un-adjust the prices, and
        # for a daily series they are the candles themselves.
        daily = self._history(ticker, window.start, self.now, "1d")
        meta = self._metadata.get(ticker_name) or {}
        instrument = instrument_from_metadata(symbol, meta) if meta else None
        actions = _corporate_actions(symbol, daily, meta.get("currency"))
        splits = [(a.effective_date, a.ratio or 1.0) for a in actions if a.action_type == "split"]
        if timeframe == "1d":
            parts = [daily] if daily is not None else []
        else:
            parts = []
            span = MAX_SPAN.get(timeframe, window.end - window.start)
            start = window.start
            while start < window.end:
                end = min(start + span, window.end)
                part = self._history(ticker, start, end, interval)
                if part is not None:
                    parts.append(part)
                start = end
        calendar = instrument.calendar if instrument else None
        frame = _candles(symbol, instrument, timeframe, parts, splits, calendar, window)
        fetched_at = datetime.now(UTC) if self.now is None else self.now
        return FetchResult(
            frame,
            [],
            fetched_at,
            source,
            source_confirms_empty=len(frame) == 0,
            corporate_actions=tuple(actions),
        )


def _session_dates(index: pd.DatetimeIndex) -> np.ndarray:
    """The exchange-local session date of each row of a yfinance frame."""
    return np.array(index.date)


def _corporate_actions(
    symbol: str, daily: pd.DataFrame | None, currency: str | None
) -> list[CorporateAction]:
    """Splits and dividends of a yfinance daily frame, dividends un-split (as paid)."""
    if daily is None or not len(daily):
        return []
    dates = _session_dates(daily.index)
    split_col = daily.get("Stock Splits", pd.Series(0.0, index=daily.index)).fillna(0.0)
    div_col = daily.get("Dividends", pd.Series(0.0, index=daily.index)).fillna(0.0)
    splits = [(d, float(r)) for d, r in zip(dates, split_col, strict=True) if r and r != 1.0]
    actions = [CorporateAction(symbol, "split", d, ratio=r) for d, r in splits]
    for d, amount in zip(dates, div_col, strict=True):
        if amount:
            factor = _split_factor(d, splits)
            actions.append(
                CorporateAction(
                    symbol, "dividend", d, cash_amount=float(amount) * factor, currency=currency
                )
            )
    return sorted(actions, key=lambda a: (a.effective_date, a.action_type))


def _split_factor(session: date, splits: list[tuple[date, float]]) -> float:
    """Product of the ratios of the splits effective after ``session``: what Yahoo divided
    that session's prices by (and multiplied its volume by)."""
    factor = 1.0
    for effective, ratio in splits:
        if effective > session:
            factor *= ratio
    return factor


def _candles(
    symbol: str,
    instrument: Instrument | None,
    timeframe: str,
    parts: list[pd.DataFrame],
    splits: list[tuple[date, float]],
    calendar: str | None,
    window: Window,
) -> pd.DataFrame:
    """yfinance frames → the canonical candle frame, un-adjusted, stamped, in the window."""
    if not parts:
        return empty_candles()
    raw = pd.concat(parts)
    raw = raw[~raw.index.duplicated(keep="last")].sort_index()
    dates = _session_dates(raw.index)
    factor = np.array([_split_factor(d, splits) for d in dates], dtype="float64")
    if timeframe == "1d" and calendar in ("24/7", "FX"):
        ts = pd.DatetimeIndex(pd.to_datetime(dates)).tz_localize("UTC")
    else:
        ts = raw.index.tz_convert("UTC")
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "asset_class": instrument.asset_class if instrument else "stock",
            "timeframe": timeframe,
            "ts": ts.astype("datetime64[ns, UTC]"),
            "open": raw["Open"].to_numpy(dtype="float64") * factor,
            "high": raw["High"].to_numpy(dtype="float64") * factor,
            "low": raw["Low"].to_numpy(dtype="float64") * factor,
            "close": raw["Close"].to_numpy(dtype="float64") * factor,
            "volume": raw["Volume"].to_numpy(dtype="float64") / factor,
            "source_row": np.arange(1, len(raw) + 1, dtype="int64"),
        }
    )
    inside = (frame["ts"] >= pd.Timestamp(window.start)) & (frame["ts"] < pd.Timestamp(window.end))
    return frame[inside].reset_index(drop=True)
