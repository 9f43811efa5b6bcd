"""The one place dbt is invoked from.

dbt is run in-process (prefect-dbt's ``PrefectDbtRunner`` when a Prefect API is reachable,
dbt's own ``dbtRunner`` otherwise), serially: a process-wide lock guarantees that dbt never
runs twice at once in one process (dbt's global state is not re-entrant). The connection is
passed to ``profiles.yml`` through the ``MDQ_PG*`` environment variables, and the run's
reference time through ``MDQ_AS_OF`` (read by the macro ``mdq_as_of_text`` at execution time
only), never through ``--vars``: dbt re-parses the whole project whenever ``--vars`` change,
which cost 7-13 s per run.

:func:`build` runs the models first and the checks second (two dbt invocations): a check that
finds an error fails its dbt test (the project's verdict, ``error_if``), and in one ``dbt
build`` dbt would then skip every model and check downstream of the checked model.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mdq import dbt_reuse
from mdq.db import Database
from mdq.exceptions import DbtExpectationsUnavailable, DbtRunError
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


def dbt_paths(project_dir: Path | None = None, shard: str | None = None) -> DbtPaths:
    """Resolve the paths of a dbt run on ``project_dir`` (default: mdq's dbt project).

    In a checkout dbt writes ``dbt_project/target`` and ``dbt_project/logs`` as usual. From an
    installed wheel, target, logs and the profile live in the per-user
    :func:`mdq.resources.dbt_work_dir` (``$MDQ_HOME/dbt``), never in site-packages. A shard
    run (``shard="i/n"``) writes under ``target/shards/<i>-of-<n>`` and
    ``logs/shards/<i>-of-<n>``: shards of one count run at once from one project folder, and
    dbt's manifest, run results and partial parse file are per process.

    Raises:
        SettingsError: an installed mdq and invalid settings (MDQ_HOME is read).
    """
    project = project_dir or DBT_PROJECT_DIR
    work = dbt_work_dir() if project_dir is None else None
    if work is None:
        paths = DbtPaths(project, DBT_PROFILES_DIR, project / "target", project / "logs", False)
    else:
        paths = DbtPaths(project, work, work / "target", work / "logs", True)
    if not shard:
        return paths
    sub = Path("shards", shard.replace("/", "-of-"))
    return DbtPaths(
        project, paths.profiles_dir, paths.target_path / sub, paths.log_path / sub, True
    )


_DBT_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


#: The environment variable carrying the run's reference time to dbt (macro mdq_as_of_text).
AS_OF_ENV = "MDQ_AS_OF"
#: The environment variable restricting the checks' rows to some symbols (mdq_run_symbols).
SYMBOLS_ENV = "MDQ_SYMBOLS"
#: The environment variable naming an incremental run's ``check_scopes`` rows
#: (macro mdq_check_scope_id; empty: the checks read every candle).
SCOPE_ENV = "MDQ_CHECK_SCOPE"
#: The environment variable giving the shard ``i/n`` of a sharded run (macro mdq_run_shard).
SHARD_ENV = "MDQ_SHARD"


@contextmanager
def dbt_environment(
    database: Database, schema: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Hold the dbt lock and export the profile's environment variables for the duration.

    Also turns PostgreSQL's JIT off for dbt's sessions (``PGOPTIONS=-c jit=off``) unless the
    caller set PGOPTIONS: on the checks' window queries JIT compilation cost 10–16 s per query
    at 1.6M candles and saved nothing (measured by bench/bench_calendar_checks.py).

    Args:
        database: where dbt connects (``MDQ_PG*``).
        schema: the schema dbt builds into (``MDQ_DBT_SCHEMA``).
        extra_env: more variables for this run, e.g. ``{"MDQ_AS_OF": "2024-06-01T00:00:00Z"}``;
            all are restored (or removed) afterwards.
    """
    env = database.dbt_env(schema)
    # the URL's options (if any) come last: a -c there wins over the default
    default = os.environ.get("PGOPTIONS") or "-c jit=off"
    env["PGOPTIONS"] = f"{default} {env['PGOPTIONS']}" if "PGOPTIONS" in env else default
    env.update(extra_env or {})
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
    shard: str | None = None,
) -> list[str]:
    """Command-line arguments for a dbt command on this project.

    Args:
        command: ``build``, ``test``, ``run``, ``docs generate`` (split on spaces), ...
        dbt_vars: values for ``--vars`` (e.g. ``{"as_of": "2024-06-01T00:00:00Z"}``).
        extra: more arguments, e.g. ``["--select", "stg_market__candles"]``.
        project_dir: another dbt project directory (default: the repository's).
        shard: ``i/n`` of a shard run: its own target and log paths (:func:`dbt_paths`).
    """
    paths = dbt_paths(project_dir, shard)
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
    if not _stdout_is_terminal():
        args.append("--no-use-colors")
    return args + list(extra or [])


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


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
        ensure_packages(None)
        return dbtRunner().invoke(dbt_args(command, dbt_vars=dbt_vars, extra=extra))


