"""The one place dbt is invoked from.

dbt is run in-process with ``dbtRunner``, serially: a process-wide lock guarantees that dbt never
runs twice at once in one process (dbt's global state is not re-entrant). The connection is
passed to ``profiles.yml`` through the ``MDQ_PG*`` environment variables.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.db import Database

#: The dbt project and the profiles directory, inside the repository checkout.
REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_PROFILES_DIR = REPO_ROOT

_DBT_LOCK = threading.Lock()


@contextmanager
def dbt_environment(database: Database, schema: str) -> Iterator[None]:
    """Hold the dbt lock and export the profile's environment variables for the duration."""
    env = database.dbt_env(schema)
    with _DBT_LOCK:
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def dbt_args(command: str, *, dbt_vars: Mapping[str, Any] | None = None, extra: list[str] | None = None) -> list[str]:
    """Command-line arguments for a dbt command on this project.

    Args:
        command: ``build``, ``test``, ``run``, ``docs generate`` (split on spaces), ...
        dbt_vars: values for ``--vars`` (e.g. ``{"as_of": "2024-06-01T00:00:00Z"}``).
        extra: more arguments, e.g. ``["--select", "stg_market__candles"]``.
    """
    args = command.split() + [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROFILES_DIR),
    ]
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars))]
    return args + list(extra or [])


def run_dbt(
    database: Database,
    schema: str,
    command: str,
    *,
    dbt_vars: Mapping[str, Any] | None = None,
    extra: list[str] | None = None,
) -> Any:
    """Run one dbt command in-process with dbt's own runner (no Prefect needed).

    Args:
        database: where to run.
        schema: the schema dbt builds into.
        command: e.g. ``build``.
        dbt_vars: dbt ``--vars``.
        extra: extra CLI arguments.

    Returns:
        dbt's ``dbtRunnerResult`` (``.success``, ``.result``, ``.exception``). Failing data
        tests are a result, not an exception.
    """
    from dbt.cli.main import dbtRunner

    with dbt_environment(database, schema):
        return dbtRunner().invoke(dbt_args(command, dbt_vars=dbt_vars, extra=extra))
