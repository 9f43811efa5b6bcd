"""market_data partitioned by month (migration 110) against a real PostgreSQL: converting a
table full of rows without losing one, partitions made on demand by the loader, the default
partition catching every other writer, and re-running the migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from mdq.backfill_core import BackfillOptions, SeriesRequest, load_series
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations, available_migrations
from mdq.db.partitions import ensure_partitions, month_starts, split_default_partition
from mdq.notify import RecordingNotifier
from mdq.providers.csv_file import CsvFileProvider
from mdq.windows import Window

pytestmark = pytest.mark.integration

MIGRATION_110 = next(m for m in available_migrations() if m.version == 110)

#: every column of every row, in key order: equal before and after means no row lost or changed
CHECKSUM = """
select count(*), md5(coalesce(string_agg(m::text, '|' order by symbol, timeframe, ts), ''))
from market_data as m
"""

#: the adopted table's columns only (002 adds its own with defaults of now())
ROWS_CHECKSUM = """
select count(*), md5(string_agg(
    concat_ws(',', id, symbol, timeframe, ts, open, high, low, close, volume, note),
    '|' order by symbol, timeframe, ts))
from market_data
"""

PARTITIONS = """
select c.relname, pg_get_expr(c.relpartbound, c.oid)
from pg_inherits as i
inner join pg_class as c on c.oid = i.inhrelid
where i.inhparent = 'market_data'::regclass
order by c.relname
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def partition_names(conn: psycopg.Connection) -> list[str]:
    return [name for name, _ in conn.execute(PARTITIONS).fetchall()]


def home_of(conn: psycopg.Connection, symbol: str) -> set[str]:
    """The partitions holding the symbol's rows."""
    rows = conn.execute(
        "select distinct tableoid::regclass::text from market_data where symbol = %s", (symbol,)
    ).fetchall()
    return {r for (r,) in rows}


