"""mdq check decides "no Prefect API" without importing Prefect only when nothing can name one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mdq.dbt_runner import _no_prefect_settings


@pytest.fixture()
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A process with Prefect not imported, no PREFECT_* variable, an empty home and cwd."""
    monkeypatch.delitem(sys.modules, "prefect", raising=False)
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_nothing_configured_means_no_prefect(bare: Path) -> None:
    assert _no_prefect_settings() is True


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("home/.prefect/profiles.toml", '[profiles.x]\nPREFECT_API_URL = "http://h/api"\n'),
        (".env", "PREFECT_API_URL=http://h/api\n"),
        ("pyproject.toml", "[tool.prefect.api]\nurl = 'http://h/api'\n"),
        ("prefect.toml", "[api]\nurl = 'http://h/api'\n"),
    ],
)
def test_any_settings_source_leaves_it_to_prefect(bare: Path, path: str, text: str) -> None:
    (bare / path).parent.mkdir(parents=True, exist_ok=True)
    (bare / path).write_text(text)
    assert _no_prefect_settings() is False


def test_a_prefect_variable_or_an_imported_prefect_leaves_it_to_prefect(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://h/api")
    assert _no_prefect_settings() is False
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setitem(sys.modules, "prefect", sys)
    assert _no_prefect_settings() is False
