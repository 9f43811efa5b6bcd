"""The backfill's work, without Prefect: plan series, load one series, load the sample data.

Windows are half-open ``[start, end)``: ``end`` is excluded (BH-04). Without ``start``/``end`` a
series loads in scheduled mode: from its watermark minus a look-back up to now. Every execution
is recorded in ``backfill_state_persistent`` (pending → in_progress → completed | failed |
skipped) with its counts; one (symbol, timeframe) is backfilled by at most one execution at a
time (the database enforces it). :mod:`flows.backfill` wraps :func:`load_series` in a Prefect
task and :func:`run_backfill` in the flow; the CLI (without a Prefect API), ``mdq demo``
(:func:`load_sample_data`) and the tests call them directly, without importing Prefect.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from mdq.config import Settings, load_settings
from mdq.db import Database, connect
from mdq.db import backfill as db
from mdq.db.partitions import ensure_partitions
from mdq.exceptions import (
    AccountingMismatch,
    DatabaseUnreachable,
    LeaseLost,
    MdqError,
    ProviderConfigError,
    UnknownSymbols,
    is_transient,
)
from mdq.labels import Convention, canonical_ts, detect_convention
from mdq.notify import Alert, LogNotifier, Notifier
from mdq.providers.base import CorporateAction, FetchResult, Instrument, Provider, Series
from mdq.validation import (
    Rejected,
    dedupe_batch,
    finality,
    grid_for,
    safe_text,
    validate_candles,
)
from mdq.windows import Window, classify_fetch, next_watermark, scheduled_window

logger = logging.getLogger(__name__)

#: Hard cap on the flow's worker threads; ``backfill_max_concurrency`` (≤ this) applies below it.
MAX_WORKERS = 32


@dataclass(frozen=True)
class SeriesRequest:
    """One (symbol, timeframe) to backfill.

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe.
        window: ``[start, end)``, or None for scheduled mode (watermark minus look-back → now).
        calendar: the instrument's calendar (for the timeframe grid); ``24/7`` when unknown.
        asset_class: the instrument's asset class, recorded on the state row, when known.
    """

    symbol: str
    timeframe: str
    window: Window | None = None
    calendar: str = "24/7"
    asset_class: str | None = None


@dataclass(frozen=True)
class BackfillOptions:
    """Tuning of one backfill (from :class:`mdq.config.Settings`).

    Attributes:
        lease_seconds: state-row lease without renewal.
        chunk_rows: candles per write transaction.
        alert_threshold: consecutive failures before the (one) alert.
        lookback: scheduled mode: re-load this much before the watermark.
        initial_history: scheduled mode: history of a series without watermark.
    """

    lease_seconds: int = 30
    chunk_rows: int = 200_000
    alert_threshold: int = 3
    lookback: timedelta = timedelta(hours=24)
    initial_history: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> BackfillOptions:
        """The options the settings describe."""
        return cls(
            lease_seconds=settings.backfill_lease_seconds,
            chunk_rows=settings.backfill_chunk_rows,
            alert_threshold=settings.failure_alert_threshold,
            lookback=timedelta(hours=settings.backfill_lookback_hours),
            initial_history=timedelta(days=settings.backfill_initial_days),
        )


@dataclass(frozen=True)
class SeriesResult:
    """How one (symbol, timeframe) backfill ended (mirrors its state row).

    Attributes:
        execution_id: the state row.
        status: ``completed``, ``failed`` or ``skipped``.
        window: the window loaded, ``[start, end)``.
        fetched: rows the provider returned (valid, invalid and duplicates).
        inserted, updated, unchanged: effect on market_data.
        quarantined: rows rejected with a reason.
        duplicates: exact repeats inside the batch, dropped (BH-03).
        outside_window: valid rows of the series the source holds outside the window.
        confirmed_empty: the source confirmed the window holds no candles (BH-07).
        error: why it failed or was skipped.
        transient: it failed for a transient reason (timeout, connection reset, rate limit):
            retrying may succeed.
        seconds: wall time.
        watermark: the series' watermark afterwards.
        span: the first and last candle written (both included), when the series completed
            with every candle final and no corporate action: it can then be recorded for
            recognising an unchanged file (:func:`rerun_unchanged_file`); else None.
        fingerprint: with ``span``, (rows, sum of their xmin) when every row went in by COPY
            on the fast path (then no scan is needed to record it); else None.
    """

    symbol: str
    timeframe: str
    execution_id: uuid.UUID
    status: str
    window: Window | None
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    duplicates: int = 0
    outside_window: int = 0
    confirmed_empty: bool = False
    error: str | None = None
    transient: bool = False
    seconds: float = 0.0
    watermark: datetime | None = None
    span: tuple[datetime, datetime] | None = None
    fingerprint: tuple[int, int] | None = None

    @property
    def stored(self) -> int:
        """Rows now in market_data from this run: inserted + updated + unchanged."""
        return self.inserted + self.updated + self.unchanged

    def counts_line(self) -> str:
        """One human line: ``AAPL/1d completed: fetched 10, inserted 8, ...``."""
        return (
            f"{self.symbol}/{self.timeframe} {self.status}: fetched {self.fetched}, "
            f"inserted {self.inserted}, updated {self.updated}, unchanged {self.unchanged}, "
            f"quarantined {self.quarantined}, duplicates {self.duplicates}"
            + (f" ({self.error})" if self.error else "")
        )


def relabel(
    provider: Provider, candles: pd.DataFrame, timeframe: str, calendar: str | None
) -> tuple[pd.DataFrame, Convention]:
    """Map the vendor's labels to canonical open times (:mod:`mdq.labels`): the convention is
    the mapping's ``[labels]`` where the provider has one, else detected from the batch.

    Returns:
        (the candles with ``ts`` canonical and the vendor's label in ``source_ts``; the
        convention).

    Raises:
        UnsupportedTimeframe: unknown timeframe.
        ValueError: unknown calendar.
    """
    mapping = getattr(provider, "mapping", None)
    overrides = getattr(mapping, "labels", None) or {}
    ts = candles["ts"]
    if getattr(ts.dt, "tz", None) is None:  # naive: validation rejects every row
        return candles.assign(source_ts=ts), Convention(None, "session", "open", "default")
    convention = detect_convention(ts, timeframe, calendar, overrides)
    return (
        candles.assign(source_ts=ts, ts=canonical_ts(ts, timeframe, calendar, convention)),
        convention,
    )


def rejected_everything(count: int, rejected: Sequence[Rejected]) -> str:
    """The error of a run that stored nothing because it rejected all its rows, e.g.
    ``stored nothing: all 3479 rows quarantined (3479 off_grid: ts ... is not on the 1h
    grid ...)``: the most frequent reason code, its count, and its first reason."""
    by_code: dict[str, list[Rejected]] = {}
    for item in rejected:
        by_code.setdefault(item.code, []).append(item)
    code, items = max(by_code.items(), key=lambda kv: len(kv[1]))
    row = f"row {items[0].source_row}: " if items[0].source_row is not None else ""
    return (
        f"stored nothing: all {count} rows quarantined ({len(items)} {code}, e.g. "
        f"{row}{safe_text(items[0].reason)})"
    )


@dataclass(frozen=True)
class InProcess:
    """What an in-process caller (the CLI, ``mdq demo``, tests) gives the backfill flow beyond
    the parameters a deployment exposes (see :func:`in_process`).

    A deployment run has none of these: it reads the settings (``MDQ_*``) instead.

    Attributes:
        database: the database to write to (default: from the settings).
        provider: a ready :class:`~mdq.providers.base.Provider` object, used instead of the
            ``provider`` parameter (tests; providers with live connections).
        notifier: alert delivery (default: :class:`~mdq.notify.LogNotifier`).
        mapping: csv: the mapping TOML (default: ``<file>.mapping.toml`` beside the file).
        seed: synthetic: the seed.
        max_concurrency: series at once (default: ``MDQ_BACKFILL_MAX_CONCURRENCY``).
        on_result: called with each series' result as it completes (the CLI's progress bar).
        on_accounting: called with the run's :class:`Accounting` (every input row: stored,
            quarantined, duplicate or refused with a reason).
    """

    database: Database | None = None
    provider: Provider | None = None
    notifier: Notifier | None = None
    mapping: str | None = None
    seed: int = 0
    max_concurrency: int | None = None
    on_result: Callable[[SeriesResult], None] | None = None
    on_accounting: Callable[[Accounting], None] | None = None


_IN_PROCESS: ContextVar[InProcess | None] = ContextVar("mdq_backfill_in_process", default=None)


@contextmanager
def in_process(**options: Any) -> Iterator[InProcess]:
    """Give the backfill flow, called in this context, the options of :class:`InProcess`.

    This keeps plumbing (a database object, a callback, a notifier) out of the flow's
    parameters, which are what the Prefect UI's run form and ``prefect deployment run -p``
    offer: provider, symbols, timeframes, start, end, path.

    Args:
        options: fields of :class:`InProcess`.

    Yields:
        The options in effect.

    Raises:
        TypeError: an unknown option.
    """
    current = InProcess(**options)
    token = _IN_PROCESS.set(current)
    try:
        yield current
    finally:
        _IN_PROCESS.reset(token)


def current_in_process() -> InProcess:
    """The options of the innermost :func:`in_process` (defaults outside any)."""
    return _IN_PROCESS.get() or InProcess()


def default_notifier() -> Notifier:
    """The notifier used when none is given: :class:`mdq.notify.LogNotifier`."""
    return LogNotifier()


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)] or [frame]


class LeaseHeartbeat:
    """Renews a running execution's lease every third of it, on its own connection.

    So the lease can be short (``MDQ_BACKFILL_LEASE_SECONDS``, 30 s by default): a worker that
    died, or lost its database, stops renewing and its series is free for the next run within
    that time, while a slow chunk or fetch never loses a live worker's claim (issue 16).
    Stops on :meth:`stop`, when the row is no longer in_progress (finished, or taken over:
    :class:`~mdq.exceptions.LeaseLost`), or when the database cannot be reached.
    """

    def __init__(self, database: Database, execution_id: uuid.UUID, lease_seconds: int) -> None:
        self.database = database
        self.execution_id = execution_id
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{execution_id}", daemon=True)

    def start(self) -> None:
        """Start renewing in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (waits for the thread at most a few seconds)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(0.5, self.lease_seconds / 3)
        if self._stop.wait(interval):
            return  # finished within the first interval: no connection needed (most series)
        try:
            with connect(self.database, autocommit=True, timeout=5) as conn:
                while True:
                    db.renew_lease(conn, self.execution_id, self.lease_seconds)
                    if self._stop.wait(interval):
                        break
        except LeaseLost:
            return
        except (MdqError, psycopg.Error) as exc:
            logger.warning("lease heartbeat of %s stopped: %s", self.execution_id, exc)