def ensure_packages(project_dir: Path | None) -> None:
    """Prepare the optional dbt-expectations package for the next dbt command (call it with the
    dbt lock held): see :mod:`mdq.dbt_expectations`. A no-op while ``MDQ_DBT_EXPECTATIONS`` is
    off and mdq wrote no ``packages.yml``.

    Raises:
        DbtExpectationsUnavailable: the switch is on and the package cannot be installed, or
            mdq runs from an installed wheel (whose project folder is never written to).
    """
    from mdq import dbt_expectations

    paths = dbt_paths(project_dir)
    if paths.explicit:
        if dbt_expectations.enabled():
            raise DbtExpectationsUnavailable(
                "an installed mdq does not write into its package; use a checkout"
            )
        return

    def deps() -> tuple[bool, str]:
        from dbt.cli.main import dbtRunner

        res = dbtRunner().invoke(dbt_args("deps", project_dir=project_dir))
        return bool(res.success), str(res.exception or "dbt deps failed")

    dbt_expectations.prepare_packages(paths.project_dir, deps=deps)


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
        full_parse: True when dbt parsed the whole project (no usable partial parse), False
            when it re-used its saved parse, None when not observed (prefect-dbt's runner).
        models_skipped: True when :func:`build` re-used the models as built (no models step).
    """

    command: str
    success: bool
    tests: tuple[DbtTestResult, ...]
    nodes: tuple[DbtNodeResult, ...]
    runner: str
    full_parse: bool | None = None
    models_skipped: bool = False

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
    if _no_prefect_settings():
        return False
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


def _no_prefect_settings() -> bool:
    """True when no Prefect API can be configured for this process, decided without importing
    Prefect (~1 s of CPU for every ``mdq check``): Prefect is not imported yet (so no flow or
    task run is in progress), no ``PREFECT_*`` environment variable is set, the profiles file
    (``PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME`` or ``~/.prefect``, ``profiles.toml``)
    names no ``PREFECT_API_URL``, and the current directory has no ``prefect.toml``, no ``.env``
    naming ``PREFECT_`` and no ``pyproject.toml`` with ``[tool.prefect``. Otherwise False:
    Prefect's own settings decide (:func:`prefect_api_available`)."""
    if "prefect" in sys.modules or any(key.startswith("PREFECT_") for key in os.environ):
        return False
    home = Path("~/.prefect").expanduser()
    checks = [
        (home / "profiles.toml", "PREFECT_API_URL"),
        (Path(".env"), "PREFECT_"),
        (Path("pyproject.toml"), "[tool.prefect"),
    ]
    if Path("prefect.toml").exists():
        return False
    for path, marker in checks:
        try:
            if marker in path.read_text(errors="replace"):
                return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def build(
    database: Database,
    schema: str,
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    as_of: str | None = None,
    symbols: Sequence[str] | None = None,
    indirect_selection: Literal["eager", "cautious", "buildable", "empty"] | None = None,
    project_dir: Path | None = None,
    use_prefect: bool | None = None,
    unit_tests: bool = False,
    progress: bool | None = None,
    scope_id: str | None = None,
    shard: str | None = None,
    full_refresh: bool = False,
    reuse_models: bool | None = None,
) -> DbtBuildResult:
    """Build the models, then run the checks; typed results, failing tests are data.

    Two dbt invocations, serially, under the process-wide dbt lock: ``dbt build`` of the
    selected models (seeds, snapshots; no data tests), then ``dbt test`` of the selected
    tests, minus the tests downstream of a model that failed to build (they would read a stale
    relation). In a single ``dbt build`` a check that finds an error-severity row fails its
    test and dbt skips everything downstream of the checked model; here every check runs.

    The models step is skipped when nothing it would change did (:mod:`mdq.dbt_reuse`): the
    last successful build of every model of mdq's project in ``schema`` was mdq's, with the
    same project files, profile, vars and reference time, no source table upstream of a stored
    model changed since, and every model relation exists. ``full_refresh``, ``unit_tests``,
    another ``project_dir`` and ``reuse_models=False`` always build; the checks always run.

    With a reachable Prefect API (see :func:`prefect_api_available`) dbt runs through
    prefect-dbt's ``PrefectDbtRunner(raise_on_failure=False)``: inside a flow run each dbt node
    becomes a Prefect task. Otherwise dbt's own ``dbtRunner`` runs it and, unless ``progress``
    is False (or ``DBT_QUIET`` is set), mdq prints one plain line per finished node instead of
    dbt's log (no ANSI codes when stdout is not a terminal).

    Args:
        database: where to run.
        schema: the schema dbt builds into (tests store failures in ``<schema>_audit``).
        select: dbt ``--select`` arguments (None: the whole project; ``[]``: nothing runs).
        exclude: dbt ``--exclude`` arguments.
        dbt_vars: dbt ``--vars`` (changing them makes dbt re-parse the whole project: per-run
            values go through the environment, like ``as_of``).
        as_of: the reference time, ISO 8601 with offset (environment ``MDQ_AS_OF``); None:
            the checks use now().
        symbols: keep only these symbols' rows of the project's checks (environment
            ``MDQ_SYMBOLS``; the checks still read every series); None: all.
        indirect_selection: dbt ``--indirect-selection`` for the checks (``empty`` runs only
            tests that are selected themselves, not the tests of selected models).
        project_dir: the dbt project (default: the repository's ``dbt_project``).
        use_prefect: force (True) or forbid (False) prefect-dbt; None decides automatically.
        unit_tests: also run the dbt unit tests (``unit_tests:`` in YAML); scheduled and CLI
            runs leave them to ``make test``.
        progress: print one line per node (None: unless ``DBT_QUIET`` is true).
        scope_id: an incremental run's ``check_scopes`` key (environment
            ``MDQ_CHECK_SCOPE``): the calendar checks read only those series from their
            ``read_from``; None: every candle.
        shard: ``i/n`` (environment ``MDQ_SHARD``): keep only the rows of the project's
            checks whose symbol falls in that shard; None: all.
        full_refresh: rebuild the incremental models from scratch (dbt ``--full-refresh``;
            ``mdq check --full``).
        reuse_models: skip the models step when the models are as a build would leave them
            (above); None: unless the setting ``MDQ_REUSE_MODELS`` is ``0``/``false``/``no``.

    Returns:
        The typed results of both invocations (``tests`` from the second;
        ``models_skipped`` when the first did not run).

    Raises:
        DbtRunError: dbt could not run (parse error, bad profile, unreachable database).
    """
    if select is not None and not select:
        # an explicitly empty selection: nothing to run (dbt would run the whole project)
        return DbtBuildResult("build --select (nothing)", True, (), (), "none")
    if use_prefect is None:
        use_prefect = prefect_api_available()
    if progress is None:
        progress = os.environ.get("DBT_QUIET", "").lower() not in ("1", "true", "yes")
    selection = ["--select", *select] if select else []
    # Resource types are left out with selectors in one --exclude: prefect-dbt's runner
    # dropped --exclude-resource-type, so its "models" build ran every check too.
    no_unit_tests = [] if unit_tests else ["resource_type:unit_test"]
    env = {
        AS_OF_ENV: as_of or "",
        SYMBOLS_ENV: ",".join(symbols or ()),
        SCOPE_ENV: scope_id or "",
        SHARD_ENV: shard or "",
    }
    run = _Invoker(database, schema, dbt_vars, env, project_dir, use_prefect, progress)
    models_env = env
    reuse = None
    if project_dir is None and (
        reuse_models if reuse_models is not None else dbt_reuse.reuse_enabled()
    ):
        reuse = _ModelsReuse.decide(database, schema, dbt_vars, models_env)
    if reuse is not None and reuse.reason is None and not (full_refresh or unit_tests):
        models = _skipped_models(progress, dbt_paths(None, shard).target_path)
    else:
        refresh = ["--full-refresh"] if full_refresh else []
        models = run(
            "build",
            [*selection, *refresh, *_exclude(exclude, ["resource_type:test", *no_unit_tests])],
            env=models_env,
        )
    failed = [node.name for node in models.failed_nodes if node.resource_type != "unit_test"]
    check_args = [
        *selection,
        *_exclude(exclude, [*(f"{name}+" for name in failed), *no_unit_tests]),
    ]
    if indirect_selection:
        check_args += ["--indirect-selection", indirect_selection]
    checks = run("test", check_args)
    if reuse is not None and not models.models_skipped and not (select or exclude):
        # a complete build (also --full's, or one with the unit tests): the next run may
        # re-use it
        manifest = dbt_paths(None, shard).target_path / "manifest.json"
        reuse.record(database, schema, models, run.invocation_id, manifest)
    return DbtBuildResult(
        command=f"{models.command}; {checks.command}",
        success=models.success and checks.success,
        tests=checks.tests,
        nodes=models.nodes + checks.nodes,
        runner=checks.runner,
        full_parse=_either(models.full_parse, checks.full_parse),
        models_skipped=models.models_skipped,
    )


@dataclass(frozen=True)
class _ModelsReuse:
    """The models step's re-use decision of one :func:`build` (see :mod:`mdq.dbt_reuse`)."""

    fingerprint: str
    reason: str | None  # why the models are built; None: they are re-used
    changes_xmin: int
    allowed_env: frozenset[str]

    @classmethod
    def decide(
        cls,
        database: Database,
        schema: str,
        dbt_vars: Mapping[str, Any] | None,
        models_env: Mapping[str, str],
    ) -> _ModelsReuse:
        paths = dbt_paths()
        # the scope id changes every incremental run; it only narrows what the models
        # recompute to the series changed in market_data, which the change log watches
        run_env = {key: value for key, value in models_env.items() if key != SCOPE_ENV}
        fingerprint = dbt_reuse.fingerprint(
            paths.project_dir, paths.profiles_dir, dbt_vars=dbt_vars, run_env=run_env
        )
        reason, xmin = dbt_reuse.why_build(database, schema, fingerprint)
        allowed = {*models_env, *dbt_reuse.config_env_names(paths.project_dir)}
        return cls(fingerprint, reason, xmin, frozenset(allowed))

    def record(
        self,
        database: Database,
        schema: str,
        models: DbtBuildResult,
        invocation_id: str | None,
        manifest_path: Path,
    ) -> None:
        """After a build of every model: record it when it succeeded (else leave no record:
        the hook deleted it when the models step started). ``invocation_id``: the checks
        step's, which wrote ``manifest_path``."""
        if not models.success or models.failed_nodes:
            return
        why_not = dbt_reuse.record_build(
            database,
            schema,
            fingerprint_=self.fingerprint,
            changes_xmin=self.changes_xmin,
            manifest_path=manifest_path,
            invocation_id=invocation_id,
            allowed_env=self.allowed_env,
        )
        if why_not:
            logger.warning("the next run builds the models again: %s", why_not)


def _skipped_models(progress: bool, target: Path) -> DbtBuildResult:
    """The models step that did not run: its run results say so
    (``<target>/run_results_build.json`` with no node and ``metadata.mdq_models_step``)."""
    note = "skipped: no model input changed since mdq's last build of every model"
    if progress:
        print(f"SKIP    models: {note[len('skipped: ') :]}", flush=True)
    logger.info("dbt models step %s", note)
    path = target / "run_results_build.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "metadata": {
                        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "mdq_models_step": note,
                    },
                    "results": [],
                    "elapsed_time": 0.0,
                    "args": {},
                }
            )
        )
    except OSError as exc:  # an artifact for benchmarks, never a reason to fail a check
        logger.warning("could not write %s: %s", path, exc)
    return DbtBuildResult(f"build ({note})", True, (), (), "none", None, models_skipped=True)


