"""Shared fixtures: one real PostgreSQL per test session, a fresh database in it.

The server is ``MDQ_DATABASE_URL`` when set (e.g. the machine's PostgreSQL 15), otherwise the
embedded server under ``<repo>/.mdq-test`` (shared with concurrent runs, stopped when its last
user leaves, see :func:`mdq.embedded.session`). Each session creates its own database
``mdq_test_<random>`` and drops it at the end, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from mdq import embedded
from mdq.db import Database, connect, parse_url
from mdq.db.migrate import apply_migrations

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def server() -> Iterator[Database]:
    """The PostgreSQL server under test, as a Database pointing at its admin database."""
    url = os.environ.get("MDQ_DATABASE_URL")
    if url:
        yield parse_url(url)
        return
    home = REPO_ROOT / ".mdq-test"
    with embedded.session(home) as socket_dir:
        yield Database(socket_dir, 5432, "postgres", "", "postgres", embedded_home=home)


@pytest.fixture(scope="session")
def make_database(server: Database) -> Iterator[Callable[[], Database]]:
    """Factory of fresh, empty databases on the test server; all are dropped at session end."""
    created: list[str] = []

    def make() -> Database:
        name = f"mdq_test_{uuid.uuid4().hex[:12]}"
        with connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        created.append(name)
        return server.with_dbname(name)

    yield make
    with connect(server, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def database(make_database: Callable[[], Database]) -> Database:
    """A fresh database for this session with every migration applied."""
    db = make_database()
    with connect(db) as conn:
        apply_migrations(conn)
    return db


@pytest.fixture()
def conn(database: Database) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session database."""
    with connect(database, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test API for the whole session (it costs ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        # one flow run here, outside any in-process CLI call: Prefect binds its console
        # logging to the sys.stderr of its first run, which must be the session's stream,
        # not the one a CliRunner call closes when it returns
        from prefect import flow

        flow(name="session-warm-up")(lambda: None)()
        yield
