"""The Prefect flow ``backfill`` with the vendor providers (shared Prefect test harness).

The daily deployment's call (no provider) over two instruments on two providers, one of them
failing, and a 429 retried by the task. Only the HTTP transport is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

import flows.backfill as backfill_flow
from flows.backfill import backfill
from mdq.backfill_core import in_process
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier
from mdq.providers.ccxt_provider import CcxtProvider
from tests.http_replay import Replay
from tests.vendor_fixtures import fresh_yfinance  # noqa: F401 - pytest fixture

pytestmark = pytest.mark.integration

KLINES = "https://api.binance.com/api/v3/klines"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture()
def no_heartbeats() -> Iterator[None]:
    """Flow heartbeats cost ~1 s per flow call (joining their thread): off in tests."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture()
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's retries as deployed, without waiting 10-40 s between attempts."""
    fast = backfill_flow.backfill_series.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(backfill_flow, "backfill_series", fast)


@pytest.fixture()
def flow_db(make_database: Callable[[], Database], monkeypatch: pytest.MonkeyPatch) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    monkeypatch.setenv("MDQ_DATABASE_URL", database.url())
    monkeypatch.delenv("MDQ_BACKFILL_PROVIDER", raising=False)
    return database


def _task_runs(flow_run_id: object) -> dict[str, tuple[str, int]]:
    """Task-run name → (state type, run count) of one flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: (r.state_type.value, r.run_count) for r in runs}


@pytest.mark.usefixtures("fresh_yfinance")
def test_daily_flow_two_instruments_two_providers_one_failing_ends_failed_naming_it(
    prefect_harness: None,
    no_heartbeats: None,
    no_retry_delay: None,
    flow_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mdq.db.backfill import set_watermark
    from mdq.db.instruments import upsert_instrument_source

    with connect(flow_db) as conn:
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
        # the scheduled window starts at the watermark minus 24 h: the recorded 2020-08-06
        set_watermark(conn, "AAPL", "1d", utc(2020, 8, 7), None)
    replay = Replay.load(
        "yfinance/yahoo_session", "yfinance/aapl_1d_split", "ccxt/binance_markets",
        "ccxt/binance_klines_delisted",
    )  # fmt: skip
    replay.patch_curl(monkeypatch)
    replay.patch_requests(monkeypatch)

    with in_process(database=flow_db, notifier=RecordingNotifier()):
        state = backfill(return_state=True)  # what backfill/daily runs: no provider

    assert state.is_failed()
    assert state.message is not None and state.message.startswith(
        "1 of 2 series failed: binance:LUNA/USDT/1h: SymbolNotAvailable: provider ccxt: "
        "symbol 'LUNA/USDT' not available: binance: "
    )
    results = state.result(raise_on_failure=False)
    assert [(r.symbol, r.timeframe, r.status, r.inserted) for r in results] == [
        ("binance:LUNA/USDT", "1h", "failed", 0),
        ("AAPL", "1d", "completed", 22),
    ]
    assert _task_runs(state.state_details.flow_run_id) == {
        "binance:LUNA/USDT/1h": ("FAILED", 1),  # terminal: not retried
        "AAPL/1d": ("COMPLETED", 1),
    }
    with connect(flow_db) as conn:
        assert conn.execute(
            "select count(*), min(ts), max(ts) from market_data where symbol = 'AAPL'"
        ).fetchone() == (22, utc(2020, 8, 6, 4), utc(2020, 9, 4, 4))
    assert replay.unmatched == []


def test_ccxt_429_then_success_is_retried_by_the_task(
    prefect_harness: None, no_heartbeats: None, no_retry_delay: None, flow_db: Database
) -> None:
    replay = Replay.load("ccxt/binance_markets", "ccxt/binance_klines_429")
    provider = CcxtProvider("binance", ["BTC/USDT"], ["1h"], session=replay.session())
    with in_process(provider=provider, database=flow_db, notifier=RecordingNotifier()):
        state = backfill(
            symbols=["binance:BTC/USDT"],
            start=utc(2024, 5, 6),
            end=utc(2024, 5, 6, 6),
            return_state=True,
        )
    assert state.is_completed(), state.message
    [result] = state.result()
    assert (result.status, result.inserted) == ("completed", 6)
    assert [s.status for s in replay.requests_to(KLINES)] == [429, 200]
    assert _task_runs(state.state_details.flow_run_id) == {"binance:BTC/USDT/1h": ("COMPLETED", 2)}
    with connect(flow_db) as conn:
        assert conn.execute(
            "select status, coalesce(error_message, '') like '%%rate limit (HTTP 429)%%'"
            " from backfill_state_persistent order by created_at"
        ).fetchall() == [("failed", True), ("completed", False)]
        assert conn.execute(
            "select consecutive_failures from symbol_failure_tracking"
            " where symbol = 'binance:BTC/USDT'"
        ).fetchone() == (0,)
