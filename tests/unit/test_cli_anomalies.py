"""Plain helpers of `mdq anomalies` (issue 12): instants and durations, CSV rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import typer

from mdq.cli_anomalies import anomalies_csv, parse_instant
from mdq.db.anomalies import StoredAnomaly


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("12h", timedelta(hours=12), id="hours"),
        pytest.param("7d", timedelta(days=7), id="days"),
        pytest.param("2w", timedelta(weeks=2), id="weeks"),
    ],
)
def test_until_takes_a_duration_from_now(text: str, delta: timedelta) -> None:
    before = datetime.now(UTC)
    parsed = parse_instant(text, "--until", relative=True)
    assert parsed is not None
    assert before + delta <= parsed <= datetime.now(UTC) + delta


def test_instants_need_a_zone_and_durations_only_where_allowed() -> None:
    assert parse_instant("2024-06-01", "--since") == datetime(2024, 6, 1, tzinfo=UTC)
    assert parse_instant("2024-06-01T02:00:00+02:00", "--since") == datetime(2024, 6, 1, tzinfo=UTC)
    with pytest.raises(typer.BadParameter, match="has no time zone"):
        parse_instant("2024-06-01T02:00:00", "--since")
    with pytest.raises(typer.BadParameter, match="not an ISO 8601 timestamp"):
        parse_instant("7d", "--since")
    with pytest.raises(typer.BadParameter, match="or a duration like 7d"):
        parse_instant("soon", "--until", relative=True)


def test_csv_has_one_header_and_one_line_per_anomaly() -> None:
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    row = StoredAnomaly(
        7, "f" * 64, "candle_gaps", "test.x", "gap", "error", "EURUSD", "forex", "1h",
        datetime(2017, 12, 25, 22, tzinfo=UTC), datetime(2017, 12, 26, 5, tzinfo=UTC),
        8.0, 0.0, {"failure_reason": "8 missing, \"quoted\""}, "open", seen, seen, None, 1,
        "muted",
    )  # fmt: skip
    parsed = list(csv.DictReader(io.StringIO(anomalies_csv([row]))))
    assert len(parsed) == 1
    assert (parsed[0]["anomaly_id"], parsed[0]["triage_status"], parsed[0]["resolved_at"]) == (
        "7",
        "muted",
        "",
    )
    assert parsed[0]["ts_start"] == "2017-12-25T22:00:00+00:00"
    assert parsed[0]["details"] == '{"failure_reason": "8 missing, \\"quoted\\""}'