def load_series(
    database: Database,
    provider: Provider,
    request: SeriesRequest,
    options: BackfillOptions,
    *,
    flow_run_id: str | None = None,
    notifier: Notifier | None = None,
    now: datetime | None = None,
    on_chunk: Callable[[int], None] | None = None,
    retried_if_transient: bool = False,
    connection: psycopg.Connection | None = None,
) -> SeriesResult:
    """Backfill one (symbol, timeframe): claim, fetch, validate, write, record.

    Steps: claim the series (or record ``skipped`` when another execution holds it); skip the
    fetch when the window is a recorded confirmed-empty window; fetch; validate (invalid rows
    → quarantine with reason, raw row and source row); drop in-batch duplicate keys (the
    later row wins, a conflicting earlier one is quarantined); flag candles that had not closed
    at fetch time as not final; write in chunks, each chunk in one transaction with its
    watermark advance and the state row's counts and lease. An empty answer is a failure
    ("no progress") unless the source confirms the window empty (BH-07). The outcome updates
    the failure streak; the streak's one alert goes to ``notifier``.

    Args:
        database: where to write.
        provider: where to read.
        request: the series and window.
        options: tuning.
        flow_run_id: the Prefect flow-run id, recorded on the state row.
        notifier: alert delivery (default: :func:`default_notifier`).
        now: reference time for scheduled mode (default: the real time).
        on_chunk: called with the number of candles after each written chunk.
        retried_if_transient: the caller retries a transient failure (the flow's task, before
            its last attempt); such a failure is recorded on its state row but not counted in
            the series' failure streak, so one run's retries never raise an alert alone.
        connection: an open autocommit connection to ``database`` to use instead of opening
            one (a worker thread loading series one after another keeps one; left open).

    Returns:
        The outcome; failures are returned (and recorded), not raised.

    Raises:
        DatabaseUnreachable: the database cannot be reached at all.
    """
    started = time.monotonic()
    notifier = notifier or default_notifier()
    symbol, timeframe = request.symbol, request.timeframe
    reuse = connection is not None and not connection.closed and not connection.broken
    opened = contextlib.nullcontext(connection) if reuse else connect(database, autocommit=True)
    with opened as conn:
        assert conn is not None
        window = request.window or scheduled_window(
            db.get_watermark(conn, symbol, timeframe),
            now or datetime.now(UTC),
            options.lookback,
            options.initial_history,
            timeframe,
        )
        state = db.create_backfill_state(
            conn,
            symbol=symbol,
            timeframe=timeframe,
            window=window,
            provider=provider.name,
            lease_seconds=options.lease_seconds,
            asset_class=request.asset_class,
            flow_run_id=flow_run_id,
            start=True,
        )
        execution_id = state.execution_id
        if state.status == "skipped":
            return SeriesResult(
                symbol,
                timeframe,
                execution_id,
                "skipped",
                window,
                error=state.error_message,
                seconds=time.monotonic() - started,
            )
        counts = {
            "fetched": 0,
            "inserted": 0,
            "updated": 0,
            "unchanged": 0,
            "quarantined": 0,
            "duplicates": 0,
            "outside_window": 0,
        }

        recordable: dict[str, Any] = {}

        def finish(
            status: str, error: str | None = None, confirmed: bool = False, transient: bool = False
        ) -> SeriesResult:
            db.update_backfill_state(
                conn,
                execution_id,
                status=status,
                error_message=error,
                records_fetched=counts["fetched"],
                records_inserted=counts["inserted"],
                records_updated=counts["updated"],
                records_unchanged=counts["unchanged"],
                records_quarantined=counts["quarantined"],
                records_duplicate=counts["duplicates"],
                records_out_of_window=counts["outside_window"],
            )
            streak = (
                None
                if transient and retried_if_transient
                else db.track_symbol_failure(
                    conn,
                    symbol,
                    timeframe,
                    success=status == "completed",
                    threshold=options.alert_threshold,
                    error=error,
                )
            )
            if streak is not None and streak.alert_due:
                notifier.send(
                    Alert(
                        kind="consecutive_failures",
                        subject=f"{symbol}/{timeframe}",
                        message=(
                            f"backfill of {symbol}/{timeframe} failed "
                            f"{streak.consecutive_failures} times in a row; last error: {error}"
                        ),
                        details={"execution_id": str(execution_id), "provider": provider.name},
                    )
                )
            return SeriesResult(
                symbol,
                timeframe,
                execution_id,
                status,
                window,
                fetched=counts["fetched"],
                inserted=counts["inserted"],
                updated=counts["updated"],
                unchanged=counts["unchanged"],
                quarantined=counts["quarantined"],
                duplicates=counts["duplicates"],
                outside_window=counts["outside_window"],
                confirmed_empty=confirmed,
                error=error,
                transient=transient,
                seconds=time.monotonic() - started,
                watermark=db.get_watermark(conn, symbol, timeframe),
                span=recordable.get("span") if status == "completed" else None,
                fingerprint=recordable.get("fingerprint") if status == "completed" else None,
            )

        beat = LeaseHeartbeat(database, execution_id, options.lease_seconds)
        beat.start()
        try:
            if db.is_confirmed_empty(conn, symbol, timeframe, window):
                return finish("completed", confirmed=True)
            fetched = provider.fetch_candles(symbol, timeframe, window)
            candles = fetched.candles
            counts["fetched"] = len(candles) + len(fetched.rejected)
            counts["outside_window"] = fetched.outside_window
            candles, convention = relabel(provider, candles, timeframe, request.calendar)
            grid = grid_for(timeframe, request.calendar, clock=convention.grid == "clock")
            valid, invalid = validate_candles(candles, grid, fetched.raw)
            # the same session under two labels (BH-01): the later label is the final one
            batch = dedupe_batch(valid.sort_values(["ts", "source_ts"], kind="stable"))
            counts["duplicates"] = batch.exact_duplicates
            conflicting = [
                Rejected(
                    int(row.source_row) if int(row.source_row) >= 0 else None,
                    f"duplicate ts {row.ts.isoformat()} in one batch with different values "
                    f"(label {row.source_ts.isoformat()}); the later row was kept",
                    {k: safe_text(v) for k, v in row._asdict().items() if k != "Index"},
                    "conflicting_duplicate",
                )
                for row in batch.conflicting.itertuples()
            ]
            rejected = [*fetched.rejected, *invalid, *conflicting]
            counts["quarantined"] = len(rejected)
            outcome = classify_fetch(counts["fetched"], fetched.source_confirms_empty, window)
            # A source that stopped advancing (BH-08 kind) covered only [start, stalled_at).
            covered = _covered(window, fetched.stalled_at)
            # one statement alone needs no transaction of its own (a round trip each way less)
            bundle = bool(rejected) or bool(fetched.corporate_actions)
            with conn.transaction() if bundle else contextlib.nullcontext():
                if len(candles):
                    db.record_series_labels(
                        conn,
                        symbol,
                        timeframe,
                        daily_label=convention.daily,
                        intraday_grid=convention.grid,
                        intraday_label=convention.label,
                        decided_by=convention.decided_by,
                    )
                db.quarantine(
                    conn,
                    rejected,
                    execution_id=execution_id,
                    provider=provider.name,
                    source=fetched.source,
                    symbol=symbol,
                    timeframe=timeframe,
                )
                if fetched.corporate_actions:
                    record_corporate_actions(conn, fetched.corporate_actions, source=fetched.source)
            good = batch.candles.assign(
                is_final=finality(batch.candles["ts"], timeframe, pd.Timestamp(fetched.fetched_at))
            )
            parts = _chunks(good, options.chunk_rows) if len(good) else []
            if len(good):
                # the months' partitions, committed before the write (migration 110)
                ensure_partitions(conn, good["ts"])
            # the series is ours (lease): its watermark moves only by our writes below
            current = db.get_watermark(conn, symbol, timeframe) if parts else None
            # (rows, sum of xmin) of what went in by COPY on the fast path; None once a part
            # took the keyed upsert (then the fingerprint is taken by a scan when recorded)
            copied: list[int] | None = [0, 0]
            for i, part in enumerate(parts):
                part_start = window.start if i == 0 else part["ts"].iloc[0].to_pydatetime()
                part_end = (
                    (covered.end if covered is not None else part_start)
                    if i == len(parts) - 1
                    else parts[i + 1]["ts"].iloc[0].to_pydatetime()
                )
                open_ts = part.loc[~part["is_final"], "ts"]
                with conn.transaction():
                    db.renew_lease(conn, execution_id, options.lease_seconds)
                    wrote = db.write_candles(
                        conn, part, source=fetched.source, execution_id=execution_id
                    )
                    mark = (
                        next_watermark(
                            current,
                            Window(part_start, part_end),
                            open_ts.min().to_pydatetime() if len(open_ts) else None,
                        )
                        if part_end > part_start
                        else current
                    )
                    if mark is not None and mark != current:
                        current = db.set_watermark(conn, symbol, timeframe, mark, execution_id)
                    if copied is not None and wrote.fast_path and wrote.xmin is not None:
                        copied[0] += len(part)
                        copied[1] += len(part) * wrote.xmin
                    else:
                        copied = None
                    counts["inserted"] += wrote.inserted
                    counts["updated"] += wrote.updated
                    counts["unchanged"] += wrote.unchanged
                    db.update_backfill_state(
                        conn,
                        execution_id,
                        lease_seconds=options.lease_seconds,
                        records_fetched=counts["fetched"],
                        records_inserted=counts["inserted"],
                        records_updated=counts["updated"],
                        records_unchanged=counts["unchanged"],
                        records_quarantined=counts["quarantined"],
                        records_duplicate=counts["duplicates"],
                    )
                if on_chunk is not None:
                    on_chunk(len(part))
            if fetched.stalled_at is not None:
                return finish("failed", fetched.stall_reason or "no progress: the source stalled")
            if not outcome.success:
                return finish("failed", outcome.reason)
            stored = counts["inserted"] + counts["updated"] + counts["unchanged"]
            accounted = stored + counts["quarantined"] + counts["duplicates"]
            if accounted != counts["fetched"]:
                return finish(
                    "failed",
                    f"accounting: {counts['fetched']} rows fetched but {stored} stored + "
                    f"{counts['quarantined']} quarantined + {counts['duplicates']} duplicates "
                    f"= {accounted}",
                )
            if stored == 0 and counts["quarantined"] > 0:
                return finish("failed", rejected_everything(counts["quarantined"], rejected))
            if len(good) and bool(good["is_final"].all()) and not fetched.corporate_actions:
                recordable["span"] = (
                    good["ts"].min().to_pydatetime(),
                    good["ts"].max().to_pydatetime(),
                )
                recordable["fingerprint"] = tuple(copied) if copied is not None else None
            if outcome.confirmed_empty:
                with conn.transaction():
                    db.record_confirmed_empty(
                        conn, symbol, timeframe, window, provider.name, execution_id
                    )
                    current = db.get_watermark(conn, symbol, timeframe)
                    mark = next_watermark(current, window)
                    if mark is not None and mark != current:
                        db.set_watermark(conn, symbol, timeframe, mark, execution_id)
                return finish("completed", confirmed=True)
            return finish("completed")
        except (MdqError, psycopg.Error, ValueError, ConnectionError, TimeoutError) as exc:
            logger.warning("backfill %s/%s failed: %s", symbol, timeframe, exc)
            transient = is_transient(exc) or isinstance(exc, psycopg.OperationalError)
            try:
                return finish("failed", f"{type(exc).__name__}: {exc}", transient=transient)
            except psycopg.OperationalError:
                # the database itself went away: the state row stays in_progress until its
                # lease (no longer renewed) expires; the next run closes it as failed
                first = (str(exc).strip().splitlines() or ["connection lost"])[0]
                raise DatabaseUnreachable(
                    database.target, f"lost during the backfill of {symbol}/{timeframe}: {first}"
                ) from None
        finally:
            beat.stop()


