"""Fault suite, secrets (issue 16, point 6).

- every libpq parameter of ``MDQ_DATABASE_URL`` is honoured: ``sslmode=require`` against a
  server without SSL is refused (by mdq and by dbt), as psql refuses it;
- the password never reaches Prefect: the test server's stored flow-run parameters and logs
  of a backfill given a database with a password hold no trace of it;
- URL errors never echo any part of the password.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mdq.db import Database, connect, parse_url
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt
from mdq.exceptions import DatabaseUnreachable, SettingsError

pytestmark = pytest.mark.integration

SECRET = "Sup3r-s3cret-pw"


def test_sslmode_require_is_honoured(make_database: Callable[[], Database]) -> None:
    """The embedded server speaks over a Unix socket, where libpq never uses SSL: sslmode=
    require is then refused by libpq itself ('server does not support SSL' over TCP, or for
    a socket the parameter is checked too). Either way mdq must not connect in plaintext."""
    database = make_database()
    strict = replace(database, params=(("sslmode", "require"),))
    if database.host.startswith("/"):
        # libpq ignores sslmode for Unix sockets; prove the parameter reaches libpq instead
        # with one it rejects outright, and that TCP without SSL is refused below
        bad = replace(database, params=(("sslmode", "no-such-mode"),))
        with pytest.raises(DatabaseUnreachable, match="invalid sslmode value"):
            connect(bad, timeout=5)
        return
    with pytest.raises(DatabaseUnreachable, match="server does not support SSL"):
        connect(strict, timeout=5)


def test_sslmode_require_against_a_server_without_ssl_is_refused() -> None:
    """A plaintext-only PostgreSQL on TCP (a throwaway server of the pgserver binaries):
    mdq (psycopg) and dbt (psycopg2) both refuse sslmode=require, and connect without it."""
    import socket
    import tempfile

    from mdq.embedded import _bin

    if os.geteuid() == 0:
        run_as: dict[str, object] = {"user": "pgserver", "group": "pgserver", "extra_groups": []}
    else:
        run_as = {}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="mdq-tcp-", dir="/tmp") as tmp:
        pgdata = os.path.join(tmp, "pgdata")
        os.mkdir(pgdata, 0o700)
        if run_as:
            import shutil

            shutil.chown(tmp, "pgserver", "pgserver")
            shutil.chown(pgdata, "pgserver", "pgserver")
        subprocess.run(
            [_bin("initdb"), "-D", pgdata, "-U", "postgres", "--auth=trust"],
            check=True, capture_output=True, cwd="/", **run_as,  # type: ignore[call-overload]
        )  # fmt: skip
        server = subprocess.Popen(
            [_bin("postgres"), "-D", pgdata, "-c", "listen_addresses=127.0.0.1",
             "-p", str(port), "-c", f"unix_socket_directories={tmp}", "-c", "ssl=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
            **run_as,  # type: ignore[call-overload]
        )  # fmt: skip
        try:
            plain = parse_url(f"postgresql://postgres@127.0.0.1:{port}/postgres")
            for _ in range(100):
                try:
                    connect(plain, timeout=2).close()
                    break
                except DatabaseUnreachable:
                    import time

                    time.sleep(0.1)
            strict = parse_url(
                f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/postgres?sslmode=require"
            )
            with pytest.raises(DatabaseUnreachable, match="server does not support SSL") as exc:
                connect(strict, timeout=5)
            assert SECRET not in str(exc.value)
            # dbt, through profiles.yml and PGSSLMODE, refuses too
            result = run_dbt(strict, "ssl_check", "debug", extra=["--connection"])
            assert result.success is False
            plain_dbt = run_dbt(plain, "ssl_check", "debug", extra=["--connection"])
            assert plain_dbt.success is True
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"postgresql://user:{SECRET}@extra@db.example:5432/x", id="unencoded-at"),
        pytest.param(f"postgresql://user:{SECRET}/tail@db.example:5432/x", id="unencoded-slash"),
        pytest.param(f"postgresql://user:{SECRET}@db.example:port/x", id="bad-port"),
        pytest.param(f"postgresql://user:{SECRET}@db.example/x?keepalives=1", id="unknown-param"),
        pytest.param(f"postgresql://user:{SECRET}@db.example/x?sslmode=bogus", id="bad-sslmode"),
    ],
)
def test_url_errors_never_echo_the_password(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env.update({"MDQ_DATABASE_URL": url, "MDQ_CONNECT_TIMEOUT": "2"})
    result = subprocess.run(
        [sys.executable, "-m", "mdq.cli", "db", "migrate"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in (SECRET, SECRET[:6], SECRET[-6:], "extra", "tail"):
        assert fragment not in result.stderr + result.stdout


def test_parse_error_names_no_part_of_the_url() -> None:
    with pytest.raises(SettingsError) as exc:
        parse_url(f"postgresql://user:{SECRET}@xtra9@db.example/x")
    assert SECRET not in str(exc.value) and "xtra9" not in str(exc.value)


def test_prefect_stores_no_password(prefect_harness: None, tcp_or_socket: Database) -> None:
    """A backfill flow run given a database with a password: the parameters Prefect stored
    and the run's logs hold no trace of it."""
    from prefect.client.orchestration import get_client

    from flows.backfill import backfill
    from mdq.backfill_core import in_process

    with_password = replace(tcp_or_socket, password=SECRET)  # type: ignore[arg-type]
    with in_process(database=with_password):
        state = backfill(
            provider="synthetic",
            symbols=["SECRETSYM"],
            timeframes=["1d"],
            start=datetime(2024, 1, 1, tzinfo=UTC),
            end=datetime(2024, 1, 8, tzinfo=UTC),
            return_state=True,
        )
    flow_run_id = state.state_details.flow_run_id

    async def stored() -> tuple[str, str, str]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            LogFilter,
            LogFilterFlowRunId,
        )

        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return (
            json.dumps(run.parameters, default=str),
            " ".join(log.message for log in logs),
            json.dumps([t.model_dump(mode="json") for t in tasks], default=str),
        )

    parameters, logs, task_runs = asyncio.run(stored())
    assert "SECRETSYM" in parameters  # the parameters were stored
    assert "SECRETSYM" in task_runs  # and the task runs
    for stored_text in (parameters, logs, task_runs):
        assert SECRET not in stored_text
    # where a Database is serialised (a task's or flow's parameter), the password is masked
    from fastapi.encoders import jsonable_encoder

    assert jsonable_encoder(with_password)["password"] == "**********"
    with connect(tcp_or_socket) as conn:
        stored_rows = conn.execute(
            "select count(*) from market_data where symbol = 'SECRETSYM'"
        ).fetchone()
    assert stored_rows == (7,)


@pytest.fixture(scope="module")
def tcp_or_socket(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database
