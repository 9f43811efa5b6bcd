"""The Prefect flow ``backfill``: fill ``market_data`` from a provider, one task per (symbol,
timeframe), at most ``max_concurrency`` at a time.

Windows are half-open ``[start, end)``: ``end`` is excluded (BH-04). The flow is thin: the
work is :func:`mdq.backfill_core.run_backfill` (planning, waves) and
:func:`mdq.backfill_core.load_series` (one series), which this module wraps in a task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from mdq.backfill_core import (
    MAX_WORKERS,
    BackfillOptions,
    SeriesRequest,
    SeriesResult,
    load_sample_data,
    load_series,
    run_backfill,
    run_scheduled_backfill,
)
from mdq.db import Database
from mdq.notify import Notifier
from mdq.providers.base import Provider

__all__ = ["backfill", "backfill_series", "load_sample_data", "run_backfill"]


@task(name="backfill-series", cache_policy=NO_CACHE)
def backfill_series(
    database: Database,
    provider: Provider,
    request: SeriesRequest,
    options: BackfillOptions,
    flow_run_id: str | None,
    notifier: Notifier | None,
) -> SeriesResult:
    """Prefect task: :func:`load_series` for one (symbol, timeframe)."""
    return load_series(
        database, provider, request, options, flow_run_id=flow_run_id, notifier=notifier
    )


@flow(
    name="backfill",
    validate_parameters=False,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),  # type: ignore[arg-type]
)
def backfill(
    provider: Any = None,
    symbols: list[str] | None = None,
    timeframes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    path: str | None = None,
    mapping: str | None = None,
    seed: int = 0,
    exchange: str | None = None,
    database: Any = None,
    notifier: Any = None,
    max_concurrency: int | None = None,
    on_result: Any = None,
    on_accounting: Any = None,
) -> list[SeriesResult]:
    """Backfill candles into ``market_data``, one task per (symbol, timeframe).

    The window is ``[start, end)``: ``start`` included, ``end`` excluded (to load 2024-12-31
    give ``end=2025-01-01``). Without both, each series loads in scheduled mode (from its
    watermark minus the look-back up to now; a file loads its whole range). Tasks run at most
    ``max_concurrency`` at a time (default: setting ``MDQ_BACKFILL_MAX_CONCURRENCY``).

    Args:
        provider: ``csv``, ``synthetic``, ``yfinance``, ``ccxt`` or a
            :class:`~mdq.providers.base.Provider`; None (scheduled deployments): every active
            instrument through its own provider (``instruments.provider``), plus
            ``MDQ_BACKFILL_PROVIDER``/``MDQ_BACKFILL_PATH`` when set
            (:func:`~mdq.backfill_core.run_scheduled_backfill`).
        symbols: symbols to load (default: active instruments the provider serves, else all).
        timeframes: timeframes to load (default: all the provider serves).
        start: window start, UTC-aware (with ``end``).
        end: window end (excluded), UTC-aware.
        path: csv: the file.
        mapping: csv: the mapping TOML (default: beside the file).
        seed: synthetic: the seed.
        exchange: ccxt: the exchange id, e.g. ``binance``.
        database: a :class:`~mdq.db.Database` to write to (default: from the settings).
        notifier: a :class:`~mdq.notify.Notifier` (default: log + Prefect event).
        max_concurrency: tasks at once.
        on_result: callable, given each series' :class:`SeriesResult` as it completes (the
            CLI's progress bar).
        on_accounting: callable, given the run's :class:`~mdq.backfill_core.Accounting`
            (every input row: stored, quarantined, duplicate or refused with a reason).

    Returns:
        One result per series, in request order.

    Raises:
        InvalidWindow: only one of start/end, naive datetimes, or end not after start.
        ProviderConfigError: unknown provider or bad provider options, or no provider given,
            no active instrument with a provider and ``MDQ_BACKFILL_PROVIDER`` unset.
    """
    from prefect.runtime import flow_run

    run_id = str(flow_run.id) if flow_run.id else None

    def run_wave(
        target: Database, prov: Provider, wave: list[SeriesRequest], options: BackfillOptions
    ) -> list[SeriesResult]:
        futures = [backfill_series.submit(target, prov, r, options, run_id, notifier) for r in wave]
        return [future.result() for future in futures]

    if provider is None:
        return run_scheduled_backfill(
            database=database,
            notifier=notifier,
            max_concurrency=max_concurrency,
            on_result=on_result,
            run_wave=run_wave,
        )
    return run_backfill(
        provider,
        symbols,
        timeframes,
        start,
        end,
        path=path,
        mapping=mapping,
        seed=seed,
        exchange=exchange,
        database=database,
        max_concurrency=max_concurrency,
        on_result=on_result,
        on_accounting=on_accounting,
        run_wave=run_wave,
    )
