"""The Prefect flow ``backfill``: fill ``market_data`` from a provider, one task per (symbol,
timeframe), at most ``max_concurrency`` at a time (the next task starts as soon as one ends).

Windows are half-open ``[start, end)``: ``end`` is excluded (BH-04). The flow is thin: the
work is :func:`mdq.backfill_core.run_backfill` (planning, waves) and
:func:`mdq.backfill_core.load_series` (one series), which this module wraps in a task.

What Prefect shows: the run is named ``backfill <provider> <scheduled start>``, each task
``SYMBOL/timeframe`` with a log line of its counts; a series that fails makes its task Failed
(retried with backoff when the cause is transient) and the flow Failed with a message naming
each failed series and why, while the other series still load; the artifact
``mdq-backfill-series`` is the table of series.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from mdq.backfill_core import (
    MAX_WORKERS,
    BackfillOptions,
    SeriesRequest,
    SeriesResult,
    current_in_process,
    load_sample_data,
    load_series,
    run_backfill,
    run_scheduled_backfill,
)
from mdq.config import load_settings
from mdq.db import Database
from mdq.exceptions import MdqError, SeriesFailed, is_transient
from mdq.notify import Notifier
from mdq.providers.base import Provider
from mdq.reports import ARTIFACT_KEYS, backfill_failure_message, backfill_rows, run_name

__all__ = ["backfill", "backfill_series", "load_sample_data", "run_backfill"]

#: Attempts after the first for a transient failure, and their backoff (10, 20, 40 s, ±jitter).
RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=10)


def retry_if_transient(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient
    (:func:`mdq.exceptions.is_transient`: timeout, connection reset, rate limit)."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return is_transient(exc)
    return False


@task(
    name="backfill-series",
    task_run_name="{request.symbol}/{request.timeframe}",
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def backfill_series(
    database: Database,
    provider: Provider,
    request: SeriesRequest,
    options: BackfillOptions,
    flow_run_id: str | None,
    notifier: Notifier | None,
) -> SeriesResult:
    """Prefect task: :func:`load_series` for one (symbol, timeframe); logs its counts.

    Raises:
        SeriesFailed: the series ended ``failed`` (recorded already); ``transient`` says
            whether Prefect retries it.
        DatabaseUnreachable: the database could not be reached (transient: retried).
    """
    context = TaskRunContext.get()
    attempt = context.task_run.run_count if context else 1
    retries = (context.task.retries if context else 0) or 0
    result = load_series(
        database,
        provider,
        request,
        options,
        flow_run_id=flow_run_id,
        notifier=notifier,
        retried_if_transient=attempt <= retries,
    )
    get_run_logger().info(result.counts_line())
    if result.status == "failed":
        raise SeriesFailed(result)
    return result


def _outcome(future: PrefectFuture[SeriesResult]) -> SeriesResult:
    """A finished task's result; a series that failed gives the result its exception carries.

    Raises:
        Exception: what the task raised when it is not a series failure (e.g. the database is
            unreachable after every retry).
    """
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, SeriesFailed):
        return outcome.result
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _name() -> str:
    from prefect.runtime import flow_run

    provider = flow_run.parameters.get("provider")
    override = current_in_process().provider
    if override is not None:
        provider = override.name
    if provider is None:
        try:
            provider = load_settings().backfill_provider or "scheduled"
        except MdqError:
            provider = "scheduled"
    when = flow_run.scheduled_start_time or datetime.now(UTC)
    return run_name("backfill", when, str(provider))


@flow(
    name="backfill",
    flow_run_name=_name,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),  # type: ignore[arg-type]
)
def backfill(
    provider: Literal["csv", "synthetic", "yfinance", "ccxt"] | None = None,
    symbols: list[str] | None = None,
    timeframes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    path: str | None = None,
    exchange: str | None = None,
) -> State[list[SeriesResult]]:
    """Backfill candles into ``market_data``, one task per (symbol, timeframe).

    The window is ``[start, end)``: ``start`` included, ``end`` excluded (to load 2024-12-31
    give ``end=2025-01-01``). Without both, each series loads in scheduled mode (from its
    watermark minus the look-back up to now; a file loads its whole range). The database,
    notifier, concurrency, csv mapping and synthetic seed come from the settings (``MDQ_*``)
    or, for an in-process caller, from :func:`mdq.backfill_core.in_process`.

    Args:
        provider: ``csv``, ``synthetic``, ``yfinance`` or ``ccxt``; None (the scheduled
            deployment): every active instrument through its own provider
            (``instruments.provider``), plus ``MDQ_BACKFILL_PROVIDER``/``MDQ_BACKFILL_PATH``
            when set (:func:`~mdq.backfill_core.run_scheduled_backfill`).
        symbols: symbols to load (default: active instruments the provider serves, else all).
        timeframes: timeframes to load (default: all the provider serves).
        start: window start, UTC-aware (with ``end``).
        end: window end (excluded), UTC-aware.
        path: csv: the file (.csv, .csv.gz, .parquet), as the worker sees it.
        exchange: ccxt: the exchange id, e.g. ``binance``.

    Returns:
        Completed with one result per series (request order), or Failed with the same results
        and a message naming every failed series and why.

    Raises:
        InvalidWindow: only one of start/end, naive datetimes, or end not after start.
        ProviderConfigError: unknown provider or bad provider options, or no provider given,
            no active instrument with a provider and ``MDQ_BACKFILL_PROVIDER`` unset.
        UnknownSymbols: a symbol asked for by name is not in the source.
    """
    from prefect.runtime import flow_run

    extra = current_in_process()
    source: str | Provider | None = extra.provider or provider
    run_id = str(flow_run.id) if flow_run.id else None

    def run_wave(
        target: Database, prov: Provider, wave: list[SeriesRequest], options: BackfillOptions
    ) -> list[SeriesResult]:
        futures = [
            backfill_series.submit(target, prov, r, options, run_id, extra.notifier) for r in wave
        ]
        for future in futures:
            future.wait()
        return [_outcome(future) for future in futures]

    def run_all(
        target: Database,
        prov: Provider,
        requests: list[SeriesRequest],
        options: BackfillOptions,
        cap: int,
        on_result: Any,
    ) -> list[SeriesResult]:
        """``cap`` tasks at a time, the next submitted as soon as one ends (no waves)."""
        from concurrent.futures import ThreadPoolExecutor
        from contextvars import copy_context

        def one(request: SeriesRequest) -> SeriesResult:
            future = backfill_series.submit(target, prov, request, options, run_id, extra.notifier)
            future.wait()
            return _outcome(future)

        results: list[SeriesResult] = []
        contexts = [copy_context() for _ in requests]  # the flow run's context, per thread
        with ThreadPoolExecutor(max_workers=max(1, min(cap, len(requests)))) as pool:
            for result in pool.map(lambda c, r: c.run(one, r), contexts, requests):
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results

    run_wave.run_all = run_all  # type: ignore[attr-defined]

    if source is None:
        results = run_scheduled_backfill(
            database=extra.database,
            notifier=extra.notifier,
            max_concurrency=extra.max_concurrency,
            on_result=extra.on_result,
            run_wave=run_wave,
        )
    else:
        results = run_backfill(
            source,
            symbols,
            timeframes,
            start,
            end,
            path=path,
            mapping=extra.mapping,
            seed=extra.seed,
            exchange=exchange,
            database=extra.database,
            notifier=extra.notifier,
            max_concurrency=extra.max_concurrency,
            on_result=extra.on_result,
            on_accounting=extra.on_accounting,
            run_wave=run_wave,
        )
    create_table_artifact(
        key=ARTIFACT_KEYS["backfill"],
        table=backfill_rows(results),
        description=f"Series of this backfill ({len(results)}): counts and status.",
    )
    failure = backfill_failure_message(results)
    if failure is not None:
        get_run_logger().error(failure)
        return Failed(message=failure, data=results)
    return Completed(message=f"{len(results)} series loaded", data=results)