def _covered(window: Window, stalled_at: datetime | None) -> Window | None:
    """The part of ``window`` a fetch really covered: all of it, or ``[start, stalled_at)``
    when the source stopped advancing (None when it covered nothing)."""
    if stalled_at is None:
        return window
    if stalled_at <= window.start:
        return None
    return Window(window.start, min(stalled_at, window.end))


def record_corporate_actions(
    conn: psycopg.Connection, actions: Sequence[CorporateAction], *, source: str
) -> int:
    """Write a provider's splits and dividends into ``corporate_actions`` (idempotent).

    Returns:
        Rows inserted or changed.
    """
    from mdq.db.reference import upsert_corporate_action

    return sum(upsert_corporate_action(conn, a, source=source) for a in actions)


# -- providers -----------------------------------------------------------------------------------


#: Providers :func:`make_provider` builds.
PROVIDERS: tuple[str, ...] = ("csv", "synthetic", "yfinance", "ccxt")


def make_provider(
    name: str,
    *,
    path: str | Path | None = None,
    mapping: str | Path | None = None,
    symbols: Sequence[str] | Mapping[str, str] | None = None,
    timeframes: Sequence[str] | None = None,
    seed: int = 0,
    exchange: str | None = None,
) -> Provider:
    """Build a provider by name.

    Args:
        name: ``csv`` (also reads parquet), ``synthetic``, ``yfinance`` or ``ccxt``.
        path: csv: the file.
        mapping: csv: a mapping TOML (default: ``<file>.mapping.toml`` beside it, if any).
        symbols: synthetic: the symbols (default ``SYN1``); yfinance/ccxt: the project's
            symbol → the provider's (or a list of provider symbols).
        timeframes: synthetic/yfinance/ccxt: the timeframes (default ``1m``, ``1d``, ``1h``).
        seed: synthetic: the seed.
        exchange: ccxt: the exchange id, e.g. ``binance``.

    Raises:
        ProviderConfigError: unknown name, a csv provider without ``path``, a ccxt provider
            without ``exchange``, yfinance/ccxt without symbols, or the provider's package is
            not installed (``pip install 'mdq[yfinance,ccxt]'``).
    """
    if name == "csv":
        from mdq.providers.csv_file import CsvFileProvider, CsvMapping

        if path is None:
            raise ProviderConfigError("csv", "--path is required")
        return CsvFileProvider(Path(path), CsvMapping.load(Path(mapping)) if mapping else None)
    if name == "synthetic":
        from mdq.providers.synthetic import SyntheticProvider

        return SyntheticProvider(list(symbols or ["SYN1"]), list(timeframes or ["1m"]), seed=seed)
    if name in ("yfinance", "ccxt") and not symbols:
        raise ProviderConfigError(
            name, "no symbols: give --symbols, or register them with `mdq instruments add`"
        )
    if name == "yfinance":
        from mdq.providers.yfinance_provider import YFinanceProvider

        return YFinanceProvider(symbols or [], list(timeframes or ["1d"]))
    if name == "ccxt":
        from mdq.providers.ccxt_provider import CcxtProvider

        if not exchange:
            raise ProviderConfigError(
                "ccxt", "--exchange is required: a ccxt exchange id such as binance or kraken"
            )
        return CcxtProvider(exchange, symbols or [], list(timeframes or ["1h"]))
    raise ProviderConfigError(
        name, f"unknown provider {name!r}; expected one of {', '.join(PROVIDERS)}"
    )


