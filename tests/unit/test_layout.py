"""Issue 8: no module Prefect may put first on ``sys.path`` hides an installed one.

Prefect loads a deployment's entrypoint (``flows/backfill.py:backfill``) as a script: it puts the
entrypoint's folder first on ``sys.path``, and a worker or ``prefect deploy`` runs from the
repository root (its working directory is on ``sys.path`` too). A ``flows/dbt.py`` therefore hid
the installed ``dbt`` (``No module named 'dbt.cli'; 'dbt' is not a package``), so no scheduled check
ever ran. This test compares those folders' module names with every installed top-level name.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from mdq.resources import project_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def importable_names(folder: Path) -> set[str]:
    """Top-level names a folder on ``sys.path`` makes importable: ``x.py`` files, packages and
    namespace packages (any sub-folder whose name is an identifier).

    Args:
        folder: the folder that would be on ``sys.path``.

    Returns:
        The module names, e.g. ``{"backfill", "health", "quality_checks"}`` for ``flows/``.
    """
    names = set()
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)
    return names


def installed_top_level_names() -> dict[str, list[str]]:
    """Top-level import names of every installed distribution and of the standard library.

    A distribution's name counts when it is importable from ``sys.path`` without the repository
    root.

    Returns:
        name -> the distributions providing it (``["<stdlib>"]`` for standard modules); the
        project's own distribution ``mdq`` is left out (``mdq/`` is the package it installs).
    """
    elsewhere = [p for p in sys.path if p and Path(p).resolve() != REPO_ROOT]
    names: dict[str, list[str]] = {
        name: sorted(set(dists))
        for name, dists in packages_distributions().items()
        # a name a distribution declares but does not install (prefect-dbt's top_level.txt
        # lists "dist") hides nothing
        if set(dists) != {"mdq"} and PathFinder.find_spec(name, elsewhere) is not None
    }
    for name in sys.stdlib_module_names:
        names.setdefault(name, []).append("<stdlib>")
    return names


def shadowed(folder: Path, installed: dict[str, list[str]]) -> dict[str, list[str]]:
    """The modules of ``folder`` that would hide an installed top-level name.

    Returns:
        module name -> the distributions it would hide (empty when the folder is safe).
    """
    return {name: installed[name] for name in sorted(importable_names(folder)) if name in installed}


@pytest.fixture(scope="module")
def installed() -> dict[str, list[str]]:
    names = installed_top_level_names()
    # the check is meaningful only if it sees the project's real dependencies
    assert {"dbt", "prefect", "psycopg", "pandas"} <= names.keys()
    assert "dbt-core" in names["dbt"]
    return names


def test_flows_folder_hides_no_installed_module(installed: dict[str, list[str]]) -> None:
    flows = project_file("flows")
    assert importable_names(flows) == {"backfill", "health", "quality_checks"}
    assert shadowed(flows, installed) == {}


def test_repository_root_hides_no_installed_module(installed: dict[str, list[str]]) -> None:
    # a worker started in the checkout, and `prefect deploy`'s set_working_directory, put the
    # repository root on sys.path: its folders must not hide anything either (mdq is ours)
    assert {"dbt_project", "flows", "mdq", "tests"} <= importable_names(REPO_ROOT)
    assert shadowed(REPO_ROOT, installed) == {}


def test_the_check_catches_the_flows_dbt_module_of_issue_8(
    tmp_path: Path, installed: dict[str, list[str]]
) -> None:
    (tmp_path / "dbt.py").write_text("# the old flows/dbt.py\n")
    (tmp_path / "backfill.py").write_text("")
    (tmp_path / "prefect").mkdir()
    found = shadowed(tmp_path, installed)
    assert sorted(found) == ["dbt", "prefect"]
    assert "dbt-core" in found["dbt"]
    assert found["prefect"] == ["prefect"]
