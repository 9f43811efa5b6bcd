"""Rerunning an unchanged file (issue 15, write path; migration 155): recognised in bulk by
its content digest and the fingerprint of every series' stored candles, without parsing the
file; 0 rows written, the state rows and the quarantine updated as a full rerun would. Any
change, in the file or in the database, loads in full: the changed candle is found, its
revision recorded, a new bad row quarantined with its reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from mdq.backfill_core import Accounting, run_backfill
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.providers.csv_file import CsvFileProvider

pytestmark = pytest.mark.integration

HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"
START = datetime(2024, 5, 1, tzinfo=UTC)
SYMBOLS = [f"UC{i}" for i in range(6)]
PER_SERIES = 300


def _rows(prefix: str, changed: tuple[str, int] | None = None) -> list[str]:
    """``PER_SERIES`` 1h candles per symbol; ``changed``: (symbol, index) whose close is
    raised by 0.5."""
    lines = []
    for s, symbol in enumerate(SYMBOLS):
        for k in range(PER_SERIES):
            ts = (START + timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
            base = 100.0 + s + k * 0.01
            close = base + 0.2 + (0.5 if changed == (symbol, k) else 0.0)
            lines.append(
                f"{prefix}{symbol},crypto,1h,{ts},{base:.2f},{close + 0.3:.2f},"
                f"{base - 0.3:.2f},{close:.2f},{10 + k}\n"
            )
    return lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "".join(lines))
    return path


@pytest.fixture(scope="module")
def uc_database(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def uconn(uc_database: Database) -> psycopg.Connection:
    with connect(uc_database, autocommit=True) as conn:
        yield conn


def _load(database: Database, source: Path | CsvFileProvider):  # noqa: ANN202 - test helper
    seen: list[Accounting] = []
    provider = source if isinstance(source, CsvFileProvider) else CsvFileProvider(source)
    results = run_backfill(provider, database=database, on_accounting=seen.append)
    return results, seen[0]


def _writes(conn: psycopg.Connection, prefix: str) -> tuple[int, int, int]:
    """(rows, sum of their xmin, change-log rows) of the prefix's candles: any write moves
    one of them."""
    row = conn.execute(
        """
        select
            count(*),
            coalesce(sum(xmin::text::bigint), 0),
            (select count(*) from candle_changes where symbol like %(p)s)
        from market_data
        where symbol like %(p)s
        """,
        {"p": f"{prefix}%"},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_an_unchanged_rerun_writes_nothing_parses_nothing_and_records_state(
    uc_database: Database, uconn: psycopg.Connection, tmp_path: Path
) -> None:
    bad = "A" + SYMBOLS[0] + ",crypto,1h,not-a-time,1,2,0.5,1.5,3\n"
    lines = _rows("A")
    path = _write(tmp_path / "a.csv", [*lines[:10], bad, *lines[10:]])
    first, first_accounting = _load(uc_database, path)
    assert all(r.status == "completed" for r in first)
    assert sum(r.inserted for r in first) == len(SYMBOLS) * PER_SERIES
    assert first_accounting.quarantined == 1
    before = _writes(uconn, "A")

    provider = CsvFileProvider(path)
    rerun, accounting = _load(uc_database, provider)
    assert provider._parsed is None  # recognised without parsing the file
    assert _writes(uconn, "A") == before  # 0 rows written, not even rewritten in place
    assert [r.symbol for r in rerun] == [r.symbol for r in first]
    for old, new in zip(first, rerun, strict=True):
        assert new.status == "completed"
        assert (new.inserted, new.updated) == (0, 0)
        assert new.unchanged == old.stored
        assert (new.fetched, new.quarantined, new.duplicates, new.outside_window) == (
            old.fetched,
            old.quarantined,
            old.duplicates,
            old.outside_window,
        )
        assert new.execution_id != old.execution_id
        assert new.watermark == old.watermark
    assert (accounting.input_rows, accounting.stored, accounting.quarantined) == (
        first_accounting.input_rows,
        first_accounting.stored,
        first_accounting.quarantined,
    )
    states = uconn.execute(
        """
        select status, records_fetched, records_unchanged, records_inserted, records_updated,
            records_quarantined, completed_at is not null
        from backfill_state_persistent
        where execution_id = any(%s)
        order by symbol
        """,
        ([r.execution_id for r in rerun],),
    ).fetchall()
    assert len(states) == len(SYMBOLS)
    assert all(s[0] == "completed" and s[3] == s[4] == 0 and s[6] for s in states)
    assert sum(s[2] for s in states) == len(SYMBOLS) * PER_SERIES
    # the bad row is quarantined once, now under the rerun's execution (as a full rerun does)
    quarantined = uconn.execute(
        "select execution_id, reason, reason_code from quarantined_candles where symbol = %s",
        ("A" + SYMBOLS[0],),
    ).fetchall()
    assert len(quarantined) == 1
    assert quarantined[0][0] == rerun[0].execution_id
    assert "not-a-time" in quarantined[0][1] and quarantined[0][2] is not None


def test_one_changed_candle_among_many_series_is_the_one_revision(
    uc_database: Database, uconn: psycopg.Connection, tmp_path: Path
) -> None:
    path = _write(tmp_path / "b.csv", _rows("B"))
    _load(uc_database, path)
    before = _writes(uconn, "B")
    target = ("B" + SYMBOLS[3], 123)
    changed = _write(tmp_path / "b.csv", _rows("B", changed=(SYMBOLS[3], 123)))
    provider = CsvFileProvider(changed)
    results, _ = _load(uc_database, provider)
    assert provider._parsed is not None  # a changed file is loaded in full
    assert sum(r.updated for r in results) == 1
    assert sum(r.inserted for r in results) == 0
    [hit] = [r for r in results if r.updated]
    assert hit.symbol == target[0]
    revisions = uconn.execute(
        "select ts, close, new_close, execution_id from candle_revisions where symbol like 'B%'"
    ).fetchall()
    assert len(revisions) == 1
    assert revisions[0][0] == START + timedelta(hours=target[1])
    assert revisions[0][2] == pytest.approx(revisions[0][1] + 0.5)
    assert revisions[0][3] == hit.execution_id
    rows, _, changes = _writes(uconn, "B")
    assert rows == before[0] and changes == before[2] + 1  # one statement wrote one series

    # the changed file's load is recorded too (its fingerprints taken by a scan): the next
    # rerun of it writes nothing
    again = CsvFileProvider(changed)
    third, _ = _load(uc_database, again)
    assert again._parsed is None
    assert all(r.status == "completed" and r.inserted == r.updated == 0 for r in third)
    assert _writes(uconn, "B")[2] == before[2] + 1
    # one record per file name: the first version's was replaced by the second's
    recorded = uconn.execute(
        "select source_digest from backfill_file_loads where source = 'b.csv'"
    ).fetchall()
    assert recorded == [(again.content_digest(),)]


def test_a_new_bad_row_in_a_rerun_is_quarantined_with_its_reason(
    uc_database: Database, uconn: psycopg.Connection, tmp_path: Path
) -> None:
    lines = _rows("C")
    path = _write(tmp_path / "c.csv", lines)
    _load(uc_database, path)
    bad = f"C{SYMBOLS[1]},crypto,1h,2024-05-03T00:00:00Z,10,9,11,10,5\n"  # high < low
    _write(path, [*lines, bad])
    results, accounting = _load(uc_database, path)
    assert accounting.quarantined == 1
    assert sum(r.inserted + r.updated for r in results) == 0
    [hit] = [r for r in results if r.quarantined]
    assert hit.symbol == f"C{SYMBOLS[1]}"
    reason = uconn.execute(
        "select reason, source_row from quarantined_candles where execution_id = %s",
        (hit.execution_id,),
    ).fetchone()
    assert reason is not None and reason[0] and reason[1] == len(lines) + 2


def test_a_series_with_an_active_backfill_is_not_confirmed_unchanged(
    uc_database: Database, uconn: psycopg.Connection, tmp_path: Path
) -> None:
    path = _write(tmp_path / "e.csv", _rows("E"))
    _load(uc_database, path)
    symbol = f"E{SYMBOLS[4]}"
    uconn.execute(
        """
        insert into backfill_state_persistent (
            execution_id, symbol, timeframe, status, lease_expires_at
        )
        values (gen_random_uuid(), %s, '1h', 'in_progress', now() + interval '1 hour')
        """,
        (symbol,),
    )
    provider = CsvFileProvider(path)
    results, _ = _load(uc_database, provider)
    assert provider._parsed is not None  # loaded in full: the active one is respected
    [held] = [r for r in results if r.symbol == symbol]
    assert held.status == "skipped"
    assert all(r.status == "completed" for r in results if r.symbol != symbol)


@pytest.mark.parametrize("change", ["update", "delete", "instrument", "watermark"])
def test_a_series_changed_in_the_database_since_the_load_is_loaded_in_full(
    uc_database: Database,
    uconn: psycopg.Connection,
    tmp_path: Path,
    change: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"D{change[0].upper()}"
    path = _write(tmp_path / f"{prefix}.csv", _rows(prefix))
    first, _ = _load(uc_database, path)
    symbol, at = f"{prefix}{SYMBOLS[2]}", START + timedelta(hours=7)
    if change == "update":  # a hand-written edit of one candle
        uconn.execute(
            "update market_data set close = close + 1, high = high + 1"
            " where symbol = %s and ts = %s",
            (symbol, at),
        )
    elif change == "delete":
        uconn.execute("delete from market_data where symbol = %s and ts = %s", (symbol, at))
    elif change == "instrument":
        uconn.execute("update instruments set exchange = 'ELSEWHERE' where symbol = %s", (symbol,))
    else:
        uconn.execute(
            "update backfill_watermarks set watermark_at = watermark_at + interval '1 day'"
            " where symbol = %s",
            (symbol,),
        )
    provider = CsvFileProvider(path)
    with caplog.at_level("INFO", logger="mdq.backfill_core"):
        results, accounting = _load(uc_database, provider)
    assert provider._parsed is not None  # that series is loaded and compared in full
    # ... and only that one: the others are confirmed in bulk
    assert f"{symbol}/1h: " in caplog.text
    assert f"loading 1 of {len(SYMBOLS)} series in full" in caplog.text
    assert f"{len(SYMBOLS) - 1} series unchanged since its load" in caplog.text
    assert [r.symbol for r in results] == [r.symbol for r in first]
    assert accounting.input_rows == accounting.stored == len(SYMBOLS) * PER_SERIES
    assert all(r.status == "completed" for r in results)
    [hit] = [r for r in results if r.symbol == symbol]
    if change == "update":
        assert (hit.inserted, hit.updated) == (0, 1)  # the file's value is back
        stored = uconn.execute(
            "select close from market_data where symbol = %s and ts = %s", (symbol, at)
        ).fetchone()
        assert stored is not None and stored[0] == pytest.approx(100.0 + 2 + 7 * 0.01 + 0.2)
    elif change == "delete":
        assert (hit.inserted, hit.updated) == (1, 0)
    else:
        assert (hit.inserted, hit.updated) == (0, 0)
    assert sum(r.inserted + r.updated for r in results if r.symbol != symbol) == 0
    # recorded again, the changed series with the confirmed ones: the next rerun parses nothing
    again = CsvFileProvider(path)
    third, _ = _load(uc_database, again)
    assert again._parsed is None
    assert sum(r.inserted + r.updated for r in third) == 0