def project_symbol(provider: str, exchange: str | None, provider_symbol: str) -> str:
    """The project's default symbol for a provider's symbol: ``<exchange>:<symbol>`` on ccxt
    (one pair trades at different prices on different exchanges), the ticker itself
    otherwise."""
    if provider == "ccxt" and exchange:
        prefix = f"{exchange}:"
        if provider_symbol.startswith(prefix):
            return provider_symbol
        return f"{prefix}{provider_symbol}"
    return provider_symbol


def resolve_symbols(
    conn: psycopg.Connection, provider: str, exchange: str | None, names: Sequence[str] | None
) -> dict[str, str]:
    """The project's symbol → the provider's, for names given on the command line.

    A name may be the provider's symbol (``BTC/USDT``) or the project's (``binance:BTC/USDT``);
    a registered instrument (``mdq instruments add``) gives its own mapping, an unregistered
    name maps by :func:`project_symbol`. Without names: every active instrument registered
    for this provider (and exchange).
    """
    from mdq.db.instruments import find_by_provider_symbol, list_instrument_sources

    if not names:
        return {
            s.symbol: s.source_symbol
            for s in list_instrument_sources(conn, scheduled_only=True)
            if s.provider == provider and (s.provider_exchange or None) == (exchange or None)
        }
    by_symbol = {s.symbol: s for s in list_instrument_sources(conn)}
    out: dict[str, str] = {}
    for name in names:
        found = find_by_provider_symbol(conn, provider, exchange, name)
        if found is None and name in by_symbol and by_symbol[name].provider == provider:
            found = by_symbol[name]
        if found is not None:
            out[found.symbol] = found.source_symbol
        else:
            symbol = project_symbol(provider, exchange, name)
            prefix = f"{exchange}:" if provider == "ccxt" and exchange else ""
            out[symbol] = symbol[len(prefix) :] if prefix else name
    return out


class UnavailableProvider:
    """Stands in for a provider that could not be built (not installed, bad exchange id), so
    each of its series is recorded as failed with the reason instead of failing the run."""

    def __init__(self, name: str, error: MdqError) -> None:
        self.name = name
        self.error = error

    def list_series(self) -> list[Series]:
        """Nothing: the provider does not exist."""
        return []

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """Raises the error that prevented building the provider.

        Raises:
            MdqError: always (the construction error).
        """
        raise self.error


def _with_calendar(series: Series, known: dict[str, Instrument], provider: Provider) -> Series:
    """The series with its instrument's calendar decided (:mod:`mdq.instrument_calendars`):
    the source's, else the instruments row's (unless that was itself only a default or an
    inference), else the symbol's exchange suffix, else inferred from the series' timestamps
    (for a provider that can list them), else the asset class's default."""
    from dataclasses import replace

    from mdq.instrument_calendars import decide_calendar

    instrument = series.instrument
    row = known.get(instrument.symbol)
    trusted = (
        row.calendar
        if row is not None and row.calendar_source not in ("asset_class", "inferred")
        else None
    )
    stamps = getattr(provider, "series_timestamps", None)
    ts = stamps(instrument.symbol, series.timeframe) if callable(stamps) else None
    decision = decide_calendar(
        instrument.symbol,
        instrument.asset_class,
        series.timeframe,
        mapping=instrument.calendar,
        known=trusted,
        ts=ts,
    )
    return replace(
        series,
        instrument=replace(instrument, calendar=decision.calendar, calendar_source=decision.source),
    )


