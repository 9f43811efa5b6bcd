"""Where mdq's non-Python parts live: the dbt project, the dbt profile, the Prefect flows.

In a git checkout (or an editable install) they are the repository's top-level folders
``dbt_project/``, ``flows/`` and the files ``profiles.yml`` and ``prefect.yaml``. A wheel carries
copies of them inside the package, under ``mdq/_project/`` (see ``setup.py``), so an installed
mdq works from any directory. :func:`project_file` answers the same question for both.

The flows are loaded the way a Prefect worker loads a deployment's entrypoint
(:func:`load_flow`), so the CLI, ``mdq serve`` and the deployments run the same code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

#: The parts looked up by :func:`project_file`.
TProjectPart = Literal["dbt_project", "profiles.yml", "flows", "prefect.yaml"]

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def project_root() -> Path:
    """The folder holding ``dbt_project/``, ``flows/``, ``profiles.yml`` and ``prefect.yaml``.

    Returns:
        ``mdq/_project`` inside an installed wheel, else the repository root (the parent of the
        package folder).

    Raises:
        FileNotFoundError: neither place holds a ``dbt_project/dbt_project.yml`` (a broken
            install).
    """
    for root in (_PACKAGE_DIR / "_project", _PACKAGE_DIR.parent):
        if (root / "dbt_project" / "dbt_project.yml").is_file():
            return root
    raise FileNotFoundError(
        f"mdq's dbt project was found neither in {_PACKAGE_DIR / '_project'} (an installed "
        f"wheel) nor in {_PACKAGE_DIR.parent} (a checkout); reinstall mdq"
    )


def project_file(part: TProjectPart) -> Path:
    """The path of one part of the project (see :data:`TProjectPart`).

    Raises:
        FileNotFoundError: the install is broken (see :func:`project_root`).
    """
    return project_root() / part


def load_flow(entrypoint: str) -> Any:
    """Load a flow of ``flows/`` as a Prefect worker does (``file.py:function``).

    Args:
        entrypoint: relative to ``flows/``, e.g. ``"backfill.py:backfill"``.

    Returns:
        The :class:`prefect.Flow` object.

    Raises:
        FileNotFoundError: no such flow file.
    """
    from prefect.flows import load_flow_from_entrypoint

    file, _, name = entrypoint.partition(":")
    path = project_file("flows") / file
    if not path.is_file():
        raise FileNotFoundError(f"flow file {path} not found")
    return load_flow_from_entrypoint(f"{path}:{name}")
