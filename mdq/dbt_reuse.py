"""Re-use dbt's models when nothing they are built from changed: the models step of
:func:`mdq.dbt_runner.build` is skipped, the checks step always runs (issue 9, fast repeat
runs: a repeat ``mdq check`` paid dbt's fixed start-up twice, for the models and the checks).

What a build of the models depends on, and how each is seen:

* the data: the source tables upstream of a table or incremental model, watched by the
  change log of migration 150 (:mod:`mdq.db.model_builds`);
* what the SQL is compiled from: :func:`fingerprint` (the project's files, the profile, the
  ``--vars``, the environment variables ``dbt_project.yml`` names, the run's reference
  time ``MDQ_AS_OF``, which views such as ``int_candles_sessionized`` are compiled with, and
  dbt's version);
* the relations themselves: each must still exist, and any dbt command that builds relations
  in the schema, mdq's or an analyst's, deletes the record first (on-run-start hook
  ``mdq_forget_model_build``).

A record is written only after a successful build of every model of mdq's own project
(:func:`record_build`), and only when the manifest shows that the models read no per-run
environment than mdq's per-run variables (``MDQ_AS_OF``, ``MDQ_SYMBOLS``, ``MDQ_SHARD``: in the
fingerprint; ``MDQ_CHECK_SCOPE``: not, it only narrows an incremental build to the series
changed in the watched market_data). ``--full``, unit tests, another project and
``MDQ_REUSE_MODELS=0`` always build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdq.db import Database, connect, model_builds

#: The setting that turns re-use off (``0``, ``false``, ``no``): every run builds the models.
REUSE_ENV = "MDQ_REUSE_MODELS"

_ENV_VAR = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")
#: Folders of a dbt project that hold dbt's output, not its input.
_OUTPUT_DIRS = frozenset({"target", "logs"})


def reuse_enabled() -> bool:
    """False when ``MDQ_REUSE_MODELS`` is ``0``, ``false`` or ``no``; True otherwise."""
    return os.environ.get(REUSE_ENV, "").strip().lower() not in ("0", "false", "no")


def config_env_names(project_dir: Path) -> list[str]:
    """The environment variables ``dbt_project.yml`` reads (sorted). The profile's are not
    among them: they say where dbt connects, and the record lives in that database."""
    try:
        return sorted(set(_ENV_VAR.findall((project_dir / "dbt_project.yml").read_text())))
    except OSError:
        return []


def fingerprint(
    project_dir: Path,
    profiles_dir: Path,
    *,
    dbt_vars: Mapping[str, Any] | None,
    run_env: Mapping[str, str],
) -> str:
    """A hash of everything the models' SQL is compiled from.

    Args:
        project_dir: the dbt project: every file under it but ``target/`` and ``logs/``
            (relative path and content; ``dbt_packages/`` included).
        profiles_dir: the folder of ``profiles.yml`` (its content).
        dbt_vars: the run's ``--vars``.
        run_env: per-run environment values the models read (``{"MDQ_AS_OF": ...}``); the
            variables ``dbt_project.yml`` names (:func:`config_env_names`) are added from
            ``os.environ``.

    dbt's packages' versions (dbt-core, dbt-postgres, dbt-adapters: the materializations'
    SQL) are part of it.

    Returns:
        A sha256 hex digest.
    """
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("dbt-core", "dbt-postgres", "dbt-adapters"):
        try:
            versions.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} missing")
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    add("dbt", *versions, "vars", json.dumps(dict(dbt_vars or {}), sort_keys=True, default=str))
    env = {name: os.environ.get(name, "") for name in config_env_names(project_dir)}
    env.update(run_env)
    add("env", json.dumps(env, sort_keys=True))
    for path in sorted(_project_files(project_dir)):
        add(path.relative_to(project_dir).as_posix(), path.read_bytes())
    profile = profiles_dir / "profiles.yml"
    add("profile", profile.read_bytes() if profile.is_file() else b"")
    return digest.hexdigest()


def _project_files(project_dir: Path) -> Iterable[Path]:
    for entry in project_dir.iterdir():
        if entry.name in _OUTPUT_DIRS or entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from (path for path in entry.rglob("*") if path.is_file())
        elif entry.is_file():
            yield entry


@dataclass(frozen=True)
class ModelInputs:
    """What the project's models read and build, from dbt's ``manifest.json``.

    Attributes:
        sources: (schema, table) of every source upstream of a model that stores rows (not a
            view or ephemeral model: those read their sources when queried).
        relations: (schema, name) of every model relation (views included).
        env_names: environment variables read by the models' SQL or their macros.
    """

    sources: tuple[tuple[str, str], ...]
    relations: tuple[tuple[str, str], ...]
    env_names: frozenset[str]


#: Sources that are no data: ``check_scopes`` holds the series an incremental run re-reads,
#: written by mdq for each run from market_data's change log (which is watched).
RUN_SCOPE_SOURCES = frozenset({"check_scopes"})


def model_inputs(manifest: Mapping[str, Any]) -> ModelInputs:
    """Read :class:`ModelInputs` from a parsed ``manifest.json`` (sources in
    :data:`RUN_SCOPE_SOURCES` left out)."""
    nodes, sources, macros = manifest["nodes"], manifest["sources"], manifest.get("macros", {})
    models = {uid: node for uid, node in nodes.items() if node["resource_type"] == "model"}
    stored: set[tuple[str, str]] = set()
    seen: set[str] = set()
    pending = [
        uid
        for uid, node in models.items()
        if node["config"].get("materialized") not in ("view", "ephemeral")
    ]
    while pending:
        uid = pending.pop()
        if uid in seen:
            continue
        seen.add(uid)
        if uid in sources:
            source = sources[uid]
            table = source.get("identifier") or source["name"]
            if table not in RUN_SCOPE_SOURCES:
                stored.add((source["schema"], table))
        elif uid in nodes:
            pending.extend(nodes[uid].get("depends_on", {}).get("nodes", []))
    env_names: set[str] = set()
    macro_seen: set[str] = set()
    pending = []
    for node in models.values():
        env_names.update(_ENV_VAR.findall(node.get("raw_code") or ""))
        pending.extend(node.get("depends_on", {}).get("macros", []))
    while pending:
        uid = pending.pop()
        if uid in macro_seen or uid not in macros:
            continue
        macro_seen.add(uid)
        env_names.update(_ENV_VAR.findall(macros[uid].get("macro_sql") or ""))
        pending.extend(macros[uid].get("depends_on", {}).get("macros", []))
    return ModelInputs(
        tuple(sorted(stored)),
        tuple(
            sorted(
                (node["schema"], node.get("alias") or node["name"])
                for node in models.values()
                if node["config"].get("materialized") != "ephemeral"
            )
        ),
        frozenset(env_names),
    )


def why_build(database: Database, schema: str, fingerprint_: str) -> tuple[str | None, int]:
    """Decide whether the models step can be skipped.

    Returns:
        (reason to build or None to skip, ``pg_snapshot_xmin`` now: where a build starting
        now reads the change log from).
    """
    from mdq.db.check_scope import current_xmin

    with connect(database, autocommit=True) as conn:
        reason = model_builds.reusable(conn, schema, fingerprint_)
        return reason, current_xmin(conn)


def record_build(
    database: Database,
    schema: str,
    *,
    fingerprint_: str,
    changes_xmin: int,
    manifest_path: Path,
    invocation_id: str | None,
    allowed_env: Iterable[str],
) -> str | None:
    """Record a successful build of every model (see the module docstring).

    Args:
        database: the project's database.
        schema: the dbt schema.
        fingerprint_: :func:`fingerprint` of the build.
        changes_xmin: taken before the build started (:func:`why_build`).
        manifest_path: the ``manifest.json`` dbt wrote for this run.
        invocation_id: dbt's id of the command that wrote it (another process sharing the
            target folder may have rewritten it since: then nothing is recorded).
        allowed_env: the environment variables the fingerprint covers.

    Returns:
        None when recorded, else why not (no readable manifest, one written by another dbt
        command, models reading another per-run variable); the next run then builds the
        models again.
    """
    try:
        manifest = json.loads(manifest_path.read_text())
        written_by = manifest["metadata"].get("invocation_id")
        inputs = model_inputs(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"no readable manifest ({exc})"
    if invocation_id is None or written_by != invocation_id:
        return f"{manifest_path} was written by another dbt command"
    unknown = inputs.env_names - set(allowed_env)
    if unknown:
        return "the models read " + ", ".join(sorted(unknown))
    with connect(database, autocommit=True) as conn:
        model_builds.record(
            conn,
            schema,
            fingerprint=fingerprint_,
            changes_xmin=changes_xmin,
            sources=inputs.sources,
            relations=inputs.relations,
        )
    return None