def plan_requests(
    provider: Provider,
    conn: psycopg.Connection,
    symbols: Sequence[str] | None,
    timeframes: Sequence[str] | None,
    window: Window | None,
) -> tuple[list[SeriesRequest], list[Series]]:
    """Which series to load: the given symbols, else the active instruments the provider
    serves, else everything the provider serves; restricted to ``timeframes`` when given.

    For a provider that knows each series' range (a file) and no window given, the window is
    the series' whole range ``[first_ts, last_ts + timeframe)``. A symbol asked for by name
    that the provider does not serve is still requested (for ``timeframes``, else every
    timeframe the provider serves) is an error naming it, before anything is loaded and
    without a failure streak (a series that never existed has no streak to extend). A symbol
    whose every row the source rejected is present (see :func:`record_rejected_series`).

    Returns:
        (requests sorted by symbol and timeframe, the provider's series used).

    Raises:
        UnknownSymbols: a symbol asked for by name is not in the source at all.
    """
    from mdq.windows import next_cursor

    known = {i.symbol: i for i in db.get_instruments(conn, active_only=False)}
    offered = [_with_calendar(s, known, provider) for s in provider.list_series()]
    if symbols:
        wanted = set(symbols)
    else:
        active = {i.symbol for i in db.get_instruments(conn)}
        served = {s.instrument.symbol for s in offered}
        wanted = (active & served) or served
    chosen = [
        s
        for s in offered
        if s.instrument.symbol in wanted and (not timeframes or s.timeframe in timeframes)
    ]
    requests = []
    for s in chosen:
        series_window = window
        if series_window is None and s.first_ts is not None and s.last_ts is not None:
            series_window = Window(s.first_ts, next_cursor(s.last_ts, s.timeframe))
        requests.append(
            SeriesRequest(
                s.instrument.symbol,
                s.timeframe,
                series_window,
                s.instrument.calendar,
                s.instrument.asset_class,
            )
        )
    present = {s.instrument.symbol for s in offered}
    rejected_keys = _rejected_series(provider)
    present |= {symbol for symbol, _ in rejected_keys}
    missing = sorted(set(symbols or ()) - present)
    if missing:
        source = str(getattr(provider, "path", provider.name))
        raise UnknownSymbols(missing, Path(source).name, sorted(present))
    return requests, chosen


def _rejected_series(provider: Provider) -> dict[tuple[str, str], list[Rejected]]:
    """Rows the provider rejected while parsing, per (symbol, timeframe) as the source wrote
    them (providers without this notion: none)."""
    method = getattr(provider, "rejected_series", None)
    return method() if callable(method) else {}


def record_rejected_series(
    database: Database,
    provider: Provider,
    requests: Sequence[SeriesRequest],
    symbols: Sequence[str] | None,
    timeframes: Sequence[str] | None,
    window: Window | None,
    options: BackfillOptions,
    *,
    flow_run_id: str | None = None,
    notifier: Notifier | None = None,
) -> list[SeriesResult]:
    """Record the series none of whose rows could be placed (naive timestamps, a timeframe
    written ``1hour``, a ts that does not parse, a null ts, wrong parquet types, a symbol that
    cannot be stored): each gets a state row ``failed`` with its rows quarantined (reason, raw
    row, row number) and one more failure in its streak. Before this, such a series vanished.

    Only series that the request covers are recorded (``symbols`` and ``timeframes`` when
    given); series already in ``requests`` are loaded by :func:`load_series`, which
    quarantines their rejected rows itself.

    Returns:
        One ``failed`` result per such series, sorted by symbol and timeframe.
    """
    notifier = notifier or default_notifier()
    planned = {(r.symbol, r.timeframe) for r in requests}
    wanted = set(symbols) if symbols else None
    results = []
    for (symbol, timeframe), rejected in sorted(_rejected_series(provider).items()):
        if (symbol, timeframe) in planned:
            continue
        if wanted is not None and symbol not in wanted:
            continue
        if timeframes and timeframe not in timeframes:
            continue
        started = time.monotonic()
        error = rejected_everything(len(rejected), rejected)
        with connect(database, autocommit=True) as conn:
            state = db.create_backfill_state(
                conn,
                symbol=symbol,
                timeframe=timeframe,
                window=window,
                provider=provider.name,
                lease_seconds=options.lease_seconds,
                flow_run_id=flow_run_id,
            )
            if state.status == "skipped":
                results.append(
                    SeriesResult(
                        symbol,
                        timeframe,
                        state.execution_id,
                        "skipped",
                        window,
                        error=state.error_message,
                        seconds=time.monotonic() - started,
                    )
                )
                continue
            with conn.transaction():
                db.quarantine(
                    conn,
                    rejected,
                    execution_id=state.execution_id,
                    provider=provider.name,
                    source=str(getattr(provider, "path", provider.name)).rsplit("/", 1)[-1],
                    symbol=symbol,
                    timeframe=timeframe,
                )
                db.update_backfill_state(
                    conn,
                    state.execution_id,
                    status="failed",
                    error_message=error,
                    records_fetched=len(rejected),
                    records_quarantined=len(rejected),
                )
                streak = db.track_symbol_failure(
                    conn,
                    symbol,
                    timeframe,
                    success=False,
                    threshold=options.alert_threshold,
                    error=error,
                )
        if streak.alert_due:
            notifier.send(
                Alert(
                    kind="consecutive_failures",
                    subject=f"{symbol}/{timeframe}",
                    message=(
                        f"backfill of {symbol}/{timeframe} failed "
                        f"{streak.consecutive_failures} times in a row; last error: {error}"
                    ),
                    details={"execution_id": str(state.execution_id), "provider": provider.name},
                )
            )
        logger.warning("backfill %s/%s failed: %s", symbol, timeframe, error)
        results.append(
            SeriesResult(
                symbol,
                timeframe,
                state.execution_id,
                "failed",
                window,
                fetched=len(rejected),
                quarantined=len(rejected),
                error=error,
                seconds=time.monotonic() - started,
            )
        )
    return results


@dataclass(frozen=True)
class Accounting:
    """Where every input row of one backfill went (issue 16: nothing silently lost).

    ``input_rows = stored + quarantined + duplicates + outside_window + not_requested +
    not_loaded`` must hold; :func:`account` checks it.

    Attributes:
        input_rows: rows the source holds (a file's data rows), or None when the provider
            cannot count them (an API): then only the per-series identity is checked.
        stored: inserted + updated + unchanged candles.
        quarantined: rows rejected with a reason (quarantined_candles).
        duplicates: exact repeats of a key inside one batch (BH-03), dropped.
        outside_window: valid rows of requested series outside ``[start, end)``.
        not_requested: rows of series not asked for (``--symbols``/``--timeframe``).
        not_loaded: rows of series that were skipped (another backfill active) or failed
            before reading.
    """

    input_rows: int | None
    stored: int
    quarantined: int
    duplicates: int
    outside_window: int
    not_requested: int
    not_loaded: int

    def line(self) -> str:
        """One line for the CLI and the log."""
        total = "?" if self.input_rows is None else str(self.input_rows)
        return (
            f"accounting: {total} input rows = {self.stored} stored + {self.quarantined} "
            f"quarantined + {self.duplicates} duplicates + {self.outside_window} outside the "
            f"window + {self.not_requested} not requested + {self.not_loaded} not loaded"
        )


