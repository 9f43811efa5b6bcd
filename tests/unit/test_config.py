"""Settings and URL parsing: errors name the variable and the reason, never the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdq.config import load_settings
from mdq.db import Database, parse_url
from mdq.exceptions import SettingsError


def test_defaults_use_embedded_database_in_the_per_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # issue 8: the default home no longer depends on the working directory
    monkeypatch.delenv("MDQ_DATABASE_URL", raising=False)
    monkeypatch.delenv("MDQ_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    first = load_settings()
    monkeypatch.chdir(tmp_path)
    second = load_settings()
    assert first.database_url is None
    assert first.home == second.home == tmp_path / "xdg" / "mdq"


def test_mdq_home_overrides_and_a_relative_one_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDQ_HOME", "state/mdq")
    assert load_settings().home == tmp_path / "state" / "mdq"
    monkeypatch.setenv("MDQ_HOME", "~/elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert load_settings().home == tmp_path / "user" / "elsewhere"


def test_empty_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", "  ")
    assert load_settings().database_url is None


def test_non_postgres_url_is_one_clear_error_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDQ_DATABASE_URL", "mysql://root:hunter2@db/x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.name == "MDQ_DATABASE_URL"
    assert str(info.value) == "MDQ_DATABASE_URL: must start with postgresql:// (or postgres://)"
    assert "hunter2" not in str(info.value)


def test_bad_schema_name_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDQ_DBT_SCHEMA", "drop table;")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.name == "MDQ_DBT_SCHEMA"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://alice:s3cr%40t@db.example:6543/prices",
            Database("db.example", 6543, "alice", "s3cr@t", "prices"),
            id="full",
        ),
        pytest.param(
            "postgres://postgres@127.0.0.1/test",
            Database("127.0.0.1", 5432, "postgres", "", "test"),
            id="default-port",
        ),
        pytest.param(
            "postgresql://postgres@/mdq?host=/tmp/sock",
            Database("/tmp/sock", 5432, "postgres", "", "mdq"),
            id="unix-socket",
        ),
    ],
)
def test_parse_url(url: str, expected: Database) -> None:
    assert parse_url(url) == expected


def test_url_without_database_is_rejected() -> None:
    with pytest.raises(SettingsError, match="names no database"):
        parse_url("postgresql://postgres@localhost:5432")


def test_url_round_trip_keeps_socket_and_password() -> None:
    db = Database("/tmp/some dir", 5433, "u", "p@ss", "d")
    assert parse_url(db.url()) == db


def test_dbt_env_matches_profile_variables() -> None:
    profile = (Path(__file__).resolve().parents[2] / "profiles.yml").read_text()
    env = Database("h", 1, "u", "p", "d").dbt_env("mdq")
    for key in env:
        assert f"env_var('{key}'" in profile
