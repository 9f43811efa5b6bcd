"""Backfills from yfinance and ccxt into a real PostgreSQL, from recorded vendor answers.

Only the HTTP transport is replayed (:mod:`tests.http_replay`); the CLI, the providers, the
libraries' parsing, validation and the writes all run. Each fault kind of issue 13 is a named
test: pagination with overlap, a forming last candle, a stuck ``since``, a 429 then success, a
delisted symbol, an empty sparse window, a split in the yfinance payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from typer.testing import CliRunner

from mdq.backfill_core import BackfillOptions, SeriesRequest, SeriesResult, load_series
from mdq.cli import app
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier
from mdq.providers.ccxt_provider import CcxtProvider
from mdq.providers.yfinance_provider import YFinanceProvider
from mdq.windows import Window
from tests.http_replay import Replay
from tests.vendor_fixtures import fresh_yfinance  # noqa: F401 - pytest fixture

pytestmark = pytest.mark.integration

BTC = "binance:BTC/USDT"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def vendor_db(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def vconn(vendor_db: Database) -> Iterator[psycopg.Connection]:
    with connect(vendor_db, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def cli_env(vendor_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI pointed at the test database, without Prefect (runs in-process)."""
    monkeypatch.setenv("MDQ_DATABASE_URL", vendor_db.url())
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("MDQ_BACKFILL_PROVIDER", raising=False)


def mdq(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def series_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " completed: " in line or " failed: " in line]


def stored(conn: psycopg.Connection, symbol: str, timeframe: str) -> list[tuple[object, ...]]:
    return conn.execute(
        "select ts, open, high, low, close, volume, is_final, source, xmin::text"
        " from market_data where symbol = %s and timeframe = %s order by ts",
        (symbol, timeframe),
    ).fetchall()


def load(
    database: Database, provider: object, symbol: str, timeframe: str, window: Window, calendar: str
) -> SeriesResult:
    return load_series(
        database,
        provider,  # type: ignore[arg-type]
        SeriesRequest(symbol, timeframe, window, calendar),
        BackfillOptions(),
        notifier=RecordingNotifier(),
    )


def binance(
    recording: str, symbol: str = "BTC/USDT", page_limit: int | None = None
) -> CcxtProvider:
    replay = Replay.load("ccxt/binance_markets", f"ccxt/{recording}")
    return CcxtProvider(
        "binance", [symbol], ["1h"], session=replay.session(), page_limit=page_limit
    )


# -- what it must show: the CLI loads from recorded payloads, a rerun writes nothing ---------