def account(provider: Provider, results: Sequence[SeriesResult]) -> Accounting:
    """Check that every input row of a backfill is accounted for.

    Per series: fetched = stored + quarantined + duplicates (load_series fails the series
    otherwise) and, for a provider that counts its rows, fetched + outside the window = the
    series' rows in the source. Per run: the identity of :class:`Accounting`.

    Returns:
        The run's accounting.

    Raises:
        AccountingMismatch: a series or the run does not add up (rows were lost).
    """
    method = getattr(provider, "input_counts", None)
    counts: dict[tuple[str, str], int] | None = method() if callable(method) else None
    seen: set[tuple[str, str]] = set()
    not_loaded = 0
    problems = []
    for r in results:
        key = (r.symbol, r.timeframe)
        seen.add(key)
        placed = r.stored + r.quarantined + r.duplicates
        if r.status == "failed" and placed < r.fetched:
            not_loaded += r.fetched - placed  # a failure after the fetch: rows not written
        elif placed != r.fetched:
            problems.append(
                f"{r.symbol}/{r.timeframe}: {r.fetched} fetched, {r.stored} stored + "
                f"{r.quarantined} quarantined + {r.duplicates} duplicates"
            )
        if counts is None:
            continue
        if r.fetched == 0 and r.outside_window == 0:
            not_loaded += counts.get(key, 0)
        elif counts.get(key, 0) != r.fetched + r.outside_window:
            problems.append(
                f"{r.symbol}/{r.timeframe}: source holds {counts.get(key, 0)} rows, "
                f"{r.fetched} fetched + {r.outside_window} outside the window"
            )
    result = Accounting(
        input_rows=None if counts is None else sum(counts.values()),
        stored=sum(r.stored for r in results),
        quarantined=sum(r.quarantined for r in results),
        duplicates=sum(r.duplicates for r in results),
        outside_window=sum(r.outside_window for r in results),
        not_requested=0
        if counts is None
        else sum(n for key, n in counts.items() if key not in seen),
        not_loaded=not_loaded,
    )
    if result.input_rows is not None:
        total = (
            result.stored
            + result.quarantined
            + result.duplicates
            + result.outside_window
            + result.not_requested
            + result.not_loaded
        )
        if total != result.input_rows:
            problems.append(result.line())
    if problems:
        raise AccountingMismatch("; ".join(problems))
    return result


RunWave = Callable[[Database, Provider, list[SeriesRequest], BackfillOptions], list[SeriesResult]]


def run_backfill(
    provider: str | Provider = "synthetic",
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    path: str | None = None,
    mapping: str | None = None,
    seed: int = 0,
    exchange: str | None = None,
    database: Database | None = None,
    notifier: Notifier | None = None,
    max_concurrency: int | None = None,
    on_result: Callable[[SeriesResult], None] | None = None,
    on_accounting: Callable[[Accounting], None] | None = None,
    run_wave: RunWave | None = None,
) -> list[SeriesResult]:
    """The body of :func:`backfill`, runnable without Prefect (the CLI's default when no
    Prefect API is configured): same arguments, same results.

    At most ``max_concurrency`` series run at once. ``run_wave`` runs one wave of that many
    series; a runner with a ``run_all(target, provider, requests, options, cap, on_result)``
    attribute instead keeps ``cap`` series going, starting the next as soon as one ends (the
    default thread pool, whose threads keep one connection each, and the flow's tasks do).
    Series whose every row was rejected are recorded failed (:func:`record_rejected_series`);
    then the run's accounting is checked (:func:`account`), logged and passed to
    ``on_accounting``. A run over a whole file (a provider with ``content_digest``; no symbols,
    timeframes or window) is recorded when it completes (:func:`record_whole_file`); a rerun
    of the same file confirms the series unchanged since in bulk without parsing the file
    (:func:`rerun_unchanged_file`) and loads only the others. For ``yfinance`` and
    ``ccxt``, ``symbols`` may be the provider's symbols (``BTC/USDT``) or the project's
    (``binance:BTC/USDT``), see :func:`resolve_symbols`.

    Raises:
        InvalidWindow: only one of start/end, naive datetimes, or end not after start.
        ProviderConfigError: unknown provider or bad provider options.
        UnknownSymbols: a symbol asked for by name is not in the source.
        AccountingMismatch: input rows were lost (a loader bug).
    """
    from mdq.exceptions import InvalidWindow

    settings = load_settings()
    options = BackfillOptions.from_settings(settings)
    if (start is None) != (end is None):
        raise InvalidWindow("give both start and end, or neither (scheduled mode)")
    window = Window(start, end) if start is not None and end is not None else None
    cap = max(1, min(max_concurrency or settings.backfill_max_concurrency, MAX_WORKERS))
    runner = run_wave or _thread_waves(notifier)
    with _database(settings, database) as target:
        with connect(target, autocommit=True) as conn:
            wanted = symbols
            if isinstance(provider, str) and provider in ("yfinance", "ccxt"):
                mapped = resolve_symbols(conn, provider, exchange, symbols)
                prov = make_provider(
                    provider, symbols=mapped, timeframes=timeframes, exchange=exchange
                )
                wanted = sorted(mapped)
            elif isinstance(provider, str):
                prov = make_provider(
                    provider,
                    path=path,
                    mapping=mapping,
                    symbols=symbols,
                    timeframes=timeframes,
                    seed=seed,
                    exchange=exchange,
                )
            else:
                prov = provider
            whole_file = (
                callable(getattr(prov, "content_digest", None))
                and not wanted
                and not timeframes
                and window is None
            )
            confirmed: list[SeriesResult] = []
            only: frozenset[tuple[str, str]] | None = None
            if whole_file:
                _digest_in_background(prov)
                rerun = rerun_unchanged_file(conn, prov)
                if rerun is not None:
                    confirmed, only = rerun.results, rerun.changed
                    for result in confirmed:
                        if on_result is not None:
                            on_result(result)
                    if rerun.accounting is not None:  # the whole file is unchanged
                        logger.info("%s", rerun.accounting.line())
                        if on_accounting is not None:
                            on_accounting(rerun.accounting)
                        return confirmed
            requests, series = plan_requests(prov, conn, wanted, timeframes, window)
            db.upsert_instruments(conn, [s.instrument for s in series])
        todo = [r for r in requests if only is None or (r.symbol, r.timeframe) in only]
        results = _run_waves(target, prov, todo, options, cap, runner, on_result)
        if confirmed:  # the unchanged series with the loaded ones, in request order
            order = {(r.symbol, r.timeframe): i for i, r in enumerate(requests)}
            results = sorted(
                [*confirmed, *results], key=lambda r: order.get((r.symbol, r.timeframe), -1)
            )
        for result in record_rejected_series(
            target, prov, requests, wanted, timeframes, window, options, notifier=notifier
        ):
            results.append(result)
            if on_result is not None:
                on_result(result)
        accounting = account(prov, results)
        if whole_file:
            record_whole_file(target, prov, results, accounting)
    logger.info("%s", accounting.line())
    if on_accounting is not None:
        on_accounting(accounting)
    return results