@pytest.fixture(scope="module")
def part_database(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


@pytest.fixture()
def pconn(part_database: Database) -> Iterator[psycopg.Connection]:
    with connect(part_database, autocommit=True) as connection:
        yield connection


# -- converting a table that has rows -------------------------------------------------------

ADOPTED = """
create table market_data (
    id serial primary key,
    symbol varchar(20) not null,
    timeframe varchar(5) not null,
    ts timestamptz not null,
    open numeric, high numeric, low numeric, close numeric, volume numeric,
    note text,
    desk_ref text,
    constraint market_data_positive_volume check (volume >= 0)
);
create index market_data_note_idx on market_data (note) where note is not null;
create unique index market_data_desk_ref_idx on market_data (desk_ref);
comment on table market_data is 'the desk''s candles';
grant select on market_data to public;
comment on column market_data.note is 'free text';
create view desk_daily_close as
    select symbol, ts::date as day, max(close) as close from market_data group by 1, 2;
create view desk_last_close as select symbol, max(close) as close from desk_daily_close group by 1;
"""


def test_converting_an_adopted_table_keeps_every_row_index_and_constraint(
    make_database: Callable[[], Database],
) -> None:
    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        conn.execute(ADOPTED)
        # 3 symbols x 2 timeframes, hourly bars over Dec 2023 - Feb 2024 (3 months), a gap
        # year, and one bar in 1999: 5 months in all
        conn.execute(
            """
            insert into market_data (symbol, timeframe, ts, open, high, low, close, volume, note)
            select s, tf, t, 10 + k, 11 + k, 9 + k, 10.5 + k, 100 * k,
                case when k % 97 = 0 then 'checked' end
            from unnest(array['AAA', 'BBB', 'CCC']) as s
            cross join unnest(array['1h', '2h']) as tf
            cross join lateral (
                select t, row_number() over (order by t) as k
                from generate_series(
                    timestamp '2023-12-01 00:00', timestamp '2024-02-29 23:00', interval '1 hour'
                ) as t
            ) as g
            """
        )
        conn.execute(
            "insert into market_data (symbol, timeframe, ts, open, high, low, close, volume)"
            " values ('AAA', '1d', '1999-06-30 00:00', 1, 1, 1, 1, 0),"
            " ('AAA', '1d', '2026-11-30 23:59:59', 2, 2, 2, 2, 0)"
        )
        before = conn.execute(ROWS_CHECKSUM).fetchone()
        views_before = conn.execute("select * from desk_last_close order by 1").fetchall()

        apply_migrations(conn)

        after = conn.execute(ROWS_CHECKSUM).fetchone()
        assert before is not None and after is not None
        assert before[0] == 6 * 91 * 24 + 2
        assert after == before, "row count and checksum of every row equal"
        assert conn.execute(
            "select relkind from pg_class where oid = 'market_data'::regclass"
        ).fetchone() == ("p",)
        assert partition_names(conn) == [
            "market_data_default",
            "market_data_p1999_06",
            "market_data_p2023_12",
            "market_data_p2024_01",
            "market_data_p2024_02",
            "market_data_p2026_11",
        ]
        assert conn.execute("select count(*) from market_data_default").fetchone() == (0,)
        # a row sits in the partition of its UTC month: the last second of November stays
        assert home_of(conn, "AAA") >= {"market_data_p2026_11", "market_data_p1999_06"}
        rows_by_part = dict(
            conn.execute(
                "select tableoid::regclass::text, count(*) from market_data group by 1"
            ).fetchall()
        )
        assert rows_by_part["market_data_p2024_02"] == 6 * 29 * 24

        # indexes and constraints kept (the primary key gains ts, as PostgreSQL requires)
        indexes = dict(
            conn.execute(
                "select indexname, indexdef from pg_indexes where tablename = 'market_data'"
            ).fetchall()
        )
        assert set(indexes) == {
            "market_data_pkey",
            "market_data_symbol_timeframe_ts_key",
            "idx_market_data_ts",
            "market_data_note_idx",
            "market_data_desk_ref_idx",
        }
        assert "(id, ts)" in indexes["market_data_pkey"]
        assert "UNIQUE" in indexes["market_data_desk_ref_idx"]
        assert "(desk_ref, ts)" in indexes["market_data_desk_ref_idx"]
        assert "WHERE (note IS NOT NULL)" in indexes["market_data_note_idx"]
        constraints = dict(
            conn.execute(
                "select conname, pg_get_constraintdef(oid) from pg_constraint"
                " where conrelid = 'market_data'::regclass"
            ).fetchall()
        )
        assert constraints["market_data_positive_volume"] == "CHECK ((volume >= (0)::numeric))"
        key = constraints["market_data_symbol_timeframe_ts_key"]
        assert key == "UNIQUE (symbol, timeframe, ts)"
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into market_data (symbol, timeframe, ts, volume)"
                " values ('ZZZ', '1h', '2024-01-01', -1)"
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "insert into market_data (symbol, timeframe, ts, open, high, low, close, volume)"
                " values ('AAA', '1h', '2024-01-01 05:00+00', 1, 1, 1, 1, 1)"
            )
        # the serial column goes on from where it was; comments kept
        new_id = conn.execute(
            "insert into market_data (symbol, timeframe, ts, open, high, low, close, volume)"
            " values ('ZZZ', '1h', '2024-01-01', 1, 1, 1, 1, 1) returning id"
        ).fetchone()
        assert new_id is not None and new_id[0] > 6 * 91 * 24 + 2  # (failed inserts used some)
        assert conn.execute("select obj_description('market_data'::regclass)").fetchone() == (
            "the desk's candles",
        )
        acl = conn.execute("select relacl::text from pg_class where oid = 'market_data'::regclass")
        assert "=r/" in str(acl.fetchone()), "the grant to public kept"
        # views reading it were recreated, and read the same
        conn.execute("delete from market_data where symbol = 'ZZZ'")
        assert conn.execute("select * from desk_last_close order by 1").fetchall() == views_before

        # re-running the migration's SQL changes nothing
        snapshot = conn.execute(CHECKSUM).fetchone()
        conn.execute(MIGRATION_110.sql.encode())
        assert conn.execute(CHECKSUM).fetchone() == snapshot
        assert len(partition_names(conn)) == 6


def test_a_fresh_database_has_the_partitioned_table_and_an_empty_default(
    pconn: psycopg.Connection,
) -> None:
    assert pconn.execute(
        "select relkind from pg_class where oid = 'market_data'::regclass"
    ).fetchone() == ("p",)
    assert "market_data_default" in partition_names(pconn)
    # the unique key of the upserts (on conflict (symbol, timeframe, ts)) is on the parent
    assert pconn.execute(
        "select pg_get_constraintdef(oid) from pg_constraint"
        " where conrelid = 'market_data'::regclass and contype = 'u'"
    ).fetchall() == [("UNIQUE (symbol, timeframe, ts)",)]


# -- writes into months without a partition ----------------------------------------------------

HEADER = "symbol,asset_class,timeframe,ts,open,high,low,close,volume\n"