def test_mdq_backfill_ccxt_binance_from_recorded_klines_and_rerun_writes_nothing(
    cli_env: None, vconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = Replay.load("ccxt/binance_markets", "ccxt/binance_klines_btcusdt_1h")
    replay.patch_requests(monkeypatch)
    args = (
        "backfill", "--provider", "ccxt", "--exchange", "binance", "--symbols", "BTC/USDT",
        "--timeframe", "1h", "--start", "2024-05-06T00:00:00Z", "--end", "2024-05-06T06:00:00Z",
    )  # fmt: skip
    code, output = mdq(*args)
    assert code == 0, output
    window = "[2024-05-06T00:00:00+00:00, 2024-05-06T06:00:00+00:00)"
    assert series_lines(output) == [
        f"{BTC}/1h completed: window {window}, fetched 6, inserted 6, updated 0, unchanged 0, "
        "quarantined 0, duplicates 0"
    ]
    first = stored(vconn, BTC, "1h")
    assert [(r[0], r[4], r[5], r[6], r[7]) for r in first] == [
        (utc(2024, 5, 6, h), c, v, True, "ccxt:binance")
        for h, c, v in [
            (0, 63498.01, 1021.53917), (1, 63812.45, 1187.20411), (2, 63702.0, 933.48106),
            (3, 63430.87, 742.11063), (4, 63560.24, 610.98725), (5, 63901.77, 884.2535),
        ]
    ]  # fmt: skip
    assert vconn.execute(
        "select asset_class, calendar, exchange, quote_currency from instruments where symbol = %s",
        (BTC,),
    ).fetchone() == ("crypto", "24/7", "BINANCE", "USDT")

    code, output = mdq(*args)
    assert code == 0, output
    assert series_lines(output) == [
        f"{BTC}/1h completed: window {window}, fetched 6, inserted 0, updated 0, unchanged 6, "
        "quarantined 0, duplicates 0"
    ]
    assert stored(vconn, BTC, "1h") == first  # same rows, same row versions (xmin)
    assert replay.unmatched == []


@pytest.mark.usefixtures("fresh_yfinance")
def test_mdq_backfill_yfinance_split_payload_unadjusted_with_actions_rerun_writes_nothing(
    cli_env: None, vconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = Replay.load("yfinance/yahoo_session", "yfinance/aapl_1d_split")
    replay.patch_curl(monkeypatch)
    replay.patch_requests(monkeypatch)
    args = (
        "backfill", "--provider", "yfinance", "--symbols", "AAPL", "--timeframe", "1d",
        "--start", "2020-08-06", "--end", "2020-09-05",
    )  # fmt: skip
    code, output = mdq(*args)
    assert code == 0, output
    window = "[2020-08-06T00:00:00+00:00, 2020-09-05T00:00:00+00:00)"
    assert series_lines(output) == [
        f"AAPL/1d completed: window {window}, fetched 22, inserted 22, updated 0, unchanged 0, "
        "quarantined 0, duplicates 0"
    ]
    rows = stored(vconn, "AAPL", "1d")
    by_day = {r[0]: r for r in rows}
    before, after = by_day[utc(2020, 8, 28, 4)], by_day[utc(2020, 8, 31, 4)]
    # unadjusted: the last session before the 4:1 split closed at 499.23 on 46.9M shares
    assert (round(before[4], 4), before[5]) == (499.23, 46_907_500.0)
    assert (round(after[4], 4), after[5]) == (129.04, 225_702_700.0)
    assert len(rows) == 22 and rows[0][0] == utc(2020, 8, 6, 4)
    actions_sql = (
        "select action_type, effective_date, ratio, cash_amount, currency, source, xmin::text"
        " from corporate_actions where symbol = 'AAPL' order by effective_date"
    )
    actions = vconn.execute(actions_sql).fetchall()
    assert [a[:6] for a in actions] == [
        ("dividend", date(2020, 8, 7), None, Decimal("0.82"), "USD", "yfinance:AAPL"),
        ("split", date(2020, 8, 31), Decimal("4"), None, None, "yfinance:AAPL"),
    ]
    assert vconn.execute(
        "select asset_class, calendar, exchange, quote_currency from instruments"
        " where symbol = 'AAPL'"
    ).fetchone() == ("stock", "XNYS", "XNAS", "USD")

    code, output = mdq(*args)
    assert code == 0, output
    assert "inserted 0, updated 0, unchanged 22" in series_lines(output)[0]
    assert stored(vconn, "AAPL", "1d") == rows
    assert vconn.execute(actions_sql).fetchall() == actions
    assert replay.unmatched == []


# -- each fault kind through the backfill ---------------------------------------------------------


def test_ccxt_pagination_with_overlap_stores_each_candle_once(
    vendor_db: Database, vconn: psycopg.Connection
) -> None:
    symbol = "binance:BTC/USDT"
    vconn.execute("delete from market_data where symbol = %s", (symbol,))
    vconn.execute("delete from backfill_watermarks where symbol = %s", (symbol,))
    window = Window(utc(2024, 5, 6), utc(2024, 5, 6, 6))
    result = load(
        vendor_db, binance("binance_klines_overlap", page_limit=3), symbol, "1h", window, "24/7"
    )
    assert (result.status, result.fetched, result.inserted, result.duplicates) == (
        "completed",
        6,
        6,
        0,
    )
    assert [r[0] for r in stored(vconn, symbol, "1h")] == [utc(2024, 5, 6, h) for h in range(6)]
    assert result.watermark == utc(2024, 5, 6, 6)


def test_ccxt_forming_last_candle_stored_not_final_and_watermark_stops_before_it(
    vendor_db: Database, vconn: psycopg.Connection
) -> None:
    symbol = "binance:BTC/USDT#forming"
    provider = binance("binance_klines_forming")
    provider.symbols = {symbol: "BTC/USDT"}
    result = load(
        vendor_db, provider, symbol, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 4)), "24/7"
    )
    assert (result.status, result.inserted) == ("completed", 4)
    assert [(r[0], r[6]) for r in stored(vconn, symbol, "1h")] == [
        (utc(2024, 5, 6, 0), True),
        (utc(2024, 5, 6, 1), True),
        (utc(2024, 5, 6, 2), True),
        (utc(2024, 5, 6, 3), False),  # answered at 03:25:10: still forming
    ]
    assert result.watermark == utc(2024, 5, 6, 3)  # the next run re-reads the forming hour