def _digest_in_background(provider: Provider) -> None:
    """Start computing the provider's content digest in a thread (it reads the whole file),
    so that a first load hashes while it parses; a failure shows when the digest is used."""

    def compute() -> None:
        with contextlib.suppress(MdqError):
            provider.content_digest()  # type: ignore[attr-defined]

    threading.Thread(target=compute, name="mdq-content-digest", daemon=True).start()


@dataclass(frozen=True)
class UnchangedRerun:
    """What :func:`rerun_unchanged_file` recognised.

    Attributes:
        results: the series confirmed unchanged (recorded already), sorted by symbol and
            timeframe.
        changed: the series of the file to load in full (empty: the whole file is unchanged).
        accounting: the run's accounting when the whole file is unchanged, else None (the
            full load's accounting covers every series).
    """

    results: list[SeriesResult]
    changed: frozenset[tuple[str, str]]
    accounting: Accounting | None


def rerun_unchanged_file(conn: psycopg.Connection, provider: Provider) -> UnchangedRerun | None:
    """Recognise a rerun of a file whose whole-file load is recorded (migration 155) and
    record its unchanged series in bulk, without parsing the file or comparing a candle.

    The provider's content digest (code, mapping, file bytes) must match a recorded load; a
    series of that load is unchanged when the database still holds it as recorded (its
    candles' fingerprint, instruments row, watermark and quarantined rows; no backfill of it
    active). One transaction records a ``completed`` state row per unchanged series with every
    row counted as before (stored rows unchanged, rejected rows quarantined, duplicates,
    outside the window), moves their quarantined rows to the new executions and resets their
    failure streaks: 0 rows written to ``market_data``. The other series are left to the
    caller, which loads them in full (comparing every candle); the reason is logged.

    Returns:
        What was confirmed and what is left, or None when no load of this file is recorded
        or no series is unchanged (load everything in full).

    Raises:
        ProviderError: the file could not be read.
        AccountingMismatch: the whole file is unchanged but its recorded counts do not add up
            (not expected: they added up when recorded).
    """
    started = time.monotonic()
    if not db.has_file_loads(conn, provider.name):
        return None
    digest = provider.content_digest()  # type: ignore[attr-defined]
    load = db.unchanged_file_series(conn, provider.name, digest)
    if load is None:
        return None
    same = [s for s in load.series if s.unchanged]
    changed = [s for s in load.series if not s.unchanged]
    if changed or not same:
        first = (
            f"{changed[0].symbol}/{changed[0].timeframe}: {changed[0].why}"
            if changed
            else "its series records are incomplete"
        )
        logger.info(
            "%s was loaded before, unchanged, but %s%s: loading %s in full",
            load.source,
            first,
            f" (and {len(changed) - 1} more series)" if len(changed) > 1 else "",
            f"{len(changed)} of {len(load.series)} series" if same else "it",
        )
    if not same:
        return None
    ids = db.confirm_unchanged_file(conn, provider=provider.name, source_digest=digest, series=same)
    seconds = time.monotonic() - started
    results = [
        SeriesResult(
            s.symbol,
            s.timeframe,
            ids[(s.symbol, s.timeframe)],
            "completed",
            s.window,
            fetched=s.fetched,
            unchanged=s.stored,
            quarantined=s.quarantined,
            duplicates=s.duplicates,
            outside_window=s.outside_window,
            seconds=seconds / len(same),
            watermark=s.watermark,
            span=s.span,
            fingerprint=s.fingerprint,
        )
        for s in sorted(same, key=lambda s: (s.symbol, s.timeframe))
    ]
    logger.info(
        "%s: %d series unchanged since its load, confirmed without parsing (%.1f s)",
        load.source,
        len(results),
        seconds,
    )
    if changed:
        return UnchangedRerun(results, frozenset((s.symbol, s.timeframe) for s in changed), None)
    accounting = Accounting(
        input_rows=load.input_rows,
        stored=sum(r.stored for r in results),
        quarantined=sum(r.quarantined for r in results),
        duplicates=sum(r.duplicates for r in results),
        outside_window=sum(r.outside_window for r in results),
        not_requested=0,
        not_loaded=0,
    )
    placed = (
        accounting.stored
        + accounting.quarantined
        + accounting.duplicates
        + accounting.outside_window
    )
    if placed != accounting.input_rows:
        raise AccountingMismatch(accounting.line())
    return UnchangedRerun(results, frozenset(), accounting)


def record_whole_file(
    database: Database, provider: Provider, results: Sequence[SeriesResult], accounting: Accounting
) -> bool:
    """After a whole-file run: record it (:func:`mdq.db.backfill.record_file_load`) when every
    series completed with a recordable span and every input row was stored, quarantined, a
    duplicate or outside the window, so that a rerun of the unchanged file is recognised by
    :func:`rerun_unchanged_file`. A failure to record is logged, not raised (the load itself
    succeeded; the next rerun then loads in full).

    Returns:
        Whether it was recorded.
    """
    if (
        not results
        or accounting.input_rows is None
        or accounting.not_requested
        or accounting.not_loaded
        or any(r.status != "completed" or r.span is None or r.window is None for r in results)
    ):
        return False
    try:
        digest = provider.content_digest()  # type: ignore[attr-defined]
        series = [
            db.FileSeries(
                symbol=r.symbol,
                timeframe=r.timeframe,
                execution_id=r.execution_id,
                asset_class=None,
                window=r.window,  # type: ignore[arg-type]
                first_ts=r.span[0],  # type: ignore[index]
                last_ts=r.span[1],  # type: ignore[index]
                candles=r.fingerprint[0] if r.fingerprint else None,
                xmin_sum=r.fingerprint[1] if r.fingerprint else None,
                fetched=r.fetched,
                stored=r.stored,
                quarantined=r.quarantined,
                duplicates=r.duplicates,
                outside_window=r.outside_window,
            )
            for r in results
        ]
        with connect(database, autocommit=True) as conn:
            db.record_file_load(
                conn,
                provider=provider.name,
                source_digest=digest,
                source=str(getattr(provider, "path", provider.name)).rsplit("/", 1)[-1],
                input_rows=accounting.input_rows,
                series=series,
            )
    except (MdqError, psycopg.Error) as exc:
        logger.warning("the load was not recorded for recognising an unchanged rerun: %s", exc)
        return False
    return True


def _thread_waves(notifier: Notifier | None) -> RunWave:
    """The default wave runner: one thread per series of the wave."""
    from concurrent.futures import ThreadPoolExecutor

    def threads(
        target: Database, p: Provider, wave: list[SeriesRequest], o: BackfillOptions
    ) -> list[SeriesResult]:
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            return list(pool.map(lambda r: load_series(target, p, r, o, notifier=notifier), wave))

    def run_all(
        target: Database,
        p: Provider,
        requests: list[SeriesRequest],
        o: BackfillOptions,
        cap: int,
        on_result: Callable[[SeriesResult], None] | None,
    ) -> list[SeriesResult]:
        return _run_pool(target, p, requests, o, cap, notifier, on_result)

    threads.run_all = run_all  # type: ignore[attr-defined]
    return threads


def _run_pool(
    target: Database,
    prov: Provider,
    requests: list[SeriesRequest],
    options: BackfillOptions,
    cap: int,
    notifier: Notifier | None,
    on_result: Callable[[SeriesResult], None] | None,
) -> list[SeriesResult]:
    """Run every request on ``cap`` threads that each take the next series as soon as they
    finish one (no wave waits for its slowest series); results in request order."""
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    opened: list[psycopg.Connection] = []
    lock = threading.Lock()

    def one(request: SeriesRequest) -> SeriesResult:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(target, autocommit=True)
            local.conn = conn
            with lock:
                opened.append(conn)
        return load_series(target, prov, request, options, notifier=notifier, connection=conn)

    results: list[SeriesResult] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(cap, len(requests)))) as pool:
            for result in pool.map(one, requests):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        for conn in opened:
            conn.close()
    return results


