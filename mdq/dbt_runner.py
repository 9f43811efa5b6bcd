"""The one place dbt is invoked from.

dbt is run in-process (prefect-dbt's ``PrefectDbtRunner`` when a Prefect API is reachable,
dbt's own ``dbtRunner`` otherwise), serially: a process-wide lock guarantees that dbt never
runs twice at once in one process (dbt's global state is not re-entrant). The connection is
passed to ``profiles.yml`` through the ``MDQ_PG*`` environment variables.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mdq.db import Database
from mdq.exceptions import DbtRunError
from mdq.resources import dbt_work_dir, project_file

#: The dbt project and the profiles directory (the checkout's, or the wheel's copies; an
#: installed mdq reads a per-user copy of the profile instead, see :func:`dbt_paths`).
DBT_PROJECT_DIR = project_file("dbt_project")
DBT_PROFILES_DIR = project_file("profiles.yml").parent


@dataclass(frozen=True)
class DbtPaths:
    """Where one dbt invocation reads its project and profile and writes its output.

    Attributes:
        project_dir: the dbt project.
        profiles_dir: the folder holding ``profiles.yml``.
        target_path: dbt's ``target/`` (manifest, run results, docs site), absolute.
        log_path: dbt's ``logs/``, absolute.
        explicit: True when target and log paths must be passed to dbt (an installed mdq,
            whose package folder is never written to); False when they are dbt's defaults.
    """

    project_dir: Path
    profiles_dir: Path
    target_path: Path
    log_path: Path
    explicit: bool


def dbt_paths(project_dir: Path | None = None) -> DbtPaths:
    """Resolve the paths of a dbt run on ``project_dir`` (default: mdq's dbt project).

    In a checkout dbt writes ``dbt_project/target`` and ``dbt_project/logs`` as usual. From an
    installed wheel, target, logs and the profile live in the per-user
    :func:`mdq.resources.dbt_work_dir` (``$MDQ_HOME/dbt``), never in site-packages.

    Raises:
        SettingsError: an installed mdq and invalid settings (MDQ_HOME is read).
    """
    project = project_dir or DBT_PROJECT_DIR
    work = dbt_work_dir() if project_dir is None else None
    if work is None:
        return DbtPaths(project, DBT_PROFILES_DIR, project / "target", project / "logs", False)
    return DbtPaths(project, work, work / "target", work / "logs", True)


_DBT_LOCK = threading.Lock()


@contextmanager
def dbt_environment(database: Database, schema: str) -> Iterator[None]:
    """Hold the dbt lock and export the profile's environment variables for the duration.

    Also turns PostgreSQL's JIT off for dbt's sessions (``PGOPTIONS=-c jit=off``) unless the
    caller set PGOPTIONS: on the checks' window queries JIT compilation cost 10–16 s per query
    at 1.6M candles and saved nothing (measured by bench/bench_calendar_checks.py).
    """
    env = database.dbt_env(schema)
    # the URL's options (if any) come last: a -c there wins over the default
    default = os.environ.get("PGOPTIONS") or "-c jit=off"
    env["PGOPTIONS"] = f"{default} {env['PGOPTIONS']}" if "PGOPTIONS" in env else default
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


def dbt_args(
    command: str,
    *,
    dbt_vars: Mapping[str, Any] | None = None,
    extra: list[str] | None = None,
    project_dir: Path | None = None,
) -> list[str]:
    """Command-line arguments for a dbt command on this project.

    Args:
        command: ``build``, ``test``, ``run``, ``docs generate`` (split on spaces), ...
        dbt_vars: values for ``--vars`` (e.g. ``{"as_of": "2024-06-01T00:00:00Z"}``).
        extra: more arguments, e.g. ``["--select", "stg_market__candles"]``.
        project_dir: another dbt project directory (default: the repository's).
    """
    paths = dbt_paths(project_dir)
    args = command.split() + [
        "--project-dir",
        str(paths.project_dir),
        "--profiles-dir",
        str(paths.profiles_dir),
    ]
    if paths.explicit:
        args += ["--target-path", str(paths.target_path), "--log-path", str(paths.log_path)]
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


# --------------------------------------------------------------------------------------------
# dbt build with typed results
# --------------------------------------------------------------------------------------------

#: dbt's status of one data test.
TTestStatus = Literal["pass", "warn", "fail", "error", "skipped"]
#: A test's configured severity.
TSeverity = Literal["warn", "error"]

_TEST_STATUSES: frozenset[str] = frozenset({"pass", "warn", "fail", "error", "skipped"})


@dataclass(frozen=True)
class DbtTestResult:
    """The outcome of one dbt data test (generic or singular) in one invocation.

    Attributes:
        unique_id: dbt node id, e.g. ``test.mdq.not_null_stg_market__candles_symbol.2b3c``.
        name: the test node's name (also its audit table name unless aliased).
        test_name: the generic test it instantiates (``not_null``, ``future_candles``), or
            None for a singular test.
        status: ``pass``, ``warn``, ``fail``, ``error`` (the SQL did not run) or ``skipped``.
        severity: the configured severity (``warn`` or ``error``).
        failures: number of failing rows dbt counted (None when the test did not run).
        message: dbt's message, e.g. ``Got 3 results, configured to fail if != 0``.
        audit_schema: schema of the store_failures table, or None when failures are not stored.
        audit_table: name of the store_failures table, or None.
        model: name of the model (or source) the test is attached to, when dbt knows it.
        tags: the test's tags (``gaps``, ``outliers``, ``staleness``, ...).
    """

    unique_id: str
    name: str
    test_name: str | None
    status: TTestStatus
    severity: TSeverity
    failures: int | None
    message: str | None
    audit_schema: str | None
    audit_table: str | None
    model: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def ran(self) -> bool:
        """True when the test's query ran to a verdict (pass, warn or fail)."""
        return self.status in ("pass", "warn", "fail")

    @property
    def found_something(self) -> bool:
        """True when dbt judged the failing rows worth reporting (warn or fail)."""
        return self.status in ("warn", "fail")


@dataclass(frozen=True)
class DbtNodeResult:
    """The outcome of any other node (model, seed, snapshot, unit test) in one invocation.

    Attributes:
        unique_id: dbt node id.
        resource_type: ``model``, ``seed``, ``snapshot``, ``unit_test``, ...
        name: node name.
        status: dbt's status string (``success``, ``error``, ``skipped``, ``pass``, ``fail``).
        message: dbt's message, if any.
    """

    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str | None

    @property
    def failed(self) -> bool:
        """True when the node errored or (for a unit test) failed."""
        return self.status in ("error", "fail", "runtime error")


@dataclass(frozen=True)
class DbtBuildResult:
    """Everything one ``dbt build`` reported, typed.

    Attributes:
        command: the dbt arguments, joined, for messages.
        success: dbt's own verdict (False as soon as any node failed or errored).
        tests: one record per data test that dbt reported, in dbt's order.
        nodes: one record per other node.
        runner: ``prefect-dbt`` or ``dbt`` (which runner ran it).
    """

    command: str
    success: bool
    tests: tuple[DbtTestResult, ...]
    nodes: tuple[DbtNodeResult, ...]
    runner: str

    @property
    def failed_nodes(self) -> tuple[DbtNodeResult, ...]:
        """Models, seeds, snapshots or unit tests that errored or failed."""
        return tuple(node for node in self.nodes if node.failed)

    @property
    def errored_tests(self) -> tuple[DbtTestResult, ...]:
        """Data tests whose query could not run (status ``error``)."""
        return tuple(test for test in self.tests if test.status == "error")


def prefect_api_available(timeout: float = 3.0) -> bool:
    """Whether a Prefect API can take this process's task runs.

    True inside a flow or task run (whatever API that run uses), or when ``PREFECT_API_URL``
    is set and its ``/health`` endpoint answers within ``timeout`` seconds. Never raises.

    Args:
        timeout: seconds to wait for the health check.
    """
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.settings import PREFECT_API_URL

        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            return True
        url = PREFECT_API_URL.value()
        if not url:
            return False
        import httpx

        response = httpx.get(url.rstrip("/") + "/health", timeout=timeout)
        return response.status_code == 200
    except Exception:  # any failure means "not reachable": fall back to dbt's runner
        return False


def build(
    database: Database,
    schema: str,
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    indirect_selection: Literal["eager", "cautious", "buildable", "empty"] | None = None,
    project_dir: Path | None = None,
    use_prefect: bool | None = None,
) -> DbtBuildResult:
    """Run ``dbt build`` serially and return typed results; failing tests are data, not errors.

    With a reachable Prefect API (see :func:`prefect_api_available`) dbt runs through
    prefect-dbt's ``PrefectDbtRunner(raise_on_failure=False)``: inside a flow run each dbt node
    becomes a Prefect task. Otherwise dbt's own ``dbtRunner`` runs it. Either way the
    process-wide dbt lock is held for the whole invocation.

    Args:
        database: where to run.
        schema: the schema dbt builds into (tests store failures in ``<schema>_audit``).
        select: dbt ``--select`` arguments (None: the whole project; ``[]``: nothing runs).
        exclude: dbt ``--exclude`` arguments.
        dbt_vars: dbt ``--vars``, e.g. ``{"as_of": "2024-06-01T00:00:00+00:00"}``.
        indirect_selection: dbt ``--indirect-selection`` (``empty`` runs only tests that are
            selected themselves, not the tests of selected models).
        project_dir: the dbt project (default: the repository's ``dbt_project``).
        use_prefect: force (True) or forbid (False) prefect-dbt; None decides automatically.

    Returns:
        The typed results.

    Raises:
        DbtRunError: dbt could not run (parse error, bad profile, unreachable database).
    """
    if select is not None and not select:
        # an explicitly empty selection: nothing to run (dbt would run the whole project)
        return DbtBuildResult("build --select (nothing)", True, (), (), "none")
    extra: list[str] = []
    if select:
        extra += ["--select", *select]
    if exclude:
        extra += ["--exclude", *exclude]
    if indirect_selection:
        extra += ["--indirect-selection", indirect_selection]
    args = dbt_args("build", dbt_vars=dbt_vars, extra=extra, project_dir=project_dir)
    command = " ".join(["build", *extra])
    if use_prefect is None:
        use_prefect = prefect_api_available()
    with dbt_environment(database, schema):
        if use_prefect:
            from prefect_dbt import PrefectDbtRunner
            from prefect_dbt.core.settings import PrefectDbtSettings

            paths = dbt_paths(project_dir)
            runner = PrefectDbtRunner(
                settings=PrefectDbtSettings(
                    project_dir=paths.project_dir,
                    profiles_dir=paths.profiles_dir,
                    target_path=paths.target_path,
                ),
                raise_on_failure=False,
            )
            try:
                res = runner.invoke(args)
            except ValueError as exc:  # prefect-dbt's wrapper of dbt's own exception
                raise DbtRunError(command, _first_lines(str(exc))) from None
            runner_name = "prefect-dbt"
        else:
            from dbt.cli.main import dbtRunner

            res = dbtRunner().invoke(args)
            runner_name = "dbt"
    if res.exception is not None or res.result is None:
        raise DbtRunError(command, _first_lines(str(res.exception or "no result")))
    return parse_build_result(res, command=command, runner=runner_name)


def parse_build_result(res: Any, *, command: str, runner: str) -> DbtBuildResult:
    """Turn a ``dbtRunnerResult`` of ``build``/``test`` into :class:`DbtBuildResult`.

    Args:
        res: what ``dbtRunner.invoke`` (or ``PrefectDbtRunner.invoke``) returned.
        command: the command line, for messages.
        runner: which runner produced it.
    """
    tests: list[DbtTestResult] = []
    nodes: list[DbtNodeResult] = []
    for item in getattr(res.result, "results", None) or ():
        node = item.node
        status = str(getattr(item.status, "value", item.status))
        message = item.message if item.message is None else str(item.message)
        resource_type = str(getattr(node.resource_type, "value", node.resource_type))
        if resource_type != "test":
            nodes.append(DbtNodeResult(node.unique_id, resource_type, node.name, status, message))
            continue
        config = node.config
        severity = str(getattr(config, "severity", "error") or "error").lower()
        metadata = getattr(node, "test_metadata", None)
        relation = getattr(node, "relation_name", None)
        attached = getattr(node, "attached_node", None)
        tests.append(
            DbtTestResult(
                unique_id=node.unique_id,
                name=node.name,
                test_name=metadata.name if metadata is not None else None,
                status=status if status in _TEST_STATUSES else "error",  # type: ignore[arg-type]
                severity="warn" if severity == "warn" else "error",
                failures=int(item.failures) if item.failures is not None else None,
                message=message,
                audit_schema=node.schema if relation else None,
                audit_table=(node.alias or node.name) if relation else None,
                model=attached.split(".")[-1] if attached else None,
                tags=tuple(node.tags or ()),
            )
        )
    return DbtBuildResult(
        command=command,
        success=bool(res.success),
        tests=tuple(tests),
        nodes=tuple(nodes),
        runner=runner,
    )


def _first_lines(text: str, limit: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:limit]) or "unknown error"