def _exclude(exclude: Sequence[str] | None, more: list[str]) -> list[str]:
    names = [*(exclude or ()), *more]
    return ["--exclude", *names] if names else []


def _either(first: bool | None, second: bool | None) -> bool | None:
    if first is None and second is None:
        return None
    return bool(first) or bool(second)


class _Invoker:
    """One dbt command at a time with the run's settings (see :func:`build`)."""

    def __init__(
        self,
        database: Database,
        schema: str,
        dbt_vars: Mapping[str, Any] | None,
        env: Mapping[str, str],
        project_dir: Path | None,
        use_prefect: bool,
        progress: bool,
    ) -> None:
        self.database = database
        self.schema = schema
        self.dbt_vars = dbt_vars
        # set even when empty: a value left in the caller's environment must not leak in
        self.env = dict(env)
        # a shard writes its own target/ and logs/ (dbt_paths)
        self.shard = self.env.get(SHARD_ENV) or None
        self.project_dir = project_dir
        self.use_prefect = use_prefect
        self.progress = progress
        #: dbt's id of the last command run (its manifest.json and run results carry it)
        self.invocation_id: str | None = None

    def __call__(
        self, command: str, extra: list[str], env: Mapping[str, str] | None = None
    ) -> DbtBuildResult:
        label = " ".join([command, *extra])
        # dbt's runner prints none of its own log to stdout (its file log keeps everything;
        # --quiet would still print each failing test): the watcher prints one line per node
        # when progress is wanted, nothing otherwise (DBT_QUIET=true)
        quiet = not self.use_prefect
        # the models step of build() writes no manifest.json/run_results.json (dbt wrote the
        # 1.3 MB manifest twice per command, ~0.3 s each here): the checks step right after
        # writes the same manifest, and mdq writes this step's run results itself below
        own_results = quiet and command == "build"
        args = dbt_args(
            command,
            dbt_vars=self.dbt_vars,
            extra=[
                *extra,
                "--log-level",
                "none",
                "--log-level-file",
                _file_log_level(),
                *(["--no-write-json"] if own_results else []),
            ]
            if quiet
            else extra,
            project_dir=self.project_dir,
            shard=self.shard,
        )
        watcher = DbtEventWatcher(sys.stdout if quiet and self.progress else None)
        with dbt_environment(self.database, self.schema, self.env if env is None else env):
            ensure_packages(self.project_dir)
            if self.use_prefect:
                from prefect_dbt import PrefectDbtRunner
                from prefect_dbt.core.settings import PrefectDbtSettings

                paths = dbt_paths(self.project_dir, self.shard)
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
                    raise DbtRunError(label, _first_lines(str(exc))) from None
                runner_name, full_parse = "prefect-dbt", None
            else:
                from dbt.cli.main import dbtRunner

                res = dbtRunner(callbacks=[watcher]).invoke(args)
                runner_name, full_parse = "dbt", watcher.full_parse
            from dbt_common.invocation import get_invocation_id

            self.invocation_id = get_invocation_id()
        if res.exception is not None or res.result is None:
            raise DbtRunError(label, _first_lines(str(res.exception or "no result")))
        target = dbt_paths(self.project_dir, self.shard).target_path
        if own_results:
            _write_run_results(res.result, target / f"run_results_{command}.json")
        else:
            _keep_run_results(target, command)
        parsed = parse_build_result(res, command=label, runner=runner_name)
        if full_parse is None:
            return parsed
        return DbtBuildResult(
            parsed.command, parsed.success, parsed.tests, parsed.nodes, runner_name, full_parse
        )


