"""Where mdq's non-Python parts live: the dbt project, the dbt profile, the Prefect flows.

In a git checkout (or an editable install) they are the repository's top-level folders
``dbt_project/``, ``flows/`` and the files ``profiles.yml`` and ``prefect.yaml``. A wheel carries
copies of them inside the package, under ``mdq/_project/`` (see ``setup.py``), so an installed
mdq works from any directory. :func:`project_file` answers the same question for both.

The flows are loaded the way a Prefect worker loads a deployment's entrypoint
(:func:`load_flow`), so the CLI, ``mdq serve`` and the deployments run the same code.

An installed package folder may be read-only and shared by several users, so mdq never writes
into it: dbt's ``target/`` and ``logs/`` (and the profile it reads) go to a per-user folder
(:func:`dbt_work_dir`).
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


def is_installed_copy() -> bool:
    """True when the project files are the copies inside an installed wheel (``mdq/_project``),
    False in a checkout or an editable install."""
    return project_root() == _PACKAGE_DIR / "_project"


def dbt_work_dir(home: Path | None = None) -> Path | None:
    """The per-user folder dbt writes to when mdq runs from an installed wheel.

    It holds dbt's ``target/`` (manifest, run results, the docs site), ``logs/`` and a copy of
    ``profiles.yml`` (dbt writes its ``.user.yml`` next to the profile it reads, so the profile
    is read from here, never from the package folder). The copy is refreshed when the
    installed profile changes.

    Args:
        home: MDQ_HOME (default: the settings' home, i.e. ``MDQ_HOME`` or the per-user data
            directory).

    Returns:
        ``<home>/dbt`` (created) for an installed wheel; None in a checkout, where dbt keeps
        writing ``dbt_project/target`` and ``dbt_project/logs`` (ignored by git).

    Raises:
        SettingsError: ``home`` not given and the settings are invalid.
        OSError: the folder cannot be created.
    """
    if not is_installed_copy():
        return None
    if home is None:
        from mdq.config import load_settings

        home = load_settings().home
    work = home / "dbt"
    work.mkdir(parents=True, exist_ok=True)
    profile = project_file("profiles.yml").read_bytes()
    copy = work / "profiles.yml"
    if not copy.is_file() or copy.read_bytes() != profile:
        copy.write_bytes(profile)
    return work


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
