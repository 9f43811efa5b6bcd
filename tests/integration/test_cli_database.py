"""The CLI's database commands, run as a user runs them (a subprocess of `mdq`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from mdq import embedded
from mdq.db import Database, connect

pytestmark = pytest.mark.integration


def run_mdq(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "mysql://root@db/x", "MDQ_DATABASE_URL: must start with postgresql://", id="bad-scheme"
        ),
        pytest.param(
            "postgresql://postgres@127.0.0.1:1/nope",
            "cannot connect to PostgreSQL at 127.0.0.1:1/nope: Connection refused",
            id="unreachable",
        ),
        pytest.param("postgresql://postgres@127.0.0.1:5432", "names no database", id="no-dbname"),
    ],
)
def test_settings_errors_are_one_line_not_a_traceback(url: str, expected: str) -> None:
    result = run_mdq("db", "migrate", env={"MDQ_DATABASE_URL": url, "MDQ_CONNECT_TIMEOUT": "3"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_two_homes_never_share_data_and_a_home_is_reused(tmp_path: Path) -> None:
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    first = run_mdq("db", "start", env={"MDQ_HOME": str(home_a)})
    assert first.returncode == 0, first.stderr
    assert "applied migration 001_reference_and_bookkeeping.sql" in first.stderr
    assert f"created a new embedded database in {home_a / 'pgdata'}" in first.stderr
    run_b = run_mdq("db", "start", env={"MDQ_HOME": str(home_b)})
    assert run_b.returncode == 0, run_b.stderr
    try:
        sock_a, _ = embedded.start(home_a)
        sock_b, _ = embedded.start(home_b)
        assert sock_a != sock_b
        db_a = Database(sock_a, 5432, "postgres", "", embedded.EMBEDDED_DBNAME)
        db_b = Database(sock_b, 5432, "postgres", "", embedded.EMBEDDED_DBNAME)
        with connect(db_a, autocommit=True) as conn:
            conn.execute(
                "insert into instruments (symbol, asset_class, calendar)"
                " values ('ONLY_A', 'stock', 'XNYS')"
            )
        with connect(db_b, autocommit=True) as conn:
            assert conn.execute("select count(*) from instruments").fetchone() == (0,)

        # stop A; starting it again reuses the data and applies nothing new
        stop = run_mdq("db", "stop", env={"MDQ_HOME": str(home_a)})
        assert stop.stdout.strip() == "stopped"
        again = run_mdq("db", "migrate", env={"MDQ_HOME": str(home_a)})
        assert again.returncode == 0, again.stderr
        assert "applied 0 migration(s)" in again.stdout
        assert "created a new" not in again.stderr
        assert not embedded.is_running(home_a), "a command that started the server stops it"
        sock_a, _ = embedded.start(home_a)
        with connect(Database(sock_a, 5432, "postgres", "", "mdq"), autocommit=True) as conn:
            assert conn.execute("select symbol from instruments").fetchall() == [("ONLY_A",)]
    finally:
        embedded.stop(home_a)
        embedded.stop(home_b)
    assert not embedded.is_running(home_a) and not embedded.is_running(home_b)


def test_db_env_exports_what_dbt_and_psql_need(tmp_path: Path) -> None:
    home = tmp_path / "env"
    result = run_mdq("db", "env", env={"MDQ_HOME": str(home)})
    try:
        assert result.returncode == 0, result.stderr
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines()
        )
        assert exported["MDQ_PGDATABASE"] == "mdq"
        assert exported["PGHOST"] == exported["MDQ_PGHOST"]
        with psycopg.connect(host=exported["MDQ_PGHOST"], user="postgres", dbname="mdq") as conn:
            assert conn.execute("select count(*) from mdq_schema_migrations").fetchone()[0] >= 2
    finally:
        embedded.stop(home)


def test_mdq_split_records_a_split_once_and_refuses_a_bad_ratio(
    make_database: Callable[[], Database],
) -> None:
    database = make_database()
    env = {"MDQ_DATABASE_URL": database.url()}
    unknown = run_mdq("split", "BBB", "2024-06-10", "2", env=env)
    assert unknown.returncode == 2  # issue 10: unknown symbols are refused
    with connect(database, autocommit=True) as conn:
        conn.execute(
            "insert into instruments (symbol, asset_class, calendar)"
            " values ('BBB', 'stock', 'XNYS')"
        )
    first = run_mdq("split", "BBB", "2024-06-10", "2", env=env)
    assert first.returncode == 0, first.stderr
    assert "recorded: BBB split 2 effective 2024-06-10" in first.stdout
    again = run_mdq("split", "BBB", "2024-06-10", "2", env=env)
    assert "already recorded" in again.stdout
    bad = run_mdq("split", "BBB", "2024-06-11", "0", env=env)
    assert bad.returncode == 2
    assert "split ratio '0' not usable" in bad.stderr
    with connect(database) as conn:
        rows = conn.execute(
            "select symbol, action_type, effective_date::text, ratio::float from corporate_actions"
        ).fetchall()
    assert rows == [("BBB", "split", "2024-06-10", 2.0)]


def test_mdq_from_any_directory_uses_the_per_user_home(tmp_path: Path) -> None:
    # issue 8: run from another directory, mdq silently created a new empty ./.mdq database
    xdg = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    home = tmp_path / "xdg" / "mdq"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    try:
        first = run_mdq("db", "migrate", env=xdg, cwd=one)
        assert first.returncode == 0, first.stderr
        assert f"embedded PostgreSQL (data in {home / 'pgdata'})" in first.stdout
        assert f"created a new embedded database in {home / 'pgdata'}" in first.stderr
        second = run_mdq("db", "migrate", env=xdg, cwd=two)
        assert second.returncode == 0, second.stderr
        assert f"embedded PostgreSQL (data in {home / 'pgdata'}): applied 0 migration(s)" in (
            second.stdout
        )
        assert second.stderr == ""
        assert list(one.iterdir()) == [] and list(two.iterdir()) == []
    finally:
        embedded.stop(home)
