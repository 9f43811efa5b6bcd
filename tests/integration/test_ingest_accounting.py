"""Nothing silent (issue 10 point 3, issue 16 points 1, 2, 5): every input row is stored,
quarantined with its reason and row number, or refused with a reason; the run says so.

The corpus holds each kind of bad input that used to vanish or crash (hand-written) and
seeded random mutations of valid rows (generated). The property: stored + quarantined +
duplicates + outside the window + not requested + not loaded = input rows, each term checked
against the database, not just against the loader's own counts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from mdq.backfill_core import Accounting, SeriesResult, run_backfill
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.exceptions import UnknownSymbols
from mdq.health import run_health_check
from mdq.notify import RecordingNotifier
from mdq.quality import run_quality_checks

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"


@pytest.fixture(scope="module")
def acc_database(make_database: Callable[[], Database]) -> Database:
    """A migrated database for this module only."""
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def aconn(acc_database: Database) -> Iterator[psycopg.Connection]:
    with connect(acc_database, autocommit=True) as connection:
        yield connection


def load(database: Database, path: Path, **kwargs: object) -> tuple[list[SeriesResult], Accounting]:
    seen: list[Accounting] = []
    results = run_backfill(
        "csv",
        path=str(path),
        database=database,
        notifier=RecordingNotifier(),
        on_accounting=seen.append,
        **kwargs,  # type: ignore[arg-type]
    )
    assert len(seen) == 1
    return results, seen[0]


# -- the corpus ------------------------------------------------------------------------------------

# Each entry: (id, file body after the header, expected (stored, quarantined, duplicates)).
# Symbols are unique per entry so that database counts can be checked per entry.
HAND_WRITTEN = [
    pytest.param(
        "NAIVE,stock,1d,2024-03-13T00:00:00,50.1,50.9,49.8,50.6,1200000\n"
        "NAIVE,stock,1d,2024-03-14T00:00:00,50.6,51.4,50.2,51.1,1310000\n",
        (0, 2, 0),
        id="naive-timestamps",
    ),
    pytest.param(
        "TFW,crypto,1hour,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        "TFW,crypto,1H,2024-03-13T01:00:00Z,1,2,0.5,1.5,1\n",
        (0, 2, 0),
        id="timeframe-written-1hour-and-1H",
    ),
    pytest.param(
        "NULLTS,crypto,1h,,1,2,0.5,1.5,1\nNULLTS,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.5,1\n",
        (1, 1, 0),
        id="null-ts",
    ),
    pytest.param(
        "HUGE,crypto,1h,2024-03-13T00:00:00Z,1e308,1e308,1,1,1\n"
        "HUGE,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.5,1e300\n"
        "HUGE,crypto,1h,2024-03-13T02:00:00Z,-1,2,0.5,1.5,1\n"
        "HUGE,crypto,1h,2024-03-13T03:00:00Z,nan,2,0.5,1.5,1\n"
        "HUGE,crypto,1h,2024-03-13T04:00:00Z,1,inf,0.5,1.5,1\n"
        "HUGE,crypto,1h,2024-03-13T05:00:00Z,1,2,0.5,1.5,1\n",
        (1, 5, 0),
        id="extreme-values-1e308-negative-nan-inf",
    ),
    pytest.param(
        "YEARS,crypto,1h,9999-12-31T23:00:00Z,1,2,0.5,1.5,1\n"
        "YEARS,crypto,1h,1500-01-01T00:00:00Z,1,2,0.5,1.5,1\n"
        "YEARS,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n",
        (1, 2, 0),
        id="years-outside-1677-2262",
    ),
    pytest.param(
        "NU\x00L,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        "NULV,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\x002\n"
        "NULV,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.5,1\n",
        (1, 2, 0),
        id="nul-bytes",
    ),
    pytest.param(
        "S" * 10_000_000 + ",crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        "LONGOK,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n",
        (1, 1, 0),
        id="10MB-symbol",
    ),
    pytest.param(
        "DUPS,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        "DUPS,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        "DUPS,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.5,1\n"
        "DUPS,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.7,1\n",
        (2, 1, 1),
        id="exact-and-conflicting-duplicates",
    ),
    pytest.param(
        "OFFG,stock,1h,2024-03-13T13:30:00Z,1,2,0.5,1.5,1\n"
        "OFFG,stock,1h,2024-03-13T14:47:00Z,1,2,0.5,1.5,1\n",
        (1, 1, 0),
        id="off-grid",
    ),
]


def _generated(seed: int) -> tuple[str, str]:
    """A random file of 12 rows: valid rows of one 1h crypto series, each mutated with
    probability 1/2 by one of the faults above (a seeded, reproducible corpus)."""
    rng = random.Random(seed)
    symbol = f"GEN{seed}"
    faults = [
        lambda r: {**r, "ts": r["ts"].replace("Z", "")},
        lambda r: {**r, "timeframe": rng.choice(["1hour", "1H", "60", ""])},
        lambda r: {**r, "ts": rng.choice(["", "not a date", "9999-01-01T00:00:00Z"])},
        lambda r: {**r, "open": rng.choice(["1e308", "-3", "nan", "inf", "x", ""])},
        lambda r: {**r, "volume": rng.choice(["-1", "1e300", "\x00"])},
        lambda r: {**r, "symbol": rng.choice(["", "A\x00B", "Z" * 100])},
        lambda r: {**r, "high": "0.1"},
        lambda r: {**r, "ts": r["ts"].replace(":00:00Z", ":30:00Z")},
    ]
    lines = []
    for i in range(12):
        row = {
            "symbol": symbol,
            "asset_class": "crypto",
            "timeframe": "1h",
            "ts": f"2024-04-01T{i:02d}:00:00Z",
            "open": "10",
            "high": "11",
            "low": "9",
            "close": "10.5",
            "volume": "5",
        }
        if rng.random() < 0.5:
            row = rng.choice(faults)(row)
        if rng.random() < 0.1 and lines:
            lines.append(lines[-1])  # an exact repeat
        lines.append(",".join(row[c] for c in HEADER.strip().split(",")))
    return symbol, "\n".join(lines) + "\n"


def _check_property(
    conn: psycopg.Connection, path: Path, results: list[SeriesResult], accounting: Accounting
) -> None:
    data_rows = len(pd.read_csv(path, dtype=str, keep_default_na=False))
    assert accounting.input_rows == data_rows
    total = (
        accounting.stored
        + accounting.quarantined
        + accounting.duplicates
        + accounting.outside_window
        + accounting.not_requested
        + accounting.not_loaded
    )
    assert total == data_rows
    ids = [r.execution_id for r in results]
    in_quarantine = conn.execute(
        "select count(*) from quarantined_candles where execution_id = any(%s)", (ids,)
    ).fetchone()
    assert in_quarantine == (accounting.quarantined,)
    states = conn.execute(
        """
        select coalesce(sum(records_fetched), 0),
            coalesce(sum(records_inserted + records_updated + records_unchanged
                + records_quarantined + records_duplicate), 0)
        from backfill_state_persistent where execution_id = any(%s)
        """,
        (ids,),
    ).fetchone()
    assert states is not None and states[0] == states[1]
    for r in results:
        if r.stored == 0 and r.quarantined > 0:
            assert r.status == "failed", r
            assert (r.error or "").startswith(f"stored nothing: all {r.quarantined} rows")


@pytest.mark.parametrize(("body", "expected"), HAND_WRITTEN)
def test_every_row_of_a_bad_file_is_accounted_for(
    acc_database: Database,
    aconn: psycopg.Connection,
    tmp_path: Path,
    body: str,
    expected: tuple[int, int, int],
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    results, accounting = load(acc_database, path)
    _check_property(aconn, path, results, accounting)
    assert (accounting.stored, accounting.quarantined, accounting.duplicates) == expected
    reasons = aconn.execute(
        "select count(*) from quarantined_candles where execution_id = any(%s)"
        " and reason <> '' and source_row >= 2 and reason_code is not null",
        ([r.execution_id for r in results],),
    ).fetchone()
    assert reasons == (expected[1],)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"generated-{s}") for s in range(12)])
def test_every_row_of_a_generated_bad_file_is_accounted_for(
    acc_database: Database, aconn: psycopg.Connection, tmp_path: Path, seed: int
) -> None:
    _, body = _generated(seed)
    path = tmp_path / f"gen{seed}.csv"
    path.write_text(HEADER + body)
    results, accounting = load(acc_database, path)
    _check_property(aconn, path, results, accounting)


def test_a_parquet_with_wrong_types_is_quarantined_not_lost(
    acc_database: Database, aconn: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "types.parquet"
    pd.DataFrame(
        {
            "symbol": ["PQT", "PQT"],
            "asset_class": ["crypto", "crypto"],
            "timeframe": ["1h", "1h"],
            "ts": [1.5, 2.5],
            "open": ["a", "b"],
            "high": [True, False],
            "low": [1, 1],
            "close": [1, 1],
            "volume": [1, 1],
        }
    ).to_parquet(path)
    results, accounting = load(acc_database, path)
    assert [(r.symbol, r.status, r.quarantined) for r in results] == [("PQT", "failed", 2)]
    assert (accounting.input_rows, accounting.quarantined) == (2, 2)
    reason = aconn.execute(
        "select reason from quarantined_candles where symbol = 'PQT' and source_row = 2"
    ).fetchone()
    assert reason == (
        "ts: a float64 column, not timestamps; open: cannot parse 'a' as a number; "
        "high: a bool column, not numbers",
    )


def test_a_window_and_a_symbol_filter_are_refusals_with_a_reason(
    acc_database: Database, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    path = tmp_path / "two.csv"
    path.write_text(
        HEADER
        + "WIN,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
        + "WIN,crypto,1h,2024-03-13T01:00:00Z,1,2,0.5,1.5,1\n"
        + "WIN,crypto,1h,2024-03-13T02:00:00Z,1,2,0.5,1.5,1\n"
        + "OTHER,crypto,1h,2024-03-13T00:00:00Z,1,2,0.5,1.5,1\n"
    )
    _, accounting = load(
        acc_database,
        path,
        symbols=["WIN"],
        start=datetime(2024, 3, 13, 1, tzinfo=UTC),
        end=datetime(2024, 3, 13, 2, tzinfo=UTC),
    )
    assert accounting == Accounting(4, 1, 0, 0, 2, 1, 0)
    assert accounting.line() == (
        "accounting: 4 input rows = 1 stored + 0 quarantined + 0 duplicates + 2 outside the "
        "window + 1 not requested + 0 not loaded"
    )


def test_a_symbol_the_source_lacks_is_an_error_naming_it_with_no_streak(
    acc_database: Database, aconn: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "one.csv"
    path.write_text(HEADER + "HAVE,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100\n")
    with pytest.raises(UnknownSymbols) as raised:
        run_backfill("csv", ["HAVE", "NOPE"], path=str(path), database=acc_database)
    assert str(raised.value) == "symbol(s) NOPE not in one.csv; it has: HAVE"
    assert aconn.execute(
        "select count(*) from symbol_failure_tracking where symbol in ('HAVE', 'NOPE')"
    ).fetchone() == (0,)
    assert aconn.execute(
        "select count(*) from backfill_state_persistent where symbol in ('HAVE', 'NOPE')"
    ).fetchone() == (0,)


# -- the CLI -------------------------------------------------------------------------------------


def _mdq(database: Database, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDQ_DATABASE_URL": database.url(), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        pytest.param(
            'skip_rows = "abc"\n',
            "error: provider csv: mapping bad.toml: skip_rows must be a whole number >= 0, "
            "not 'abc'",
            id="skip_rows-abc",
        ),
        pytest.param(
            'columns = "x"\n',
            "error: provider csv: mapping bad.toml: columns must be a table ([columns] with "
            "name = value lines), not str",
            id="columns-x",
        ),
    ],
)
def test_a_bad_mapping_value_is_one_line_and_exit_2(
    acc_database: Database, tmp_path: Path, mapping: str, message: str
) -> None:
    (tmp_path / "bad.toml").write_text(mapping)
    (tmp_path / "f.csv").write_text(HEADER)
    result = _mdq(
        acc_database,
        "backfill",
        "--path",
        str(tmp_path / "f.csv"),
        "--mapping",
        str(tmp_path / "bad.toml"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr


def test_a_10MB_single_line_file_is_refused_in_seconds(
    acc_database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "oneline.csv"
    path.write_text("x" * 10_000_000)
    started = time.monotonic()
    result = _mdq(acc_database, "backfill", "--path", str(path), timeout=60)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: provider csv: oneline.csv: columns [")
    assert last.endswith("... (10000000 characters)']")
    assert len(last) < 600
    assert time.monotonic() - started < 60


def test_naive_file_every_row_quarantined_exit_1_then_error_finding_and_unhealthy(
    acc_database: Database, aconn: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "naive.csv"
    path.write_text(
        HEADER
        + "NAIVECLI,stock,1d,2024-03-13T00:00:00,50.1,50.9,49.8,50.6,1200000\n"
        + "NAIVECLI,stock,1d,2024-03-14T00:00:00,50.6,51.4,50.2,51.1,1310000\n"
    )
    result = _mdq(acc_database, "backfill", "--path", str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == [
        "NAIVECLI/1d failed: window (no row placed in time), fetched 2, inserted 0, updated 0, "
        "unchanged 0, quarantined 2, duplicates 0 (stored nothing: all 2 rows quarantined "
        "(2 naive_timestamp, e.g. row 2: naive timestamp '2024-03-13T00:00:00' (no UTC offset) "
        "and the mapping gives no timezone))",
        "accounting: 2 input rows = 0 stored + 2 quarantined + 0 duplicates + 0 outside the "
        "window + 0 not requested + 0 not loaded",
    ]
    assert aconn.execute(
        "select source_row, reason_code from quarantined_candles where symbol = 'NAIVECLI'"
        " order by source_row"
    ).fetchall() == [(2, "naive_timestamp"), (3, "naive_timestamp")]
    state = aconn.execute(
        "select status, records_fetched, records_quarantined from backfill_state_persistent"
        " where symbol = 'NAIVECLI'"
    ).fetchall()
    assert state == [("failed", 2, 2)]
    assert aconn.execute(
        "select consecutive_failures from symbol_failure_tracking where symbol = 'NAIVECLI'"
    ).fetchone() == (1,)

    report = run_quality_checks(acc_database, "mdq", select=["+tag:ingest"], use_prefect=False)
    assert report.verdict == "anomalies"
    finding = aconn.execute(
        """
        select anomaly_type, severity, observed_value, details->'extra'->>'reason_code',
            details->'extra'->>'records_stored',
            jsonb_array_length(details->'extra'->'sample_rows')
        from data_anomalies where check_name = 'quarantined_rows' and symbol = 'NAIVECLI'
        """
    ).fetchall()
    assert finding == [("quarantined_naive_timestamp", "error", 2.0, "naive_timestamp", "0", 2)]
    snapshot = run_health_check(acc_database, RecordingNotifier())
    rejected = [p for p in snapshot.problems if p.subject == "NAIVECLI/1d"]
    assert [(p.kind, p.severity) for p in rejected] == [("rejected_rows", "error")]


# -- revisions are history -------------------------------------------------------------------

REVISED_V1 = """
REVD,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100
REVD,crypto,1h,2024-05-06T01:00:00Z,10.5,11.5,10,11,120
REVD,crypto,1h,2024-05-06T02:00:00Z,11,11.2,10.8,11.1,90
"""
REVISED_V2 = REVISED_V1.replace(
    "2024-05-06T01:00:00Z,10.5,11.5,10,11,120", "2024-05-06T01:00:00Z,10.5,11.5,10,11.2,125"
)


def test_a_corrected_redelivery_is_one_revision_a_finding_and_restorable(
    acc_database: Database, aconn: psycopg.Connection, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    path = tmp_path / "v.csv"
    path.write_text(HEADER + REVISED_V1.strip() + "\n")
    [first] = run_backfill("csv", path=str(path), database=acc_database)
    assert (first.inserted, first.updated) == (3, 0)
    path.write_text(HEADER + REVISED_V2.strip() + "\n")
    [second] = run_backfill("csv", path=str(path), database=acc_database)
    assert (second.inserted, second.updated, second.unchanged) == (0, 1, 2)
    revisions = aconn.execute(
        """
        select revision_id, ts, close, volume, new_close, new_volume, execution_id
        from candle_revisions where symbol = 'REVD'
        """
    ).fetchall()
    assert [r[1:] for r in revisions] == [
        (datetime(2024, 5, 6, 1, tzinfo=UTC), 11.0, 120.0, 11.2, 125.0, second.execution_id)
    ]
    report = run_quality_checks(acc_database, "mdq", select=["+tag:ingest"], use_prefect=False)
    assert report.verdict != "broken"
    assert aconn.execute(
        """
        select anomaly_type, severity, ts_start, round(observed_value::numeric, 6)::float
        from data_anomalies where check_name = 'revised_candles' and symbol = 'REVD'
        """
    ).fetchall() == [("revised_candle", "warn", datetime(2024, 5, 6, 1, tzinfo=UTC), 0.018182)]
    restored = _mdq(acc_database, "revisions", "restore", str(revisions[0][0]))
    assert restored.returncode == 0, restored.stderr
    assert aconn.execute(
        "select close, volume from market_data where symbol = 'REVD' and ts = %s",
        (datetime(2024, 5, 6, 1, tzinfo=UTC),),
    ).fetchone() == (11.0, 120.0)
    assert aconn.execute(
        "select count(*) filter (where restored_at is not null), count(*) from candle_revisions"
        " where symbol = 'REVD'"
    ).fetchone() == (1, 2)
    again = _mdq(acc_database, "revisions", "restore", str(revisions[0][0]))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: revision {revisions[0][0]} is not in candle_revisions or was restored "
        "already (see `mdq revisions list`)"
    )