def _csv(tmp_path: Path, symbol: str, start: datetime, bars: int, step: timedelta) -> Path:
    lines = [
        f"{symbol},crypto,1h,{(start + i * step).strftime('%Y-%m-%dT%H:%M:%SZ')},"
        f"{100 + i},{101 + i},{99 + i},{100.5 + i},{10 + i}"
        for i in range(bars)
    ]
    path = tmp_path / f"{symbol}.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def _load(database: Database, path: Path, symbol: str, window: Window) -> tuple[str, int]:
    result = load_series(
        database,
        CsvFileProvider(path),
        SeriesRequest(symbol, "1h", window, "24/7"),
        BackfillOptions(lease_seconds=60, chunk_rows=500),
        notifier=RecordingNotifier(),
    )
    return result.status, result.inserted


def test_a_backfill_into_a_new_month_and_one_years_away_creates_their_partitions(
    part_database: Database, pconn: psycopg.Connection, tmp_path: Path
) -> None:
    assert "market_data_p2025_03" not in partition_names(pconn)
    # 40 hourly bars across the end of March 2025 into April: two new months
    path = _csv(tmp_path, "PNEW", utc(2025, 3, 31, 4), 40, timedelta(hours=1))
    assert _load(part_database, path, "PNEW", Window(utc(2025, 3, 31), utc(2025, 4, 2))) == (
        "completed",
        40,
    )
    assert home_of(pconn, "PNEW") == {"market_data_p2025_03", "market_data_p2025_04"}
    # a backfill of a month decades back: only that month's partition, not the years between
    path = _csv(tmp_path, "POLD", utc(1987, 10, 19, 0), 24, timedelta(hours=1))
    assert _load(part_database, path, "POLD", Window(utc(1987, 10, 19), utc(1987, 10, 20))) == (
        "completed",
        24,
    )
    assert home_of(pconn, "POLD") == {"market_data_p1987_10"}
    names = partition_names(pconn)
    assert not any(n.startswith("market_data_p199") for n in names)
    assert pconn.execute("select count(*) from market_data_default").fetchone() == (0,)
    # rerun: nothing new to create, nothing written
    assert _load(part_database, path, "POLD", Window(utc(1987, 10, 19), utc(1987, 10, 20))) == (
        "completed",
        0,
    )
    assert partition_names(pconn) == names


def test_a_writer_that_does_not_ask_is_caught_by_the_default_and_split_later(
    pconn: psycopg.Connection,
) -> None:
    insert = (
        "insert into market_data (symbol, asset_class, timeframe, ts, open, high, low, close,"
        " volume) values ('PDEF', 'stock', '1d', %s, 1, 2, 0.5, 1.5, 10)"
    )
    for ts in (utc(2041, 7, 1), utc(2041, 7, 31, 23, 59), utc(2041, 8, 15)):
        pconn.execute(insert, (ts,))
    assert home_of(pconn, "PDEF") == {"market_data_default"}
    before = pconn.execute(CHECKSUM).fetchone()
    changes = split_default_partition(pconn)
    assert [(c.partition_name, c.action) for c in changes] == [
        ("market_data_p2041_07", "created"),
        ("market_data_p2041_08", "created"),
    ]
    assert pconn.execute(CHECKSUM).fetchone() == before
    assert pconn.execute("select count(*) from market_data_default").fetchone() == (0,)
    assert home_of(pconn, "PDEF") == {"market_data_p2041_07", "market_data_p2041_08"}
    # asking again: they exist, nothing to do
    assert ensure_partitions(pconn, [utc(2041, 7, 9), utc(2041, 8, 1)]) == []
    # the key holds across the partitions and the default
    with pytest.raises(psycopg.errors.UniqueViolation):
        pconn.execute(insert, (utc(2041, 8, 15),))


def test_a_busy_default_partition_defers_the_month_and_the_rows_still_land(
    part_database: Database, pconn: psycopg.Connection
) -> None:
    with connect(part_database) as reader:
        # a long check reading the default partition holds its access share lock
        reader.execute("select count(*) from market_data_default").fetchone()
        changes = ensure_partitions(pconn, [utc(2043, 2, 10)])
        assert [(c.partition_name, c.action) for c in changes] == [
            ("market_data_p2043_02", "deferred")
        ]
        pconn.execute(
            "insert into market_data (symbol, asset_class, timeframe, ts, open, high, low,"
            " close, volume) values ('PBUSY', 'stock', '1d', '2043-02-10', 1, 1, 1, 1, 1)"
        )
        reader.rollback()
    assert home_of(pconn, "PBUSY") == {"market_data_default"}
    assert [c.action for c in ensure_partitions(pconn, [utc(2043, 2, 28)])] == ["created"]
    assert home_of(pconn, "PBUSY") == {"market_data_p2043_02"}