def _file_log_level() -> str:
    """dbt's file log level: ``DBT_LOG_LEVEL_FILE`` if set, else dbt's default ``debug``
    (an explicit console ``--log-level`` would otherwise lower the file log with it)."""
    return os.environ.get("DBT_LOG_LEVEL_FILE") or "debug"


def _write_run_results(result: Any, path: Path) -> None:
    """Write a dbt command's results as dbt's ``run_results.json`` would hold them, to
    ``path`` (the models step runs with ``--no-write-json``); a failure is logged, not an error
    of the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.write(str(path))
    except Exception as exc:  # an artifact for benchmarks, never a reason to fail a check
        import logging

        logging.getLogger(__name__).warning("could not write %s: %s", path, exc)


def _keep_run_results(target: Path, command: str) -> None:
    """Copy dbt's ``run_results.json`` to ``run_results_<command>.json`` beside it.

    :func:`build` runs two dbt commands and each rewrites ``run_results.json``; the copies keep
    the per-node times of both steps (``run_results_build.json``: the models,
    ``run_results_test.json``: the checks; read by ``bench/bench_demo_check.py``). A missing
    file (dbt wrote none) is skipped; a copy that fails is logged, not an error of the run.
    """
    source = target / "run_results.json"
    try:
        if source.is_file():
            (target / f"run_results_{command.split()[0]}.json").write_bytes(source.read_bytes())
    except OSError as exc:
        import logging

        logging.getLogger(__name__).warning("could not keep %s: %s", source, exc)


class DbtEventWatcher:
    """A dbt event callback: notes how dbt parsed, and prints one line per finished node.

    dbt's own log prints two lines per node (start and result) and, by default, ANSI colours;
    this prints ``<STATUS> <resource type> <name>[: <n> rows] (<seconds>s)`` once per node,
    plain text, e.g. ``WARN  test candle_gaps_stg_market__candles: 3 rows (0.41s)``.

    Attributes:
        full_parse: True once dbt said it cannot partially parse ("Unable to do partial
            parsing because ..."), False once it used its saved parse, None before either.
        full_parse_reason: dbt's reason for a full parse.
        lines: the lines printed (or that would have been, without a stream).
    """

    def __init__(self, stream: Any | None = None) -> None:
        self.stream = stream
        self.full_parse: bool | None = None
        self.full_parse_reason: str | None = None
        self.lines: list[str] = []
        self._started = time.monotonic()

    def __call__(self, event: Any) -> None:
        name = event.info.name
        if name == "UnableToPartialParse":
            self.full_parse = True
            self.full_parse_reason = str(event.data.reason)
        elif name in ("PartialParsingEnabled", "PartialParsingSkipParsing"):
            if self.full_parse is None:
                self.full_parse = False
        elif name == "NodeFinished":
            self._node_line(event.data)

    def _node_line(self, data: Any) -> None:
        info, result = data.node_info, data.run_result
        status = (result.status or info.node_status or "?").upper()
        line = f"{status:<7} {info.resource_type} {info.node_name}"
        if info.resource_type == "test" and result.num_failures:
            line += f": {result.num_failures} rows"
        elif status in ("ERROR", "FAIL") and result.message:
            line += f": {_first_lines(result.message, 1)}"
        line += f" ({result.execution_time:.2f}s)"
        self.lines.append(line)
        if self.stream is not None:
            print(line, file=self.stream, flush=True)


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