def test_ccxt_stuck_since_fails_as_no_progress_keeping_what_was_read(
    vendor_db: Database, vconn: psycopg.Connection
) -> None:
    symbol = "binance:BTC/USDT#stuck"
    provider = binance("binance_klines_stuck_since", page_limit=3)
    provider.symbols = {symbol: "BTC/USDT"}
    result = load(
        vendor_db, provider, symbol, "1h", Window(utc(2024, 5, 6), utc(2024, 5, 6, 6)), "24/7"
    )
    assert (result.status, result.inserted) == ("failed", 3)
    assert result.error == (
        "no progress: page 2 asked since 2024-05-06T03:00:00+00:00; binance answered 3 "
        "candle(s), none at or after since (it ignores since or repeats a page)"
    )
    assert [r[0] for r in stored(vconn, symbol, "1h")] == [utc(2024, 5, 6, h) for h in range(3)]
    assert result.watermark == utc(2024, 5, 6, 3)  # not 06:00: 03:00-05:00 was never read
    assert vconn.execute(
        "select consecutive_failures, last_error from symbol_failure_tracking"
        " where symbol = %s and timeframe = '1h'",
        (symbol,),
    ).fetchone() == (1, result.error)


def test_ccxt_delisted_symbol_fails_that_series_with_the_exchange_answer(
    vendor_db: Database, vconn: psycopg.Connection
) -> None:
    symbol = "binance:LUNA/USDT"
    result = load(
        vendor_db,
        binance("binance_klines_delisted", symbol="LUNA/USDT"),
        symbol,
        "1h",
        Window(utc(2024, 5, 6), utc(2024, 5, 6, 6)),
        "24/7",
    )
    assert (result.status, result.inserted) == ("failed", 0)
    assert result.error is not None and result.error.startswith(
        "SymbolNotAvailable: provider ccxt: symbol 'LUNA/USDT' not available: binance: "
    )
    assert '"code":-1121' in result.error


@pytest.mark.usefixtures("fresh_yfinance")
def test_yfinance_empty_sparse_window_is_recorded_confirmed_empty_not_a_failure(
    vendor_db: Database, vconn: psycopg.Connection
) -> None:
    replay = Replay.load("yfinance/yahoo_session", "yfinance/smlc_1m_sparse")
    provider = YFinanceProvider(["SMLC"], ["1m"], session=replay.session(), now=utc(2024, 5, 7, 15))
    window = Window(utc(2024, 5, 7, 14, 32), utc(2024, 5, 7, 14, 35))
    result = load(vendor_db, provider, "SMLC", "1m", window, "XNYS")
    assert (result.status, result.fetched, result.confirmed_empty) == ("completed", 0, True)
    assert vconn.execute(
        "select window_start, window_end, provider from backfill_confirmed_empty"
        " where symbol = 'SMLC' and timeframe = '1m'"
    ).fetchall() == [(window.start, window.end, "yfinance")]
    again = load(vendor_db, provider, "SMLC", "1m", window, "XNYS")
    assert (again.status, again.confirmed_empty) == ("completed", True)
    chart_1m = [s for s in replay.served if s.params.get("interval") == "1m"]
    assert len(chart_1m) == 1  # the rerun did not ask Yahoo again


# -- mdq instruments add|list|remove ------------------------------------------------------------