def test_month_starts_are_utc_months() -> None:
    from zoneinfo import ZoneInfo

    import pandas as pd

    ny = ZoneInfo("America/New_York")
    # 20:00 New York on 31 Jan is 01:00 UTC on 1 Feb
    assert month_starts([datetime(2024, 1, 31, 20, tzinfo=ny)]) == [utc(2024, 2, 1)]
    stamps = ["2024-01-31T23:00Z", "2024-01-02T00:00Z", "1999-12-31T00:00Z"]
    series = pd.Series(pd.to_datetime(stamps))
    assert month_starts(series) == [utc(1999, 12, 1), utc(2024, 1, 1)]
    with pytest.raises(ValueError):
        month_starts([datetime(2024, 1, 1)])


# -- mdq dedupe on a partitioned table -------------------------------------------------------


def test_dedupe_on_a_team_partitioned_table_removes_only_the_duplicate(
    make_database: Callable[[], Database],
) -> None:
    from mdq.dedupe import cleanup_duplicate_records
    from mdq.exceptions import DuplicateKeysBlockMigration

    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(
            """
            create table market_data (
                symbol text not null, timeframe text not null, ts timestamptz not null,
                open float8, high float8, low float8, close float8, volume float8
            ) partition by range (ts);
            create table md_2024 partition of market_data
                for values from ('2024-01-01Z') to ('2025-01-01Z');
            create table md_2025 partition of market_data
                for values from ('2025-01-01Z') to ('2026-01-01Z');
            """
        )
        # ctids (0,1), (0,2) in both partitions; one key duplicated in md_2024
        conn.execute(
            """
            insert into market_data values
                ('DUP', '1d', '2024-03-01Z', 1, 1, 1, 1, 1),
                ('DUP', '1d', '2024-03-01Z', 1, 1, 1, 1, 1),
                ('DUP', '1d', '2025-03-01Z', 2, 2, 2, 2, 2),
                ('DUP', '1d', '2025-03-02Z', 3, 3, 3, 3, 3)
            """
        )
        with pytest.raises(DuplicateKeysBlockMigration):
            apply_migrations(conn)
        report = cleanup_duplicate_records(conn, dry_run=False)
        assert report.cleanup_id is not None
        left = conn.execute(
            "select tableoid::regclass::text, ts, close from market_data order by ts"
        ).fetchall()
        assert [(p, c) for p, _, c in left] == [("md_2024", 1), ("md_2025", 2), ("md_2025", 3)]
        # then the rest of the migrations apply, and the team's partitioning is left alone
        apply_migrations(conn)
        assert partition_names(conn) == ["md_2024", "md_2025"]
        assert conn.execute("select count(*) from market_data").fetchone() == (3,)


def test_two_loaders_asking_for_one_new_month_neither_fails_and_one_partition_is_made(
    part_database: Database, pconn: psycopg.Connection
) -> None:
    with connect(part_database) as first:
        # the first loader has created the month's partition but not committed yet
        assert [c.action for c in ensure_partitions(first, [utc(2044, 5, 3)])] == ["created"]
        # the second waits at most the function's lock_timeout, then goes on without it
        assert [c.action for c in ensure_partitions(pconn, [utc(2044, 5, 20)])] == ["deferred"]
        first.commit()
    assert ensure_partitions(pconn, [utc(2044, 5, 20)]) == []
    assert partition_names(pconn).count("market_data_p2044_05") == 1


def test_a_foreign_key_to_market_data_refuses_the_conversion_and_changes_nothing(
    make_database: Callable[[], Database],
) -> None:
    from mdq.exceptions import MigrationError

    db = make_database()
    with connect(db, autocommit=True) as conn:
        conn.execute(
            """
            create table market_data (
                symbol text not null, timeframe text not null, ts timestamptz not null,
                open float8, high float8, low float8, close float8, volume float8,
                unique (symbol, timeframe, ts)
            );
            insert into market_data values ('FK', '1d', '2024-03-01Z', 1, 1, 1, 1, 1);
            create table desk_notes (
                symbol text, timeframe text, ts timestamptz, note text,
                foreign key (symbol, timeframe, ts) references market_data (symbol, timeframe, ts)
            );
            """
        )
        with pytest.raises(MigrationError) as info:
            apply_migrations(conn)
        assert info.value.version == 110
        assert "foreign key to market_data" in str(info.value)
        assert "drop the foreign key" in str(info.value)
        assert conn.execute(
            "select relkind from pg_class where oid = 'market_data'::regclass"
        ).fetchone() == ("r",)
        assert conn.execute("select count(*) from market_data").fetchone() == (1,)
        applied = {v for (v,) in conn.execute("select version from mdq_schema_migrations")}
        assert 100 in applied and 110 not in applied
