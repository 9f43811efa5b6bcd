"""Turning dbt test results and their failing rows into anomaly records (plain logic).

No Prefect, no database here: :mod:`mdq.db.anomalies` reads the failing rows and writes the
records, :mod:`flows.quality_checks` orchestrates. Three shapes of failing rows are handled:

1. **Contract rows** (the project's checks): every column of :data:`CONTRACT_COLUMNS` is
   present. One anomaly per row; the row says its check, type, severity and place.
2. **Context rows** (e.g. an analyst's ``not_null`` on a candle model, whose stored failures are
   the candles themselves): ``symbol``, ``timeframe`` and ``ts`` (or ``ts_start``) are present.
   One anomaly per row; check = the test's name, type = the generic test's name.
3. **Anything else** (a ``not_null`` on a table without candle context, a singular test): one
   anomaly for the whole test, with the failing-row count and a sample of rows in ``details``.

An anomaly's identity is its fingerprint: sha256 of (check_name, anomaly_type, symbol,
timeframe, ts_start), so a re-run recognises the same finding.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mdq.dbt_runner import DbtTestResult

TAnomalySeverity = Literal["warn", "error"]

#: The columns every project check returns, in this order (the anomaly contract, README).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "check_name",
    "anomaly_type",
    "severity",
    "symbol",
    "asset_class",
    "timeframe",
    "ts_start",
    "ts_end",
    "observed_value",
    "expected_value",
    "failure_reason",
)

#: How many failing rows a per-test anomaly keeps in ``details.sample_rows``.
SAMPLE_SIZE = 10


@dataclass(frozen=True)
class AnomalyRecord:
    """One finding, ready to be upserted into ``data_anomalies``.

    Attributes:
        fingerprint: sha256 hex of (check_name, anomaly_type, symbol, timeframe, ts_start).
        check_name: the check, e.g. ``future_candles`` or ``not_null_stg_market__candles_symbol``.
        dbt_unique_id: the dbt test node that produced it.
        anomaly_type: e.g. ``gap``, ``outlier``, ``future_candle``, ``not_null``.
        severity: ``warn`` or ``error``.
        symbol: instrument symbol, or None when the test has no candle context.
        asset_class: asset class, or None.
        timeframe: candle timeframe (``1m``, ``1d``, ...), or None.
        ts_start: first candle concerned, UTC-aware, or None.
        ts_end: last candle concerned, UTC-aware, or None.
        observed_value: e.g. missing candles, robust z-score, failing-row count.
        expected_value: the expectation or threshold it was judged against.
        details: JSON-serialisable context (``failure_reason`` always; sample rows, extra
            columns, the audit relation).
    """

    fingerprint: str
    check_name: str
    dbt_unique_id: str
    anomaly_type: str
    severity: TAnomalySeverity
    symbol: str | None
    asset_class: str | None
    timeframe: str | None
    ts_start: datetime | None
    ts_end: datetime | None
    observed_value: float | None
    expected_value: float | None
    details: Mapping[str, Any] = field(default_factory=dict)


def fingerprint(
    check_name: str,
    anomaly_type: str,
    symbol: str | None,
    timeframe: str | None,
    ts_start: datetime | None,
) -> str:
    """The stable identity of a finding.

    Args:
        check_name: the check's name.
        anomaly_type: the anomaly type.
        symbol: symbol or None.
        timeframe: timeframe or None.
        ts_start: first candle concerned; naive values are read as UTC; None allowed.

    Returns:
        64 hex characters: sha256 of the JSON array of the five parts, ``ts_start`` as UTC
        ISO 8601 (so the same instant in any time zone gives the same fingerprint).
    """
    stamp = _utc(ts_start).isoformat() if ts_start is not None else None
    payload = json.dumps([check_name, anomaly_type, symbol, timeframe, stamp], ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def row_shape(columns: Iterable[str]) -> Literal["contract", "context", "other"]:
    """Which of the three shapes (module docstring) failing rows with these columns have.

    Args:
        columns: column names of the stored failures (case-insensitive).
    """
    names = {name.lower() for name in columns}
    if set(CONTRACT_COLUMNS) <= names:
        return "contract"
    if {"symbol", "timeframe"} <= names and names & {"ts", "ts_start"}:
        return "context"
    return "other"


def severity_of(test: DbtTestResult, row_severity: object = None) -> TAnomalySeverity:
    """The severity of a finding.

    A row's own ``severity`` (from the check's dbt vars, per symbol, asset class and timeframe)
    is used when it is ``warn`` or ``error``: each of the project's checks carries the severity
    on every row, and dbt's verdict follows the rows (``error_if``: fail when a row says error,
    else warn), so a check with warn and error rows is one failing test whose warn rows stay
    warn. Rows without one (an analyst's plain test) take dbt's verdict: status ``warn`` or a
    test configured ``severity: warn`` → warn, ``fail`` → error.

    Args:
        test: the dbt test result.
        row_severity: the row's ``severity`` value, if any.
    """
    if row_severity in ("warn", "error"):
        return row_severity  # type: ignore[return-value]
    if test.severity == "warn":
        return "warn"
    return "warn" if test.status == "warn" else "error"


def anomalies_from_rows(
    test: DbtTestResult,
    rows: Sequence[Mapping[str, Any]],
    *,
    failing_rows: int | None = None,
) -> list[AnomalyRecord]:
    """Turn one warning or failing test's stored rows into anomaly records.

    Args:
        test: the dbt test result (status ``warn`` or ``fail``).
        rows: its failing rows as JSON-like mappings (column → value; timestamps may be
            datetimes or ISO 8601 strings). For the third shape a sample is enough.
        failing_rows: total failing rows (default: dbt's count, else ``len(rows)``).

    Returns:
        Records in row order, one per distinct fingerprint (the first row of a fingerprint
        wins). Empty when ``rows`` is empty and the test found nothing.

    Raises:
        ValueError: a timestamp column holds a value that is not ISO 8601.
    """
    total = failing_rows if failing_rows is not None else test.failures
    if total is None:
        total = len(rows)
    if not rows and not total:
        return []
    shape = row_shape(rows[0].keys()) if rows else "other"
    if shape == "other":
        return [_per_test_record(test, rows, total)]
    records = [
        _contract_record(test, row) if shape == "contract" else _context_record(test, row)
        for row in rows
    ]
    return unique_by_fingerprint(records)


def unique_by_fingerprint(records: Iterable[AnomalyRecord]) -> list[AnomalyRecord]:
    """Drop later records whose fingerprint was already seen (input order kept)."""
    seen: set[str] = set()
    kept: list[AnomalyRecord] = []
    for record in records:
        if record.fingerprint not in seen:
            seen.add(record.fingerprint)
            kept.append(record)
    return kept


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (datetimes → ISO 8601, NaN/inf → strings)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------


def _contract_record(test: DbtTestResult, row: Mapping[str, Any]) -> AnomalyRecord:
    row = {key.lower(): value for key, value in row.items()}
    check_name = str(row["check_name"] or test.test_name or test.name)
    anomaly_type = str(row["anomaly_type"] or test.test_name or "data_test")
    symbol = _text(row["symbol"])
    timeframe = _text(row["timeframe"])
    ts_start = _timestamp(row["ts_start"], "ts_start", test)
    extra = {k: v for k, v in row.items() if k not in CONTRACT_COLUMNS}
    details: dict[str, Any] = {
        "failure_reason": _text(row["failure_reason"]) or "",
        "dbt_test": test.name,
    }
    if test.model:
        details["model"] = test.model
    if extra:
        details["extra"] = json_safe(extra)
    return AnomalyRecord(
        fingerprint=fingerprint(check_name, anomaly_type, symbol, timeframe, ts_start),
        check_name=check_name,
        dbt_unique_id=test.unique_id,
        anomaly_type=anomaly_type,
        severity=severity_of(test, row["severity"]),
        symbol=symbol,
        asset_class=_text(row["asset_class"]),
        timeframe=timeframe,
        ts_start=ts_start,
        ts_end=_timestamp(row["ts_end"], "ts_end", test),
        observed_value=_number(row["observed_value"]),
        expected_value=_number(row["expected_value"]),
        details=details,
    )


def _context_record(test: DbtTestResult, row: Mapping[str, Any]) -> AnomalyRecord:
    row = {key.lower(): value for key, value in row.items()}
    check_name = test.name
    anomaly_type = test.test_name or "data_test"
    symbol = _text(row.get("symbol"))
    timeframe = _text(row.get("timeframe"))
    start_key = "ts_start" if "ts_start" in row else "ts"
    end_key = "ts_end" if "ts_end" in row else start_key
    ts_start = _timestamp(row.get(start_key), start_key, test)
    reason = f"dbt test {test.name} failed for this row"
    if test.message:
        reason += f" ({test.message})"
    details: dict[str, Any] = {
        "failure_reason": reason,
        "dbt_test": test.name,
        "row": json_safe(row),
    }
    if test.model:
        details["model"] = test.model
    return AnomalyRecord(
        fingerprint=fingerprint(check_name, anomaly_type, symbol, timeframe, ts_start),
        check_name=check_name,
        dbt_unique_id=test.unique_id,
        anomaly_type=anomaly_type,
        severity=severity_of(test, row.get("severity")),
        symbol=symbol,
        asset_class=_text(row.get("asset_class")),
        timeframe=timeframe,
        ts_start=ts_start,
        ts_end=_timestamp(row.get(end_key), end_key, test),
        observed_value=None,
        expected_value=None,
        details=details,
    )


def _per_test_record(
    test: DbtTestResult, rows: Sequence[Mapping[str, Any]], total: int
) -> AnomalyRecord:
    anomaly_type = test.test_name or "data_test"
    reason = f"dbt test {test.name} returned {total} failing row(s)"
    if test.message:
        reason += f": {test.message}"
    details: dict[str, Any] = {
        "failure_reason": reason,
        "dbt_test": test.name,
        "failing_rows": total,
        "sample_rows": [json_safe(dict(row)) for row in rows[:SAMPLE_SIZE]],
    }
    if test.model:
        details["model"] = test.model
    if test.audit_schema and test.audit_table:
        details["audit_relation"] = f"{test.audit_schema}.{test.audit_table}"
    return AnomalyRecord(
        fingerprint=fingerprint(test.name, anomaly_type, None, None, None),
        check_name=test.name,
        dbt_unique_id=test.unique_id,
        anomaly_type=anomaly_type,
        severity=severity_of(test),
        symbol=None,
        asset_class=None,
        timeframe=None,
        ts_start=None,
        ts_end=None,
        observed_value=float(total),
        expected_value=0.0,
        details=details,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamp(value: Any, column: str, test: DbtTestResult) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(
            f"dbt test {test.name}: column {column} holds {value!r}, not an ISO 8601 timestamp"
        ) from None