@pytest.mark.usefixtures("fresh_yfinance")
def test_mdq_instruments_add_list_remove(
    cli_env: None, vconn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = Replay.load(
        "ccxt/binance_markets", "yfinance/yahoo_session", "yfinance/aapl_1d_split",
        "yfinance/twtr_delisted",
    )  # fmt: skip
    replay.patch_requests(monkeypatch)
    replay.patch_curl(monkeypatch)
    code, output = mdq(
        "instruments", "add", "ETH/USDT", "--provider", "ccxt", "--exchange", "binance",
        "--timeframes", "1h,1d",
    )  # fmt: skip
    assert code == 0, output
    assert "added: binance:ETH/USDT (crypto, calendar 24/7, BINANCE, USDT)" in output
    code, output = mdq("instruments", "add", "AAPL", "--provider", "yfinance")
    assert code == 0, output
    assert "AAPL (stock, calendar XNYS, XNAS, USD) from yfinance AAPL, timeframes 1d" in output
    code, output = mdq("instruments", "add", "AAPL", "--provider", "yfinance", "--as", "APPLE")
    assert code == 2
    assert "yfinance AAPL is already registered as 'AAPL'" in output
    code, output = mdq("instruments", "add", "TWTR", "--provider", "yfinance")
    assert code == 2
    assert "symbol 'TWTR' not available" in output
    code, output = mdq(
        "instruments", "add", "NOPE/USDT", "--provider", "ccxt", "--exchange", "binance"
    )
    assert code == 2
    assert "'NOPE/USDT' not available: binance does not list it" in output

    code, output = mdq("instruments", "list", "--format", "json")
    assert code == 0, output
    listed = {r["symbol"]: r for r in json.loads(output)}
    assert listed["binance:ETH/USDT"] == {
        "symbol": "binance:ETH/USDT",
        "provider": "ccxt",
        "provider_symbol": "ETH/USDT",
        "provider_exchange": "binance",
        "timeframes": ["1h", "1d"],
        "active": True,
        "asset_class": "crypto",
        "calendar": "24/7",
        "calendar_source": "mapping",
        "exchange": "BINANCE",
        "quote_currency": "USDT",
    }
    assert (listed["AAPL"]["provider"], listed["AAPL"]["timeframes"]) == ("yfinance", ["1d"])

    code, output = mdq("instruments", "remove", "binance:ETH/USDT")
    assert (code, output.strip()) == (0, "removed: binance:ETH/USDT")
    code, output = mdq("instruments", "list", "--format", "json")
    assert "binance:ETH/USDT" not in {r["symbol"] for r in json.loads(output)}
    code, output = mdq("instruments", "remove", "NOSUCH")
    assert code == 2
    vconn.execute("update instruments set active = false where symbol = 'AAPL'")


# -- the daily deployment: every active instrument through its own provider ------------------


@pytest.fixture()
def two_instruments(
    make_database: Callable[[], Database], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Database, Replay]]:
    """A database with AAPL on yfinance (watermark 2020-08-07, so the scheduled window starts
    at the recorded 2020-08-06) and binance:LUNA/USDT on ccxt (delisted), transports replayed."""
    from mdq.db.backfill import set_watermark
    from mdq.db.instruments import upsert_instrument_source

    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
        for symbol, provider, psym, exchange, frames, asset_class, calendar in [
            ("AAPL", "yfinance", None, None, ["1d"], "stock", "XNYS"),
            ("binance:LUNA/USDT", "ccxt", "LUNA/USDT", "binance", ["1h"], "crypto", "24/7"),
        ]:
            upsert_instrument_source(
                conn,
                symbol=symbol,
                provider=provider,
                provider_symbol=psym,
                provider_exchange=exchange,
                timeframes=frames,
                asset_class=asset_class,
                calendar=calendar,
            )
        set_watermark(conn, "AAPL", "1d", utc(2020, 8, 7), None)
    replay = Replay.load(
        "yfinance/yahoo_session", "yfinance/aapl_1d_split", "ccxt/binance_markets",
        "ccxt/binance_klines_delisted",
    )  # fmt: skip
    replay.patch_curl(monkeypatch)
    replay.patch_requests(monkeypatch)
    monkeypatch.setenv("MDQ_DATABASE_URL", database.url())
    monkeypatch.delenv("MDQ_BACKFILL_PROVIDER", raising=False)
    yield database, replay


@pytest.mark.usefixtures("fresh_yfinance")
def test_scheduled_backfill_loads_each_instrument_through_its_provider_one_failing(
    two_instruments: tuple[Database, Replay],
) -> None:
    from mdq.backfill_core import run_scheduled_backfill

    database, replay = two_instruments
    results = run_scheduled_backfill(database=database, notifier=RecordingNotifier())
    assert [(r.symbol, r.timeframe, r.status, r.inserted) for r in results] == [
        ("binance:LUNA/USDT", "1h", "failed", 0),
        ("AAPL", "1d", "completed", 22),
    ]
    assert "SymbolNotAvailable" in (results[0].error or "")
    aapl = results[1]
    assert aapl.window.start == utc(2020, 8, 6)  # watermark 2020-08-07 minus the 24 h look-back
    with connect(database) as conn:
        assert conn.execute(
            "select symbol, provider, status from backfill_state_persistent order by symbol"
        ).fetchall() == [
            ("AAPL", "yfinance", "completed"),
            ("binance:LUNA/USDT", "ccxt", "failed"),
        ]
        assert conn.execute(
            "select count(*) from corporate_actions where symbol = 'AAPL'"
        ).fetchone() == (2,)
        assert conn.execute(
            "select exchange, quote_currency from instruments where symbol = 'AAPL'"
        ).fetchone() == ("XNAS", "USD")  # refreshed from Yahoo's metadata
    assert replay.unmatched == []
