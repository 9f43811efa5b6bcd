"""The yfinance and ccxt providers against recorded vendor answers (no network, no database).

Only the HTTP transport is replaced (:mod:`tests.http_replay`): yfinance's and ccxt's request
building, error mapping and parsing run as in production. Each fault kind of issue 13 is one
named test; the recordings are under ``tests/fixtures/http/``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from mdq.exceptions import (
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    SymbolNotAvailable,
)
from mdq.providers.base import CorporateAction
from mdq.providers.ccxt_provider import CcxtProvider
from mdq.providers.yfinance_provider import YFinanceProvider, instrument_from_metadata
from mdq.validation import finality
from mdq.windows import Window
from tests.http_replay import Replay
from tests.vendor_fixtures import fresh_yfinance  # noqa: F401 - pytest fixture

KLINES = "https://api.binance.com/api/v3/klines"
BTC = "binance:BTC/USDT"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def binance(
    recording: str, symbol: str = "BTC/USDT", **kwargs: object
) -> tuple[CcxtProvider, Replay]:
    replay = Replay.load("ccxt/binance_markets", f"ccxt/{recording}")
    return CcxtProvider("binance", [symbol], ["1h"], session=replay.session(), **kwargs), replay


def iso(frame: pd.DataFrame) -> list[str]:
    return [t.isoformat() for t in frame["ts"]]


def since(replay: Replay) -> list[tuple[str, str]]:
    return [
        (
            datetime.fromtimestamp(int(s.params["startTime"]) / 1000, UTC).strftime("%H:%M"),
            s.params["limit"],
        )
        for s in replay.requests_to(KLINES)
    ]


# -- ccxt ----------------------------------------------------------------------------------------


def test_ccxt_lists_binance_markets_as_crypto_on_24_7_with_the_quote_currency() -> None:
    provider, replay = binance("binance_klines_btcusdt_1h")
    [series] = provider.list_series()
    assert (series.instrument, series.timeframe) == (
        provider.describe(BTC),
        "1h",
    )
    assert series.instrument.__dict__ == {
        "symbol": BTC,
        "asset_class": "crypto",
        "calendar": "24/7",
        "exchange": "BINANCE",
        "quote_currency": "USDT",
        "calendar_source": None,
    }
    assert replay.unmatched == []


def test_ccxt_asks_at_most_the_candles_left_under_the_exchange_limit() -> None:
    provider, replay = binance("binance_klines_btcusdt_1h")
    result = provider.fetch_candles(BTC, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6)))
    assert since(replay) == [("00:00", "6")]  # binance allows 1000; 6 are left in the window
    assert result.candles["close"].tolist() == [
        63498.01,
        63812.45,
        63702.0,
        63430.87,
        63560.24,
        63901.77,
    ]
    assert result.candles["volume"].iloc[0] == 1021.53917
    assert result.fetched_at == utc(2024, 5, 7, 9, 12, 31)  # the exchange's Date header
    assert (result.source, result.stalled_at) == ("ccxt:binance", None)


def test_ccxt_pagination_with_overlap_next_since_is_last_plus_timeframe() -> None:
    provider, replay = binance("binance_klines_overlap", page_limit=3)
    result = provider.fetch_candles(BTC, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6)))
    # page 2 asked since 03:00 and the exchange answered from 02:00: ccxt drops the repeat
    assert since(replay) == [("00:00", "3"), ("03:00", "3"), ("05:00", "1")]
    assert iso(result.candles) == [f"2024-05-06T0{h}:00:00+00:00" for h in range(6)]
    assert result.stalled_at is None


def test_ccxt_forming_last_candle_is_not_final_at_the_exchange_clock() -> None:
    provider, _ = binance("binance_klines_forming")
    result = provider.fetch_candles(BTC, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 4)))
    assert result.fetched_at == utc(2024, 5, 6, 3, 25, 10)
    final = finality(result.candles["ts"], "1h", pd.Timestamp(result.fetched_at))
    assert final.tolist() == [True, True, True, False]
    assert result.candles["volume"].iloc[-1] == 402.07755  # partial: still trading


def test_ccxt_stuck_since_is_no_progress_not_the_end_of_data() -> None:
    provider, replay = binance("binance_klines_stuck_since", page_limit=3)
    result = provider.fetch_candles(BTC, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6)))
    assert since(replay) == [("00:00", "3"), ("03:00", "3")]  # it stops; no endless loop
    assert len(result.candles) == 3
    assert result.stalled_at == utc(2024, 5, 6, 3)
    assert result.stall_reason == (
        "no progress: page 2 asked since 2024-05-06T03:00:00+00:00; binance answered 3 "
        "candle(s), none at or after since (it ignores since or repeats a page)"
    )


def test_ccxt_429_is_a_transient_provider_error_then_the_retry_succeeds() -> None:
    provider, replay = binance("binance_klines_429")
    window = Window(utc(2024, 5, 6), utc(2024, 5, 6, 6))
    with pytest.raises(ProviderError, match=r"rate limit \(HTTP 429\)") as raised:
        provider.fetch_candles(BTC, "1h", window)
    assert raised.value.transient is True
    result = provider.fetch_candles(BTC, "1h", window)
    assert len(result.candles) == 6
    assert [s.status for s in replay.requests_to(KLINES)] == [429, 200]


def test_ccxt_delisted_symbol_is_a_terminal_error_naming_it() -> None:
    provider, _ = binance("binance_klines_delisted", symbol="LUNA/USDT")
    with pytest.raises(SymbolNotAvailable, match="'LUNA/USDT' not available") as raised:
        provider.fetch_candles(
            "binance:LUNA/USDT", "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6))
        )
    assert raised.value.transient is False
    assert "Invalid symbol" in raised.value.reason


def test_ccxt_symbol_the_exchange_does_not_list_is_refused_before_any_klines_request() -> None:
    provider, replay = binance("binance_klines_btcusdt_1h", symbol="NOPE/USDT")
    with pytest.raises(SymbolNotAvailable, match="binance does not list NOPE/USDT"):
        provider.fetch_candles(
            "binance:NOPE/USDT", "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6))
        )
    assert replay.requests_to(KLINES) == []


@pytest.mark.parametrize(
    ("exchange", "timeframes", "message"),
    [
        pytest.param("binanse", ["1h"], "unknown exchange 'binanse'", id="unknown-exchange"),
        pytest.param("kraken", ["1m", "4h"], None, id="kraken-offers-1m-4h"),
        pytest.param("coinbase", ["4h"], "coinbase does not offer timeframe(s) 4h", id="no-4h"),
    ],
)
def test_ccxt_configuration_errors_name_the_bad_value(
    exchange: str, timeframes: list[str], message: str | None
) -> None:
    if message is None:
        assert CcxtProvider(exchange, ["BTC/USD"], timeframes).timeframes == timeframes
        return
    with pytest.raises(ProviderConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CcxtProvider(exchange, ["BTC/USD"], timeframes)


# -- yfinance ------------------------------------------------------------------------------------


def yahoo(
    recording: str, symbol: str, timeframe: str, now: datetime | None
) -> tuple[YFinanceProvider, Replay]:
    replay = Replay.load("yfinance/yahoo_session", f"yfinance/{recording}")
    return YFinanceProvider([symbol], [timeframe], session=replay.session(), now=now), replay


@pytest.mark.usefixtures("fresh_yfinance")
def test_yfinance_split_in_the_payload_stores_unadjusted_prices_and_the_actions() -> None:
    provider, replay = yahoo("aapl_1d_split", "AAPL", "1d", utc(2020, 9, 5, 12))
    result = provider.fetch_candles("AAPL", "1d", Window(utc(2020, 8, 6), utc(2020, 9, 5)))
    candles = result.candles.set_index(result.candles["ts"].dt.strftime("%Y-%m-%dT%H:%MZ"))
    assert len(candles) == 22
    # 00:00 New York of each session date, in UTC
    assert candles.index[[0, 16, 17, 21]].tolist() == [
        "2020-08-06T04:00Z",
        "2020-08-28T04:00Z",
        "2020-08-31T04:00Z",
        "2020-09-04T04:00Z",
    ]
    # the session before the 4:1 split traded at 499.23 (Yahoo serves 124.8075); volume too
    before, after = candles.loc["2020-08-28T04:00Z"], candles.loc["2020-08-31T04:00Z"]
    assert before["close"] == pytest.approx(499.23, rel=1e-7)
    assert before["open"] == pytest.approx(504.05, rel=1e-7)
    assert before["volume"] == 46_907_500
    assert after["close"] == pytest.approx(129.04, rel=1e-7)
    assert after["volume"] == 225_702_700
    assert result.corporate_actions == (
        CorporateAction("AAPL", "dividend", date(2020, 8, 7), cash_amount=0.82, currency="USD"),
        CorporateAction("AAPL", "split", date(2020, 8, 31), ratio=4.0),
    )
    assert result.source_confirms_empty is False
    assert replay.unmatched == []


@pytest.mark.usefixtures("fresh_yfinance")
def test_yfinance_instrument_comes_from_yahoo_metadata() -> None:
    provider, _ = yahoo("aapl_1d_split", "AAPL", "1d", utc(2020, 9, 5, 12))
    [series] = provider.list_series()
    assert series.instrument.__dict__ == {
        "symbol": "AAPL",
        "asset_class": "stock",
        "calendar": "XNYS",
        "exchange": "XNAS",
        "quote_currency": "USD",
        "calendar_source": None,
    }


@pytest.mark.usefixtures("fresh_yfinance")
def test_yfinance_delisted_symbol_is_a_terminal_error_naming_it() -> None:
    provider, _ = yahoo("twtr_delisted", "TWTR", "1d", None)
    assert provider.list_series() == []  # listed without metadata: its fetch fails by name
    with pytest.raises(SymbolNotAvailable, match="'TWTR' not available") as raised:
        provider.fetch_candles("TWTR", "1d", Window(utc(2020, 8, 6), utc(2020, 9, 5)))
    assert raised.value.transient is False


@pytest.mark.usefixtures("fresh_yfinance")
def test_yfinance_empty_sparse_window_is_confirmed_empty_by_the_source() -> None:
    provider, replay = yahoo("smlc_1m_sparse", "SMLC", "1m", utc(2024, 5, 7, 15))
    result = provider.fetch_candles(
        "SMLC", "1m", Window(utc(2024, 5, 7, 14, 32), utc(2024, 5, 7, 14, 35))
    )
    assert len(result.candles) == 0
    assert result.source_confirms_empty is True
    assert replay.unmatched == []


def test_yfinance_refuses_a_window_beyond_yahoos_intraday_limit_without_a_request() -> None:
    replay = Replay()
    provider = YFinanceProvider(["AAPL"], ["1m"], session=replay.session(), now=utc(2024, 5, 7))
    with pytest.raises(ProviderRefused, match="Yahoo serves 1m candles only for the last 30 days"):
        provider.fetch_candles("AAPL", "1m", Window(utc(2024, 3, 1), utc(2024, 3, 2)))
    assert replay.served == []


def test_yfinance_has_no_4h_interval() -> None:
    with pytest.raises(ProviderConfigError, match="timeframe '4h' not offered by Yahoo"):
        YFinanceProvider(["AAPL"], ["4h"])


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        pytest.param(
            {"instrumentType": "EQUITY", "exchangeName": "NYQ", "currency": "USD"},
            ("stock", "XNYS", "XNYS", "USD"),
            id="nyse-stock",
        ),
        pytest.param(
            {"instrumentType": "ETF", "exchangeName": "PCX", "currency": "USD"},
            ("etf", "XNYS", "ARCX", "USD"),
            id="arca-etf",
        ),
        pytest.param(
            {"instrumentType": "EQUITY", "exchangeName": "LSE", "currency": "GBp"},
            ("stock", "XLON", "XLON", "GBp"),
            id="london-pence",
        ),
        pytest.param(
            {"instrumentType": "INDEX", "exchangeName": "SNP", "currency": "USD"},
            ("index", "XNYS", "SNP", "USD"),
            id="sp500-index",
        ),
        pytest.param(
            {"instrumentType": "CURRENCY", "exchangeName": "CCY", "currency": "USD"},
            ("forex", "FX", None, "USD"),
            id="fx",
        ),
        pytest.param(
            {"instrumentType": "CRYPTOCURRENCY", "exchangeName": "CCC", "currency": "USD"},
            ("crypto", "24/7", None, "USD"),
            id="crypto",
        ),
        pytest.param(
            {"instrumentType": "EQUITY", "exchangeName": "XYZ", "currency": "EUR"},
            ("stock", None, "XYZ", "EUR"),
            id="unknown-exchange-no-guess",
        ),
    ],
)
def test_yfinance_metadata_gives_asset_class_calendar_exchange_currency(
    meta: dict[str, str], expected: tuple[str, str | None, str | None, str]
) -> None:
    i = instrument_from_metadata("X", meta)
    assert (i.asset_class, i.calendar, i.exchange, i.quote_currency) == expected
