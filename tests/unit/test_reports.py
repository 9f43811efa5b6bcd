"""What the flows publish: run names, the backfill's Failed message, the anomaly table."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from mdq.backfill_core import SeriesResult
from mdq.db.anomalies import StoredAnomaly
from mdq.exceptions import (
    DatabaseUnreachable,
    ProviderConfigError,
    ProviderError,
    SeriesFailed,
    is_transient,
)
from mdq.reports import anomaly_rows, backfill_failure_message, backfill_rows, run_name
from mdq.windows import Window

WINDOW = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
RUN = datetime(2026, 12, 1, 2, 5, 30, tzinfo=UTC)


def _result(symbol: str, status: str, error: str | None = None, **counts: int) -> SeriesResult:
    return SeriesResult(symbol, "1d", uuid.uuid4(), status, WINDOW, error=error, **counts)


def _anomaly(
    symbol: str | None,
    kind: str,
    severity: str,
    status: str,
    first: datetime,
    resolved: datetime | None = None,
) -> StoredAnomaly:
    return StoredAnomaly(
        1, "f", "check", None, kind, severity, symbol, None, "1d", None, None, None, None, {},
        status, first, first, resolved, 1,
    )  # fmt: skip


def test_run_names_say_what_ran_and_when_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert run_name("backfill", datetime(2026, 12, 1, 3, 0, tzinfo=paris), "csv") == (
        "backfill csv 2026-12-01T02:00Z"
    )
    assert run_name("quality-checks", RUN) == "quality-checks 2026-12-01T02:05Z"


def test_the_failed_message_names_every_failed_series_and_why() -> None:
    results = [
        _result("AAPL", "completed", fetched=3, inserted=3),
        _result("NOSUCH", "failed", "no progress: the provider returned no candles"),
        _result("MSFT", "skipped", "held by another execution"),
    ]
    assert backfill_failure_message(results) == (
        "1 of 3 series failed: NOSUCH/1d: no progress: the provider returned no candles"
    )
    assert backfill_failure_message(results[:1]) is None
    assert backfill_rows(results[:1]) == [
        {
            "series": "AAPL/1d",
            "status": "completed",
            "fetched": 3,
            "inserted": 3,
            "updated": 0,
            "unchanged": 0,
            "quarantined": 0,
            "duplicates": 0,
            "error": "",
        }
    ]


def test_anomaly_rows_count_open_new_and_resolved_by_symbol_type_severity() -> None:
    before = RUN - timedelta(days=1)
    rows = anomaly_rows(
        [
            _anomaly("AAPL", "gap", "warn", "open", before),
            _anomaly("AAPL", "gap", "warn", "open", RUN),
            _anomaly("AAPL", "gap", "warn", "resolved", before, RUN),
            _anomaly("BTC", "ohlc_integrity", "error", "open", RUN),
            _anomaly(None, "staleness", "warn", "open", before),
        ],
        RUN,
    )
    assert rows == [
        {"symbol": "BTC", "anomaly_type": "ohlc_integrity", "severity": "error", "open": 1,
         "new": 1, "resolved": 0},
        {"symbol": "", "anomaly_type": "staleness", "severity": "warn", "open": 1, "new": 0,
         "resolved": 0},
        {"symbol": "AAPL", "anomaly_type": "gap", "severity": "warn", "open": 2, "new": 1,
         "resolved": 1},
    ]  # fmt: skip


def test_the_retry_marker_is_the_errors_own_not_its_message() -> None:
    assert is_transient(ProviderError("csv", "read timed out"))
    assert is_transient(DatabaseUnreachable("h:5432/db", "connection refused"))
    assert is_transient(ConnectionResetError("reset by peer"))
    assert is_transient(TimeoutError())
    assert not is_transient(ProviderConfigError("csv", "timed out"))  # message is irrelevant
    assert not is_transient(ValueError("timeout"))
    failed = _result("X", "failed", "ProviderError: provider csv: timeout")
    assert not is_transient(SeriesFailed(failed))
    assert is_transient(SeriesFailed(replace(failed, transient=True)))
