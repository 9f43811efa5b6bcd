"""The ``ccxt`` provider: public OHLCV candles from any exchange ccxt supports (no API key).

Install with ``pip install 'mdq[ccxt]'``. One provider object serves one exchange (a ccxt id such
as ``binance``, ``coinbase``, ``kraken``: ``ccxt.exchanges`` lists them) and a set of symbols:
the project's symbol (e.g. ``binance:BTC/USDT``) mapped to the exchange's unified symbol
(``BTC/USDT``).

How a window ``[start, end)`` is read (:meth:`CcxtProvider.fetch_candles`):

* **Paging** by ``since``/``limit``: ``limit`` is the exchange's own maximum candles per request
  (``exchange.features[<market type>]['fetchOHLCV']['limit']``: Binance 1000, Kraken 720,
  Coinbase 300; :data:`DEFAULT_PAGE_LIMIT` when the exchange does not declare one), never more
  than the candles left in the window. The next page starts at the last candle's open time plus
  the timeframe (BH-03); candles a page repeats from before its ``since`` (an overlap) are kept,
  so the backfill counts and drops them as in-batch duplicates.
* **Rate limits**: ccxt's own rate limiter (``enableRateLimit=True``) spaces the requests by the
  exchange's ``rateLimit``; an HTTP 429 or any other ccxt ``NetworkError`` (timeout, exchange
  unavailable, DDoS protection) is raised as :class:`mdq.exceptions.ProviderError`, a transient
  error, so the backfill task is retried.
* **No progress** (BH-08 kind): a non-empty page holding no candle at or after its ``since``
  means the exchange ignores ``since`` (it returns the same page again); paging stops there and
  the result carries ``stalled_at``, so the series is recorded as failed ("no progress") and its
  watermark does not move past what was really read.
* **The forming candle**: exchanges return the candle that is still open as the last one;
  ``fetched_at`` is the exchange's own clock (the HTTP ``Date`` header of the last response,
  else the local clock), so the backfill stores that candle with ``is_final = false`` and
  replaces it on a later run.
* An unknown or delisted symbol (ccxt ``BadSymbol``) raises
  :class:`mdq.exceptions.SymbolNotAvailable` (terminal); other refusals (ccxt ``ExchangeError``)
  raise :class:`mdq.exceptions.ProviderRefused` (terminal).

Only the HTTP transport is ever replaced in tests: ``session`` takes a ``requests.Session``
(ccxt's own transport object), so ccxt's request building, rate limiter, error mapping and
OHLCV parsing all run.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd

from mdq.exceptions import (
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    SymbolNotAvailable,
)
from mdq.providers.base import FetchResult, Instrument, Series, empty_candles
from mdq.validation import parse_timeframe, timeframe_seconds
from mdq.windows import Window

logger = logging.getLogger(__name__)

PROVIDER = "ccxt"
#: Candles per request when the exchange does not declare its own maximum (a conservative
#: value most exchanges accept).
DEFAULT_PAGE_LIMIT = 100

T = TypeVar("T")


def default_symbol(exchange: str, provider_symbol: str) -> str:
    """The project's symbol for an exchange's symbol: ``<exchange>:<symbol>``.

    The exchange is part of the name because the same pair trades at different prices on
    different exchanges (``binance:BTC/USDT`` and ``kraken:BTC/USDT`` are two series).
    """
    return f"{exchange}:{provider_symbol}"


def _import_ccxt() -> Any:
    try:
        import ccxt
    except ImportError:
        raise ProviderConfigError(
            PROVIDER, "the ccxt package is not installed; install it with pip install 'mdq[ccxt]'"
        ) from None
    return ccxt


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _raw_candle_count(payload: Any) -> int:
    """How many candles an exchange's raw OHLCV answer held before ccxt filtered it: the
    length of the answer when it is a list of rows (Binance, Bitfinex, ...), or of the first
    list of rows found one or two levels inside a JSON object (``{"data": [...]}``,
    ``{"result": {"XXBTZUSD": [...]}}``); 0 when there is none."""
    if isinstance(payload, list):
        return len(payload) if all(isinstance(r, list | dict) for r in payload) else 0
    if isinstance(payload, dict):
        for value in payload.values():
            if isinstance(value, list) and value and isinstance(value[0], list):
                return len(value)
            if isinstance(value, dict):
                for inner in value.values():
                    if isinstance(inner, list) and inner and isinstance(inner[0], list):
                        return len(inner)
    return 0


class CcxtProvider:
    """Public OHLCV of one ccxt exchange.

    Args:
        exchange: the ccxt exchange id, e.g. ``binance``.
        symbols: the project's symbol → the exchange's unified symbol (``{"binance:BTC/USDT":
            "BTC/USDT"}``), or a list of exchange symbols (named by :func:`default_symbol`).
        timeframes: the timeframes it serves (the project's names; ccxt uses the same).
        session: a ``requests.Session`` for ccxt to send its HTTP requests with (tests replay
            recorded responses through it); default: ccxt's own.
        page_limit: candles per request; default: the exchange's declared maximum.

    Raises:
        ProviderConfigError: ccxt not installed, an unknown exchange id, or a timeframe the
            exchange does not offer (naming the accepted ones).
        UnsupportedTimeframe: a timeframe the project does not know.
    """

    name = PROVIDER

    def __init__(
        self,
        exchange: str,
        symbols: Mapping[str, str] | Sequence[str],
        timeframes: Sequence[str] = ("1h",),
        *,
        session: Any = None,
        page_limit: int | None = None,
    ) -> None:
        ccxt = _import_ccxt()
        if exchange not in ccxt.exchanges:
            raise ProviderConfigError(
                PROVIDER,
                f"unknown exchange {exchange!r}; expected a ccxt exchange id such as binance, "
                "coinbase, kraken (python -c 'import ccxt; print(ccxt.exchanges)' lists all)",
            )
        config: dict[str, Any] = {"enableRateLimit": True, "enableLastJsonResponse": True}
        if session is not None:
            config["session"] = session
        self.exchange_id = exchange
        self.exchange = getattr(ccxt, exchange)(config)
        self._ccxt = ccxt
        if isinstance(symbols, Mapping):
            self.symbols = dict(symbols)
        else:
            self.symbols = {default_symbol(exchange, s): s for s in symbols}
        self.timeframes = [parse_timeframe(t) for t in timeframes]
        offered = getattr(self.exchange, "timeframes", None) or {}
        missing = [t for t in self.timeframes if offered and t not in offered]
        if missing:
            raise ProviderConfigError(
                PROVIDER,
                f"{exchange} does not offer timeframe(s) {', '.join(missing)}; it offers "
                f"{', '.join(offered)}",
            )
        self.page_limit = page_limit
        # A ccxt exchange object is not thread-safe (its last response, rate-limiter state),
        # and its rate limiter serialises requests anyway: one series pages at a time.
        self._lock = threading.Lock()

    # -- errors ----------------------------------------------------------------------------

    def _call(self, what: str, symbol: str | None, fn: Callable[..., T], *args: Any) -> T:
        """Call ccxt, translating its errors into the project's (transient or terminal)."""
        ccxt = self._ccxt
        try:
            return fn(*args)
        except ccxt.DDoSProtection as exc:  # RateLimitExceeded is a subclass
            raise ProviderError(
                PROVIDER, f"{self.exchange_id} rate limit (HTTP 429) on {what}: {exc}"
            ) from exc
        except ccxt.NetworkError as exc:
            raise ProviderError(
                PROVIDER, f"{self.exchange_id} {type(exc).__name__} on {what}: {exc}"
            ) from exc
        except ccxt.BadSymbol as exc:
            raise SymbolNotAvailable(PROVIDER, symbol or "?", f"{self.exchange_id}: {exc}") from exc
        except ccxt.BaseError as exc:
            raise ProviderRefused(
                PROVIDER, f"{self.exchange_id} {type(exc).__name__} on {what}: {exc}"
            ) from exc

    def _markets(self) -> dict[str, Any]:
        markets = self._call("load_markets", None, self.exchange.load_markets)
        return dict(markets or {})

    def _fetched_at(self) -> datetime:
        """The exchange's clock at its last answer (HTTP ``Date``), else the local clock."""
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        value = headers.get("Date") or headers.get("date")
        if value:
            try:
                return email.utils.parsedate_to_datetime(value).astimezone(UTC)
            except (TypeError, ValueError):
                logger.warning("%s: unreadable Date header %r", self.exchange_id, value)
        return datetime.now(UTC)

    def _limit(self, market: Mapping[str, Any] | None) -> int:
        """The exchange's maximum candles per OHLCV request for this market's type."""
        if self.page_limit:
            return self.page_limit
        features = getattr(self.exchange, "features", None) or {}
        kind = (market or {}).get("type") or "spot"
        node = features.get(kind) or {}
        if kind in ("swap", "future"):
            node = node.get("linear" if (market or {}).get("linear") else "inverse") or {}
        limit = (node.get("fetchOHLCV") or {}).get("limit")
        return int(limit) if limit else DEFAULT_PAGE_LIMIT

    # -- the Provider protocol -------------------------------------------------------------

    def list_series(self) -> list[Series]:
        """Every (symbol, timeframe), sorted; instruments are ``crypto`` on ``24/7``.

        Loads the exchange's markets (one request set) for each symbol's quote currency; a
        symbol the exchange does not list is still served (its fetch then fails by name).

        Raises:
            ProviderError: the exchange could not be reached (transient).
            ProviderRefused: the exchange refused to list its markets.
        """
        with self._lock:
            markets = self._markets()
        out = []
        for symbol in sorted(self.symbols):
            provider_symbol = self.symbols[symbol]
            market = markets.get(provider_symbol) or {}
            quote = market.get("quote") or (
                provider_symbol.split("/")[1].split(":")[0] if "/" in provider_symbol else None
            )
            instrument = Instrument(symbol, "crypto", "24/7", self.exchange_id.upper(), quote)
            out.extend(Series(instrument, t) for t in self.timeframes)
        return out

    def describe(self, symbol: str) -> Instrument:
        """The instrument of one of this provider's symbols, checked against the exchange's
        market list (``mdq instruments add`` uses it).

        Raises:
            SymbolNotAvailable: the exchange does not list the symbol.
            ProviderError: the exchange could not be reached (transient).
        """
        provider_symbol = self.symbols[symbol]
        with self._lock:
            markets = self._markets()
        market = markets.get(provider_symbol)
        if market is None:
            raise SymbolNotAvailable(
                PROVIDER, provider_symbol, f"{self.exchange_id} does not list it"
            )
        return Instrument(symbol, "crypto", "24/7", self.exchange_id.upper(), market.get("quote"))

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """Candles of one series with ``window.start <= ts < window.end``, paged by ``since``.

        Returns:
            Candles in the order the exchange sent them (overlapping pages may repeat a
            candle); ``source_row`` is the 1-based position in that stream; prices in the
            quote currency, volume in the base currency. ``stalled_at`` is set when a page
            did not advance (see the module docstring). An unknown symbol of this provider
            gives an empty result.

        Raises:
            ProviderError: network error or rate limit (transient; retried by the flow).
            SymbolNotAvailable: the exchange does not know the symbol (delisted, misspelt).
            ProviderRefused: any other refusal from the exchange.
        """
        with self._lock:
            return self._fetch(symbol, parse_timeframe(timeframe), window)

    def _fetch(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        source = f"ccxt:{self.exchange_id}"
        provider_symbol = self.symbols.get(symbol)
        if provider_symbol is None or timeframe not in self.timeframes:
            return FetchResult(empty_candles(), [], datetime.now(UTC), source)
        markets = self._markets()
        if provider_symbol not in markets:
            raise SymbolNotAvailable(
                PROVIDER,
                provider_symbol,
                f"{self.exchange_id} does not list {provider_symbol} (delisted or misspelt)",
            )
        limit = self._limit(markets[provider_symbol])
        step = timeframe_seconds(timeframe) * 1000
        start_ms = int(window.start.timestamp() * 1000)
        end_ms = int(window.end.timestamp() * 1000)
        cursor = start_ms
        rows: list[list[Any]] = []
        stalled_at: datetime | None = None
        stall_reason: str | None = None
        page_no = 0
        fetched_at = datetime.now(UTC)
        while cursor < end_ms:
            want = min(limit, -(-(end_ms - cursor) // step))
            page = self._call(
                f"fetch_ohlcv {provider_symbol} {timeframe} since {_iso(cursor)}",
                provider_symbol,
                self.exchange.fetch_ohlcv,
                provider_symbol,
                timeframe,
                cursor,
                want,
            )
            page_no += 1
            fetched_at = self._fetched_at()
            answered = _raw_candle_count(getattr(self.exchange, "last_json_response", None))
            rows.extend(r for r in page if start_ms <= int(r[0]) < end_ms)
            fresh = [int(r[0]) for r in page if int(r[0]) >= cursor]
            if not fresh and (page or answered):
                # ccxt drops candles before `since` itself, so a repeated page arrives empty
                # although the exchange answered candles: that is no progress, not the end.
                stalled_at = datetime.fromtimestamp(cursor / 1000, UTC)
                stall_reason = (
                    f"no progress: page {page_no} asked since {_iso(cursor)}; "
                    f"{self.exchange_id} answered {max(len(page), answered)} candle(s), none at "
                    "or after since (it ignores since or repeats a page)"
                )
                logger.warning("%s %s/%s: %s", source, symbol, timeframe, stall_reason)
                break
            if not fresh:
                break  # nothing at or after `since`: the end of what the exchange holds
            cursor = max(fresh) + step
        return FetchResult(
            self._frame(rows, symbol, timeframe),
            [],
            fetched_at,
            source,
            stalled_at=stalled_at,
            stall_reason=stall_reason,
        )

    @staticmethod
    def _frame(rows: list[list[Any]], symbol: str, timeframe: str) -> pd.DataFrame:
        if not rows:
            return empty_candles()
        frame = pd.DataFrame(
            [r[:6] for r in rows], columns=["ts_ms", "open", "high", "low", "close", "volume"]
        )
        return pd.DataFrame(
            {
                "symbol": symbol,
                "asset_class": "crypto",
                "timeframe": timeframe,
                "ts": pd.to_datetime(frame["ts_ms"].astype("int64"), unit="ms", utc=True).astype(
                    "datetime64[ns, UTC]"
                ),
                "open": frame["open"].astype("float64"),
                "high": frame["high"].astype("float64"),
                "low": frame["low"].astype("float64"),
                "close": frame["close"].astype("float64"),
                "volume": frame["volume"].astype("float64"),
                "source_row": range(1, len(frame) + 1),
            }
        )
