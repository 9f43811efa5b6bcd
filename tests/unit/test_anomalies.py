"""Turning dbt test results and failing rows into anomaly records (no database, no dbt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mdq.anomalies import (
    SAMPLE_SIZE,
    anomalies_from_rows,
    fingerprint,
    row_shape,
    severity_of,
)
from mdq.dbt_runner import DbtTestResult


def make_test(**overrides: object) -> DbtTestResult:
    values: dict[str, object] = {
        "unique_id": "test.mdq.future_candles_stg_market__candles_.2aaf6a1390",
        "name": "future_candles_stg_market__candles_",
        "test_name": "future_candles",
        "status": "fail",
        "severity": "error",
        "failures": 1,
        "message": "Got 1 result, configured to fail if != 0",
        "audit_schema": "mdq_audit",
        "audit_table": "future_candles_stg_market__candles_",
        "model": "stg_market__candles",
    }
    values.update(overrides)
    return DbtTestResult(**values)  # type: ignore[arg-type]


def contract_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "check_name": "candle_gaps",
        "anomaly_type": "gap",
        "severity": "error",
        "symbol": "BTCUSD",
        "asset_class": "crypto",
        "timeframe": "1m",
        "ts_start": "2024-03-01T10:00:00+00:00",
        "ts_end": "2024-03-01T10:59:00+00:00",
        "observed_value": 60,
        "expected_value": 0,
        "failure_reason": "60 missing 1m candles",
    }
    row.update(overrides)
    return row


T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)


def test_fingerprint_is_the_same_instant_in_any_zone_and_changes_with_each_part() -> None:
    base = fingerprint("candle_gaps", "gap", "BTCUSD", "1m", T0)
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert fingerprint("candle_gaps", "gap", "BTCUSD", "1m", paris) == base
    assert fingerprint("candle_gaps", "gap", "BTCUSD", "1m", T0.replace(tzinfo=None)) == base
    assert len(base) == 64
    variants = [
        fingerprint("candle_outliers", "gap", "BTCUSD", "1m", T0),
        fingerprint("candle_gaps", "outlier", "BTCUSD", "1m", T0),
        fingerprint("candle_gaps", "gap", "ETHUSD", "1m", T0),
        fingerprint("candle_gaps", "gap", "BTCUSD", "1h", T0),
        fingerprint("candle_gaps", "gap", "BTCUSD", "1m", T0 + timedelta(minutes=1)),
        fingerprint("candle_gaps", "gap", "BTCUSD", "1m", None),
        # no separator ambiguity: moving text between parts changes the identity
        fingerprint("candle_gaps", "gap", "BTCUSD1", "m", T0),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


@pytest.mark.parametrize(
    ("columns", "shape"),
    [
        pytest.param(list(contract_row()), "contract", id="contract"),
        pytest.param([*contract_row(), "z_score"], "contract", id="contract-plus-extra"),
        pytest.param(
            ["symbol", "asset_class", "timeframe", "ts", "open", "close"], "context", id="candle"
        ),
        pytest.param(["SYMBOL", "TIMEFRAME", "TS_START"], "context", id="upper-case"),
        pytest.param(["symbol", "calendar", "quote_currency"], "other", id="instrument"),
        pytest.param(["unique_field", "n_records"], "other", id="unique-test"),
    ],
)
def test_row_shape(columns: list[str], shape: str) -> None:
    assert row_shape(columns) == shape


def test_contract_rows_become_one_record_each_with_their_own_values() -> None:
    test = make_test(failures=2, name="candle_gaps_int", test_name="candle_gaps")
    rows = [
        contract_row(z_score=4.5),
        contract_row(
            severity="warn",
            ts_start="2024-03-01T12:00:00Z",
            ts_end="2024-03-01T12:04:00Z",
            observed_value=5,
        ),
    ]
    first, second = anomalies_from_rows(test, rows)
    assert first.check_name == "candle_gaps"
    assert first.anomaly_type == "gap"
    assert first.severity == "error"
    assert (first.symbol, first.asset_class, first.timeframe) == ("BTCUSD", "crypto", "1m")
    assert first.ts_start == T0
    assert first.ts_end == datetime(2024, 3, 1, 10, 59, tzinfo=UTC)
    assert (first.observed_value, first.expected_value) == (60.0, 0.0)
    assert first.details["failure_reason"] == "60 missing 1m candles"
    assert first.details["extra"] == {"z_score": 4.5}
    assert first.fingerprint == fingerprint("candle_gaps", "gap", "BTCUSD", "1m", T0)
    assert first.dbt_unique_id == test.unique_id
    assert second.severity == "warn"
    assert second.ts_start == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_rows_sharing_a_fingerprint_are_recorded_once() -> None:
    records = anomalies_from_rows(make_test(failures=2), [contract_row(), contract_row()])
    assert len(records) == 1


def test_severity_comes_from_the_row_else_from_the_dbt_verdict() -> None:
    assert severity_of(make_test(), "warn") == "warn"
    assert severity_of(make_test(), "error") == "error"
    # the project's checks run as dbt warn tests and carry the real severity on each row
    assert severity_of(make_test(severity="warn", status="warn"), "error") == "error"
    assert severity_of(make_test(severity="warn", status="warn"), None) == "warn"
    assert severity_of(make_test(status="warn"), None) == "warn"
    assert severity_of(make_test(status="fail"), "bogus") == "error"


def test_candle_context_rows_become_one_record_per_row() -> None:
    test = make_test(
        name="not_null_stg_market__candles_source",
        test_name="not_null",
        failures=2,
        message="Got 2 results, configured to fail if != 0",
    )
    rows = [
        {
            "symbol": "AAPL",
            "asset_class": "stock",
            "timeframe": "1d",
            "ts": "2024-01-02T14:30:00+00:00",
            "source": None,
        },
        {
            "symbol": "AAPL",
            "asset_class": "stock",
            "timeframe": "1d",
            "ts": "2024-01-03T14:30:00+00:00",
            "source": None,
        },
    ]
    records = anomalies_from_rows(test, rows)
    assert [r.ts_start for r in records] == [
        datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
        datetime(2024, 1, 3, 14, 30, tzinfo=UTC),
    ]
    assert all(r.ts_end == r.ts_start for r in records)
    assert {r.check_name for r in records} == {"not_null_stg_market__candles_source"}
    assert {r.anomaly_type for r in records} == {"not_null"}
    assert {r.severity for r in records} == {"error"}
    assert records[0].details["row"]["symbol"] == "AAPL"


def test_rows_without_candle_context_become_one_record_for_the_test_with_samples() -> None:
    test = make_test(
        name="not_null_stg_market__instruments_quote_currency",
        test_name="not_null",
        status="warn",
        severity="warn",
        failures=25,
        message="Got 25 results, configured to warn if != 0",
        audit_table="not_null_stg_market__instruments_quote_currency",
        model="stg_market__instruments",
    )
    rows = [{"symbol": f"S{i:02d}", "quote_currency": None} for i in range(25)]
    (record,) = anomalies_from_rows(test, rows)
    assert record.check_name == "not_null_stg_market__instruments_quote_currency"
    assert record.anomaly_type == "not_null"
    assert record.severity == "warn"
    assert (record.symbol, record.timeframe, record.ts_start) == (None, None, None)
    assert (record.observed_value, record.expected_value) == (25.0, 0.0)
    assert record.details["failing_rows"] == 25
    assert record.details["sample_rows"] == rows[:SAMPLE_SIZE]
    assert record.details["audit_relation"] == (
        "mdq_audit.not_null_stg_market__instruments_quote_currency"
    )
    assert record.fingerprint == fingerprint(test.name, "not_null", None, None, None)


def test_a_failing_test_without_stored_rows_still_becomes_one_record() -> None:
    test = make_test(
        test_name=None,
        name="assert_no_negative_volume",
        failures=3,
        audit_schema=None,
        audit_table=None,
    )
    (record,) = anomalies_from_rows(test, [])
    assert record.anomaly_type == "data_test"
    assert record.observed_value == 3.0
    assert record.details["sample_rows"] == []


def test_a_passing_test_with_no_rows_gives_nothing() -> None:
    assert anomalies_from_rows(make_test(status="pass", failures=0), []) == []


def test_a_bad_timestamp_names_the_test_and_the_column() -> None:
    with pytest.raises(ValueError, match="future_candles_stg_market__candles_: column ts_start"):
        anomalies_from_rows(make_test(), [contract_row(ts_start="yesterday")])


@pytest.mark.parametrize(
    ("flags", "selection"),
    [
        pytest.param((True, True, True), None, id="all-means-whole-project"),
        pytest.param((True, False, False), ["+tag:gaps"], id="gaps"),
        pytest.param((False, True, True), ["+tag:outliers", "+tag:staleness"], id="two"),
        pytest.param((False, False, False), [], id="none"),
    ],
)
def test_check_selection(flags: tuple[bool, bool, bool], selection: list[str] | None) -> None:
    from mdq.quality import check_selection

    assert check_selection(*flags) == selection


def test_an_empty_selection_runs_nothing() -> None:
    from mdq.db import Database
    from mdq.dbt_runner import build

    nowhere = Database("/nonexistent", 1, "nobody", "", "nothing")
    result = build(nowhere, "mdq", select=[], use_prefect=False)
    assert (result.success, result.tests, result.nodes) == (True, (), ())