def _run_waves(
    target: Database,
    prov: Provider,
    requests: list[SeriesRequest],
    options: BackfillOptions,
    cap: int,
    runner: RunWave,
    on_result: Callable[[SeriesResult], None] | None,
) -> list[SeriesResult]:
    run_all = getattr(runner, "run_all", None)
    if run_all is not None:  # the runner keeps ``cap`` series going itself (no waves)
        return run_all(target, prov, requests, options, cap, on_result)  # type: ignore[no-any-return]
    results: list[SeriesResult] = []
    for offset in range(0, len(requests), cap):
        for result in runner(target, prov, requests[offset : offset + cap], options):
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def run_scheduled_backfill(
    *,
    database: Database | None = None,
    notifier: Notifier | None = None,
    max_concurrency: int | None = None,
    on_result: Callable[[SeriesResult], None] | None = None,
    run_wave: RunWave | None = None,
) -> list[SeriesResult]:
    """The daily backfill: every active instrument with a provider (migration 100), each
    through its own provider, from its watermark minus the look-back up to now (a new series:
    ``MDQ_BACKFILL_INITIAL_DAYS`` of history); plus, when ``MDQ_BACKFILL_PROVIDER`` is set,
    that provider as before (e.g. a vendor's daily file drop).

    Instruments are grouped by (provider, exchange): one provider object per group, its
    series loaded in waves like :func:`run_backfill`. Everything that goes wrong with one
    provider is that provider's series' failure, recorded on their state rows and failure
    streaks, never the run's: a provider that cannot be built (package not installed, unknown
    exchange) or cannot list its instruments, a delisted symbol, a rate limit.

    Returns:
        One result per (instrument, timeframe), groups in (provider, exchange) order, then the
        ``MDQ_BACKFILL_PROVIDER`` run's results.

    Raises:
        ProviderConfigError: no active instrument has a provider and ``MDQ_BACKFILL_PROVIDER``
            is unset: there is nothing to schedule.
    """
    from mdq.db.instruments import list_instrument_sources

    settings = load_settings()
    options = BackfillOptions.from_settings(settings)
    cap = max(1, min(max_concurrency or settings.backfill_max_concurrency, MAX_WORKERS))
    runner = run_wave or _thread_waves(notifier)
    results: list[SeriesResult] = []
    with _database(settings, database) as target:
        with connect(target, autocommit=True) as conn:
            sources = list_instrument_sources(conn, scheduled_only=True)
        if not sources and settings.backfill_provider is None:
            raise ProviderConfigError(
                "(none)",
                "nothing to schedule: no active instrument names a provider (add one with "
                "`mdq instruments add`) and MDQ_BACKFILL_PROVIDER is unset (csv with "
                "MDQ_BACKFILL_PATH, or synthetic)",
            )
        for (name, exchange), group in _groups(sources).items():
            prov = _group_provider(name, exchange, group, settings)
            requests = _scheduled_requests(target, prov, group)
            done = _run_waves(target, prov, requests, options, cap, runner, on_result)
            logger.info("%s: %s", prov.name, account(prov, done).line())
            results.extend(done)
        if settings.backfill_provider is not None:
            results.extend(
                run_backfill(
                    settings.backfill_provider,
                    path=settings.backfill_path,
                    database=target,
                    notifier=notifier,
                    max_concurrency=max_concurrency,
                    on_result=on_result,
                    run_wave=runner,
                )
            )
    return results


def _groups(sources: Sequence[Any]) -> dict[tuple[str, str | None], list[Any]]:
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for source in sources:
        groups.setdefault((source.provider, source.provider_exchange), []).append(source)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))


def _group_provider(
    name: str, exchange: str | None, group: Sequence[Any], settings: Settings
) -> Provider:
    """The provider of one (provider, exchange) group, or an :class:`UnavailableProvider`."""
    frames = sorted({t for s in group for t in s.timeframes})
    try:
        return make_provider(
            name,
            path=settings.backfill_path,
            symbols={s.symbol: s.source_symbol for s in group}
            if name in ("yfinance", "ccxt")
            else [s.symbol for s in group],
            timeframes=frames,
            exchange=exchange,
        )
    except MdqError as exc:
        logger.warning(
            "provider %s%s unavailable: %s", name, f"/{exchange}" if exchange else "", exc
        )
        return UnavailableProvider(name, exc)


def _scheduled_requests(
    target: Database, prov: Provider, group: Sequence[Any]
) -> list[SeriesRequest]:
    """One scheduled request per (instrument, timeframe); the provider's metadata refreshes
    the instruments first when it can be read (else their stored calendars are used)."""
    from mdq.db.instruments import list_instrument_sources

    with connect(target, autocommit=True) as conn:
        try:
            offered = prov.list_series()
        except MdqError as exc:
            logger.warning("%s: instruments not refreshed: %s", prov.name, exc)
            offered = []
        wanted = {s.symbol for s in group}
        known = {i.symbol: i for i in db.get_instruments(conn, active_only=False)}
        db.upsert_instruments(
            conn,
            {
                _with_calendar(s, known, prov).instrument
                for s in offered
                if s.instrument.symbol in wanted
            },
        )
        current = {s.symbol: s for s in list_instrument_sources(conn) if s.symbol in wanted}
    return [
        SeriesRequest(s.symbol, t, None, current[s.symbol].calendar, current[s.symbol].asset_class)
        for s in sorted(group, key=lambda g: g.symbol)
        for t in s.timeframes
    ]


def _database(settings: Settings, database: Database | None) -> Any:
    import contextlib

    from mdq.db.migrate import open_migrated_database

    if database is not None:
        return contextlib.nullcontext(database)
    return open_migrated_database(settings)


# -- sample data -----------------------------------------------------------------------------------


def load_sample_data(
    database: Database,
    *,
    options: BackfillOptions | None = None,
    notifier: Notifier | None = None,
    on_result: Callable[[SeriesResult], None] | None = None,
) -> list[SeriesResult]:
    """Load every shipped sample file and its instruments (without Prefect; for ``mdq demo``).

    Each series loads its whole range. Re-running inserts 0 rows (everything is unchanged).

    Args:
        database: a migrated database.
        options: tuning (default: :class:`BackfillOptions` defaults).
        notifier: alert delivery.
        on_result: called with each series' result.

    Returns:
        One result per (file, symbol, timeframe), files in name order.

    Raises:
        AccountingMismatch: a file's rows do not add up.
    """
    from mdq.providers.csv_file import CsvFileProvider, sample_files

    options = options or BackfillOptions()
    results = []
    for path in sample_files():
        provider = CsvFileProvider(path)
        with connect(database, autocommit=True) as conn:
            requests, series = plan_requests(provider, conn, None, None, None)
            db.upsert_instruments(conn, [s.instrument for s in series])
        file_results = [
            load_series(database, provider, request, options, notifier=notifier)
            for request in requests
        ]
        file_results += record_rejected_series(
            database, provider, requests, None, None, None, options, notifier=notifier
        )
        account(provider, file_results)
        for result in file_results:
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
