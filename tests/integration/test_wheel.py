"""The wheel (issue 8): built from the repository, it carries the dbt project, the profile,
``prefect.yaml`` and the flows, and the installed mdq runs ``mdq demo`` and ``mdq check`` from
any directory without writing into its package folder.

The wheel is installed with ``pip install --no-deps --target`` and run with this venv's
interpreter and dependencies (``PYTHONPATH`` puts the installed copy before the editable one);
a fresh venv that installs every dependency too takes minutes and runs in CI as
``.ci/check_wheel.sh``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdq import embedded

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-08-06T15:00:00Z"  # as in test_demo: shortly after the last shipped AAPL candle
PROJECT_PARTS = ["dbt_project", "flows", "profiles.yml", "prefect.yaml"]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # not under pytest's basetemp: a concurrent pytest session of the same user may reset its
    # permissions (the embedded server runs as another OS user under root) or prune it
    with tempfile.TemporaryDirectory(prefix="mdq-wheel-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        yield folder


@pytest.fixture(scope="module")
def wheel(workdir: Path) -> Path:
    out = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("mdq-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, workdir: Path) -> Path:
    target = workdir / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
        + ["--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def shipped_files() -> list[str]:
    """The files of the project parts that git does not ignore (tracked or new)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *PROJECT_PARTS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(name for name in listed if (REPO_ROOT / name).is_file())


def test_the_wheel_carries_the_dbt_project_profile_and_flows(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    project = sorted(
        n.removeprefix("mdq/_project/") for n in names if n.startswith("mdq/_project/")
    )
    assert project == shipped_files()
    for required in (
        "dbt_project/dbt_project.yml",
        "dbt_project/models/staging/market/stg_market__candles.sql",
        "dbt_project/macros/tests/test_candle_gaps.sql",
        "profiles.yml",
        "prefect.yaml",
        "flows/backfill.py",
        "flows/quality_checks.py",
        "flows/health.py",
    ):
        assert required in project
    assert not [n for n in project if n.split("/")[1:2] in (["target"], ["logs"])]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".user.yml")]
    assert "mdq/migrations/001_reference_and_bookkeeping.sql" in names
    assert any(n.startswith("mdq/sample_data/") and n.endswith(".csv.gz") for n in names)


def _env(site: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MDQ_", "PREFECT_API", "DBT_")) and k != "PYTHONPATH"
    }
    env.update({"PYTHONPATH": str(site), "MDQ_HOME": str(home), "COLUMNS": "200"})
    return env


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (bytecode caches aside) with its modification time."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_installed_wheel_runs_demo_and_check_from_another_directory(
    site: Path, workdir: Path
) -> None:
    home, elsewhere, other = workdir / "home", workdir / "elsewhere", workdir / "other"
    elsewhere.mkdir()
    other.mkdir()
    env = _env(site, home)
    mdq_script = site / "bin" / "mdq"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mdq, mdq.resources as r; print(mdq.__file__); print(r.project_root()); "
            "print(r.is_installed_copy()); print(r.load_flow('quality_checks.py:quality_checks')"
            ".name)",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.splitlines() == [
        str(site / "mdq" / "__init__.py"),
        str(site / "mdq" / "_project"),
        "True",
        "quality-checks",
    ]
    before = _files(site)
    try:
        demo = subprocess.run(
            [str(mdq_script), "demo", "--as-of", AS_OF],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert f"created a new embedded database in {home / 'pgdata'}" in demo.stderr
        assert f"1. database: embedded PostgreSQL (data in {home / 'pgdata'})" in demo.stdout
        assert "BTCUSD/1h: completed, fetched 20111, inserted 20111" in demo.stdout
        assert "EURUSD/1h: completed, fetched 6225, inserted 6225" in demo.stdout

        check = subprocess.run(
            [str(mdq_script), "check", "--as-of", AS_OF],
            cwd=other,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        # the shipped files hold real error-severity findings: exit 1, never 2 (could not run)
        assert check.returncode == 1, check.stdout[-2000:] + check.stderr[-2000:]
        assert "created a new" not in check.stderr
        # the same data and as_of as the demo: every finding is seen again, none new or resolved,
        # and the open counts are the demo's (with at least one error: hence exit 1)
        assert "anomalies: 0 new, " in check.stdout and ", 0 resolved; open: " in check.stdout
        demo_open = re.findall(r"open: (\d+) error, (\d+) warn", demo.stdout)
        check_open = re.findall(r"open: (\d+) error, (\d+) warn", check.stdout)
        assert len(demo_open) == 1 and check_open == demo_open
        assert int(check_open[0][0]) > 0
    finally:
        embedded.stop(home)
    # dbt wrote under MDQ_HOME, never into the installed package or the working directories
    assert (home / "dbt" / "target" / "run_results.json").is_file()
    assert (home / "dbt" / "logs" / "dbt.log").is_file()
    assert (home / "dbt" / "profiles.yml").read_bytes() == (REPO_ROOT / "profiles.yml").read_bytes()
    assert _files(site) == before
    assert list(elsewhere.iterdir()) == [] and list(other.iterdir()) == []
