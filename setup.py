"""Build hook: the wheel carries mdq's non-Python parts, so an installed mdq needs no checkout.

``pyproject.toml`` stays the source of the package metadata; this file only extends
``build_py``. At build time it copies the repository's ``dbt_project/`` (models, macros, tests,
seeds, ``dbt_project.yml``; never ``target/``, ``logs/`` or ``dbt_packages/``), ``flows/``,
``profiles.yml`` and ``prefect.yaml`` into ``mdq/_project/`` of the build, where
:func:`mdq.resources.project_root` finds them. An editable install copies nothing: it reads the
checkout's files in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: What the wheel carries under mdq/_project/, relative to the repository root.
PROJECT_PARTS = ("dbt_project", "flows", "profiles.yml", "prefect.yaml")
#: Never shipped: dbt's output, local state, bytecode.
IGNORED = shutil.ignore_patterns(
    "target", "logs", "dbt_packages", ".user.yml", "__pycache__", "*.pyc"
)


class BuildPyWithProject(build_py):
    """``build_py`` that also copies :data:`PROJECT_PARTS` into ``<build>/mdq/_project``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "mdq" / "_project"
        if target.exists():
            shutil.rmtree(target)  # a previous build's copy may hold deleted files
        target.mkdir(parents=True)
        for part in PROJECT_PARTS:
            source = ROOT / part
            if source.is_dir():
                shutil.copytree(source, target / part, ignore=IGNORED)
            else:
                shutil.copy2(source, target / part)


setup(cmdclass={"build_py": BuildPyWithProject})
