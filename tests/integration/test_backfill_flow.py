"""The Prefect flow ``backfill`` end to end (one shared Prefect test harness)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

import flows.backfill as backfill_flow
from flows.backfill import backfill
from mdq.backfill_core import in_process
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.exceptions import ProviderConfigError, ProviderError
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
        with in_process(
            provider=provider,
            database=flow_database,
            notifier=RecordingNotifier(),
            max_concurrency=3,
        ):
            results = backfill(symbols=symbols, start=start, end=end)
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
        with in_process(database=flow_database, notifier=RecordingNotifier()):
            backfill()
    with connect(flow_database) as conn:
        assert conn.execute(
            "select count(*) from market_data where symbol = 'SYN1'"
        ).fetchone() == (0,)


class FlakyProvider:
    """Serves ``good`` and ``flaky`` (1d); the first ``failures`` fetches of ``flaky`` raise
    ``error``."""

    name = "synthetic"

    def __init__(self, good: str, flaky: str, error: Exception, failures: int) -> None:
        self.inner = SyntheticProvider([good, flaky], ["1d"], seed=3)
        self.flaky = flaky
        self.error = error
        self.failures = failures
        self.fetches: dict[str, int] = {good: 0, flaky: 0}

    def list_series(self) -> list[Series]:
        return self.inner.list_series()

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        self.fetches[symbol] += 1
        if symbol == self.flaky and self.fetches[symbol] <= self.failures:
            raise self.error
        return self.inner.fetch_candles(symbol, timeframe, window)


def _task_runs(flow_run_id: object) -> dict[str, tuple[str, int]]:
    """Task-run name → (state type, run count) of one flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: (r.state_type.value, r.run_count) for r in runs}


@pytest.fixture()
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's retries as deployed, without waiting 10-40 s between attempts."""
    fast = backfill_flow.backfill_series.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(backfill_flow, "backfill_series", fast)


JAN = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC))


def test_a_failing_series_fails_its_task_and_the_flow_naming_it_while_others_load(
    prefect_harness: None, no_heartbeats: None, no_retry_delay: None, flow_database: Database
) -> None:
    """A terminal error: one attempt, task Failed, flow Failed with the series and the reason."""
    error = ProviderConfigError("synthetic", "bad column 'px'")
    provider = FlakyProvider("E0", "E1", error, failures=99)
    with in_process(provider=provider, database=flow_database, notifier=RecordingNotifier()):
        state = backfill(symbols=["E0", "E1"], start=JAN[0], end=JAN[1], return_state=True)
    assert state.is_failed()
    assert state.message == (
        "1 of 2 series failed: E1/1d: ProviderConfigError: provider synthetic: bad column 'px'"
    )
    results = state.result(raise_on_failure=False)
    assert [(r.symbol, r.status, r.inserted) for r in results] == [
        ("E0", "completed", 10),
        ("E1", "failed", 0),
    ]
    assert provider.fetches == {"E0": 1, "E1": 1}  # terminal: not retried
    assert _task_runs(state.state_details.flow_run_id) == {
        "E0/1d": ("COMPLETED", 1),
        "E1/1d": ("FAILED", 1),
    }
    with connect(flow_database) as conn:
        assert conn.execute(
            "select count(*) from market_data where symbol = 'E0' and timeframe = '1d'"
        ).fetchone() == (10,)
        assert conn.execute(
            "select consecutive_failures from symbol_failure_tracking where symbol = 'E1'"
        ).fetchone() == (1,)


def test_a_transient_error_is_retried_and_the_series_then_loads(
    prefect_harness: None, no_heartbeats: None, no_retry_delay: None, flow_database: Database
) -> None:
    """Two timeouts, then an answer: the task's third attempt completes, the flow too; the
    failed attempts are on record but do not count in the failure streak."""
    error = ProviderError("synthetic", "read timed out after 30 s")
    provider = FlakyProvider("R0", "R1", error, failures=2)
    with in_process(provider=provider, database=flow_database, notifier=RecordingNotifier()):
        state = backfill(symbols=["R1"], start=JAN[0], end=JAN[1], return_state=True)
    assert state.is_completed(), state.message
    assert provider.fetches == {"R0": 0, "R1": 3}
    assert _task_runs(state.state_details.flow_run_id) == {"R1/1d": ("COMPLETED", 3)}
    with connect(flow_database) as conn:
        statuses = conn.execute(
            "select status, count(*) from backfill_state_persistent"
            " where symbol = 'R1' and flow_run_id = %s group by status order by status",
            (str(state.state_details.flow_run_id),),
        ).fetchall()
        streak = conn.execute(
            "select consecutive_failures, total_failures from symbol_failure_tracking"
            " where symbol = 'R1'"
        ).fetchone()
    assert statuses == [("completed", 1), ("failed", 2)]
    assert streak == (0, 0)


def test_runs_started_from_the_cli_are_tagged_and_named(
    prefect_harness: None, no_heartbeats: None, flow_database: Database
) -> None:
    """`mdq backfill --prefect` runs the flow tagged mdq, cli, named after its provider."""
    import re

    from prefect.client.orchestration import get_client

    from mdq.cli import _backfill_as_flow

    seen: list[object] = []
    results = _backfill_as_flow(
        {"provider": "synthetic", "symbols": ["SYN1"], "start": JAN[0], "end": JAN[1]},
        {"database": flow_database, "notifier": RecordingNotifier(), "on_result": seen.append},
    )
    assert [(r.symbol, r.timeframe, r.status) for r in results] == [("SYN1", "1m", "completed")]
    assert seen == results
    with connect(flow_database) as conn:
        (run_id,) = conn.execute(
            "select flow_run_id from backfill_state_persistent where execution_id = %s",
            (results[0].execution_id,),
        ).fetchone()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert {"mdq", "cli"} <= set(run.tags)
    assert re.fullmatch(r"backfill synthetic \d{4}-\d\d-\d\dT\d\d:\d\dZ", run.name), run.name
