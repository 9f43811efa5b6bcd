"""The Prefect flow ``backfill`` end to end (one shared Prefect test harness)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from flows.backfill import backfill
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.exceptions import ProviderConfigError
from mdq.notify import RecordingNotifier
from mdq.providers.base import FetchResult, Series
from mdq.providers.synthetic import SyntheticProvider
from mdq.windows import Window

pytestmark = pytest.mark.integration


@pytest.fixture()
def no_heartbeats() -> Iterator[None]:
    """Flow heartbeats cost ~1 s per flow call (joining their thread): off in tests."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="module")
def flow_database(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


class CountingProvider:
    """Wraps a provider and records how many fetches ran at the same time."""

    name = "synthetic"

    def __init__(self, inner: SyntheticProvider) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def list_series(self) -> list[Series]:
        return self.inner.list_series()

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            threading.Event().wait(0.05)  # long enough for tasks of one wave to overlap
            return self.inner.fetch_candles(symbol, timeframe, window)
        finally:
            with self.lock:
                self.running -= 1


def test_flow_maps_one_task_per_series_with_a_cap_and_three_runs_leave_the_same_rows(
    prefect_harness: None, no_heartbeats: None, flow_database: Database
) -> None:
    symbols = [f"F{i}" for i in range(4)]
    provider = CountingProvider(
        SyntheticProvider(symbols, ["1h", "1d"], seed=9, now=datetime(2030, 1, 1, tzinfo=UTC))
    )
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    snapshots = []
    for attempt in range(3):
        results = backfill(
            provider=provider,
            symbols=symbols,
            start=start,
            end=end,
            database=flow_database,
            notifier=RecordingNotifier(),
            max_concurrency=3,
        )
        assert len(results) == 8  # one per (symbol, timeframe)
        assert {r.status for r in results} == {"completed"}
        inserted = sum(r.inserted for r in results)
        assert inserted == (4 * (31 * 24 + 31) if attempt == 0 else 0)
        with connect(flow_database) as conn:
            snapshots.append(
                conn.execute(
                    "select count(*), md5(string_agg(symbol || timeframe || ts::text"
                    " || close::text || xmin::text, ',' order by symbol, timeframe, ts))"
                    " from market_data"
                ).fetchone()
            )
    assert snapshots[0] == snapshots[1] == snapshots[2]  # same rows, none rewritten
    assert snapshots[0][0] == 4 * (31 * 24 + 31)
    with connect(flow_database) as conn:
        runs = conn.execute(
            "select count(distinct flow_run_id), count(*) filter (where flow_run_id is null)"
            " from backfill_state_persistent"
        ).fetchone()
        instruments = conn.execute("select count(*) from instruments").fetchone()
    assert runs == (3, 0)  # every state row carries its Prefect flow-run id
    assert instruments == (4,)
    assert provider.peak == 3  # at most max_concurrency series at once, and it is reached


def test_a_scheduled_run_without_a_configured_provider_fails_naming_the_setting(
    prefect_harness: None,
    no_heartbeats: None,
    flow_database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deployment passes no provider: it must never fall back to synthetic candles."""
    monkeypatch.delenv("MDQ_BACKFILL_PROVIDER", raising=False)
    with pytest.raises(ProviderConfigError, match="MDQ_BACKFILL_PROVIDER is unset"):
        backfill(database=flow_database, notifier=RecordingNotifier())
    with connect(flow_database) as conn:
        assert conn.execute(
            "select count(*) from market_data where symbol = 'SYN1'"
        ).fetchone() == (0,)
