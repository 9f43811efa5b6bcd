"""The optional dbt-expectations tests: their YAML, the switch and packages.yml (no dbt here;
tests/integration/test_dbt_verdict.py runs dbt with the switch on and no package)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mdq.dbt_expectations import enabled, prepare_packages
from mdq.dbt_runner import DBT_PROJECT_DIR
from mdq.exceptions import DbtExpectationsUnavailable

EXPECTATIONS = DBT_PROJECT_DIR / "expectations"


def test_the_expectations_yaml_parses_and_declares_the_four_tests() -> None:
    spec = yaml.safe_load((EXPECTATIONS / "_expectations__tests.yml").read_text())
    (model,) = spec["models"]
    assert model["name"] == "int_candles_session_dated"
    assert (EXPECTATIONS / "int_candles_session_dated.sql").exists()
    tests = {name: body for item in model["data_tests"] for name, body in item.items()}
    assert tests["dbt_expectations.expect_compound_columns_to_be_unique"]["arguments"] == {
        "column_list": ["symbol", "timeframe", "ts"]
    }
    assert tests["dbt_expectations.expect_column_pair_values_A_to_be_greater_than_B"][
        "arguments"
    ] == {"column_A": "high", "column_B": "low", "or_equal": True}
    recency = tests["dbt_expectations.expect_grouped_row_values_to_have_recent_data"]
    assert recency["arguments"]["group_by"] == ["symbol", "timeframe"]
    per_session = tests["dbt_expectations.expect_table_row_count_to_be_between"]["arguments"]
    assert per_session["group_by"] == ["symbol", "timeframe", "session_date"]
    assert (per_session["min_value"], per_session["max_value"]) == (1, 1)
    # every test is documented and tagged, every column of the model described
    assert all(body["description"].strip() for body in tests.values())
    assert all("expectations" in body["config"]["tags"] for body in tests.values())
    assert all(column["description"].strip() for column in model["columns"])
    packages = yaml.safe_load((EXPECTATIONS / "packages.yml").read_text())
    assert packages["packages"][0]["package"] == "metaplane/dbt_expectations"


def test_the_folder_is_parsed_only_when_the_switch_is_on() -> None:
    project = (DBT_PROJECT_DIR / "dbt_project.yml").read_text()
    assert (
        "model-paths: [\"models\", \"{{ 'expectations' if env_var('MDQ_DBT_EXPECTATIONS', '') "
        "in ('1', 'true', 'yes') else 'expectations_disabled' }}\"]"
    ) in project
    assert not (DBT_PROJECT_DIR / "expectations_disabled").exists()


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("true", True), ("YES", True), ("", False), ("0", False), ("no", False)],
)
def test_the_switch(value: str, on: bool) -> None:
    assert enabled({"MDQ_DBT_EXPECTATIONS": value}) is on


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "expectations").mkdir()
    shutil.copy(EXPECTATIONS / "packages.yml", tmp_path / "expectations" / "packages.yml")
    return tmp_path


def never_called() -> tuple[bool, str]:
    raise AssertionError("dbt deps must not run here")


def test_off_removes_only_the_packages_yml_mdq_wrote(project: Path) -> None:
    assert prepare_packages(project, deps=never_called, environ={}) is None
    shutil.copy(project / "expectations" / "packages.yml", project / "packages.yml")
    done = prepare_packages(project, deps=never_called, environ={})
    assert done == f"removed {project / 'packages.yml'} (MDQ_DBT_EXPECTATIONS is off)"
    assert not (project / "packages.yml").exists()
    own = "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n"
    (project / "packages.yml").write_text(own)
    assert prepare_packages(project, deps=never_called, environ={}) is None
    assert (project / "packages.yml").read_text() == own


def test_on_with_a_users_own_packages_yml_is_refused(project: Path) -> None:
    (project / "packages.yml").write_text("packages: []\n")
    with pytest.raises(DbtExpectationsUnavailable, match="exists and is not mdq's"):
        prepare_packages(project, deps=never_called, environ={"MDQ_DBT_EXPECTATIONS": "1"})


def test_on_with_the_package_installed_runs_no_deps(project: Path) -> None:
    installed = project / "dbt_packages" / "dbt_expectations"
    installed.mkdir(parents=True)
    (installed / "dbt_project.yml").write_text("name: dbt_expectations\n")
    done = prepare_packages(project, deps=never_called, environ={"MDQ_DBT_EXPECTATIONS": "1"})
    assert done == f"wrote {project / 'packages.yml'}"
    assert (project / "packages.yml").read_text() == (
        project / "expectations" / "packages.yml"
    ).read_text()
