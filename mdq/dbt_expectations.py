"""The optional dbt-expectations tests: the switch ``MDQ_DBT_EXPECTATIONS`` and its package.

Off by default: the project has no ``packages.yml`` and no dbt command needs the dbt hub. With
``MDQ_DBT_EXPECTATIONS=1`` dbt parses ``dbt_project/expectations/`` too (its ``model-paths``
entry in ``dbt_project.yml`` reads the same variable), and before each dbt command mdq writes
``dbt_project/packages.yml`` from ``dbt_project/expectations/packages.yml`` (the package
``metaplane/dbt_expectations``) and runs ``dbt deps`` once if the package is not installed.
When the switch is off again, mdq removes the ``packages.yml`` it wrote (never one a user
wrote). No Prefect here; the dbt runner calls :func:`prepare_packages`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mdq.exceptions import DbtExpectationsUnavailable

#: The environment variable that enables the dbt-expectations tests.
SWITCH_ENV = "MDQ_DBT_EXPECTATIONS"
#: The package the tests come from, as packages.yml names it.
PACKAGE = "metaplane/dbt_expectations"
_ON = ("1", "true", "yes")


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``MDQ_DBT_EXPECTATIONS`` is ``1``, ``true`` or ``yes`` (case-insensitive).

    Args:
        environ: the environment to read (default ``os.environ``).
    """
    value = (environ if environ is not None else os.environ).get(SWITCH_ENV, "")
    return value.strip().lower() in _ON


def prepare_packages(
    project_dir: Path,
    *,
    deps: Callable[[], tuple[bool, str]],
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Put ``packages.yml`` in the state the switch asks for; install the package if needed.

    Args:
        project_dir: the dbt project (holds ``expectations/packages.yml``).
        deps: runs ``dbt deps`` on the project; returns (success, dbt's message).
        environ: the environment to read (default ``os.environ``).

    Returns:
        What was done, in one line (``None``: nothing).

    Raises:
        DbtExpectationsUnavailable: the switch is on and the package is not installed and
            ``dbt deps`` could not install it (no access to the dbt hub), or the project has
            its own, different ``packages.yml``.
    """
    template = project_dir / "expectations" / "packages.yml"
    packages = project_dir / "packages.yml"
    wanted = template.read_text()
    if not enabled(environ):
        if packages.exists() and packages.read_text() == wanted:
            packages.unlink()
            return f"removed {packages} ({SWITCH_ENV} is off)"
        return None
    done = None
    if not packages.exists():
        packages.write_text(wanted)
        done = f"wrote {packages}"
    elif packages.read_text() != wanted:
        raise DbtExpectationsUnavailable(
            f"{packages} exists and is not mdq's; add the package {PACKAGE} to it yourself "
            "and run dbt deps"
        )
    if _installed(project_dir):
        return done
    ok, message = deps()
    if not ok or not _installed(project_dir):
        raise DbtExpectationsUnavailable(
            f"dbt deps could not install it ({_first_line(message)}); run dbt deps where "
            f"hub.getdbt.com is reachable, or unset {SWITCH_ENV}"
        )
    return f"{done or 'packages.yml in place'}; installed {PACKAGE} with dbt deps"


def _installed(project_dir: Path) -> bool:
    return (project_dir / "dbt_packages" / "dbt_expectations" / "dbt_project.yml").exists()


def _first_line(text: Any) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "no message"
