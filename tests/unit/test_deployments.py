"""prefect.yaml parses with Prefect's own loader and agrees with `mdq serve`'s deployments."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from mdq.deployments import AFTER_BACKFILL_TRIGGER, BACKFILL_CRON, FULL_CHECK_CRON, HEALTH_CRON

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    # The loader `prefect deploy` uses (private in Prefect 3.9; it prints and skips invalid
    # files instead of raising, so an invalid file shows up as missing deployments).
    from prefect.cli.deploy._config import _load_deploy_configs_and_actions

    console = Console(record=True)
    deployments, actions = _load_deploy_configs_and_actions(PREFECT_YAML, console=console)
    assert "validation" not in console.export_text().lower(), console.export_text()
    assert actions["pull"] is None  # `prefect deploy` records the checkout as working dir
    return {d["name"]: d for d in deployments}


def test_the_four_deployments_and_their_schedules(configs: dict[str, dict]) -> None:
    assert set(configs) == {"daily", "after-backfill", "full-weekly", "every-6h"}
    daily, health = configs["daily"], configs["every-6h"]
    weekly = configs["full-weekly"]
    assert weekly["schedules"] == [{"cron": FULL_CHECK_CRON, "timezone": "UTC"}]
    assert weekly["parameters"] == {"full": True}
    assert weekly["entrypoint"] == configs["after-backfill"]["entrypoint"]
    assert daily["schedules"] == [{"cron": BACKFILL_CRON, "timezone": "UTC"}]
    assert daily["concurrency_limit"] == 1
    assert health["schedules"] == [{"cron": HEALTH_CRON, "timezone": "UTC"}]
    assert "schedules" not in configs["after-backfill"]
    assert {d["work_pool"]["name"] for d in configs.values()} == {"mdq"}


def test_the_quality_trigger_is_valid_and_matches_serve(configs: dict[str, dict]) -> None:
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    (spec,) = configs["after-backfill"]["triggers"]
    assert spec == AFTER_BACKFILL_TRIGGER
    (trigger,) = _initialize_deployment_triggers("after-backfill", [dict(spec)])
    assert set(trigger.expect) == {"prefect.flow-run.Completed", "prefect.flow-run.Failed"}


@pytest.mark.parametrize("name", ["after-backfill", "full-weekly", "every-6h", "daily"])
def test_entrypoints_load(configs: dict[str, dict], name: str) -> None:
    from prefect.flows import load_flow_from_entrypoint

    entrypoint = configs[name]["entrypoint"]
    if name == "daily":
        pytest.importorskip("flows.backfill", reason="the backfill flow lands with issue 3")
    path, func = entrypoint.split(":")
    loaded = load_flow_from_entrypoint(str(PREFECT_YAML.parent / path) + ":" + func)
    assert loaded.name == {
        "daily": "backfill",
        "after-backfill": "quality-checks",
        "full-weekly": "quality-checks",
    }.get(name, "health")


def test_mdq_serve_builds_the_same_four_deployments(configs: dict[str, dict]) -> None:
    pytest.importorskip("flows.backfill", reason="the backfill flow lands with issue 3")
    from mdq.deployments import build_deployments

    built = {d.name: d for d in build_deployments()}
    assert set(built) == set(configs)
    assert [s.schedule.cron for s in built["daily"].schedules] == [BACKFILL_CRON]
    assert [s.schedule.cron for s in built["every-6h"].schedules] == [HEALTH_CRON]
    assert [s.schedule.cron for s in built["full-weekly"].schedules] == [FULL_CHECK_CRON]
    assert built["full-weekly"].parameters == {"full": True}
    assert built["daily"].concurrency_limit == 1
    (trigger,) = built["after-backfill"].triggers
    assert set(trigger.expect) == set(AFTER_BACKFILL_TRIGGER["expect"])


def test_mdq_serve_check_shards_serves_one_quality_deployment_per_shard() -> None:
    pytest.importorskip("flows.backfill", reason="the backfill flow lands with issue 3")
    from mdq.deployments import build_deployments, quality_deployment_names

    with pytest.raises(ValueError, match="check_shards"):
        quality_deployment_names(0)
    built = {d.name: d for d in build_deployments(check_shards=2)}
    assert set(built) == {
        "daily",
        "every-6h",
        "after-backfill-shard-1-of-2",
        "after-backfill-shard-2-of-2",
        "full-weekly-shard-1-of-2",
        "full-weekly-shard-2-of-2",
    }
    for index in (1, 2):
        after = built[f"after-backfill-shard-{index}-of-2"]
        weekly = built[f"full-weekly-shard-{index}-of-2"]
        assert after.parameters == {"shard": f"{index}/2"}
        (trigger,) = after.triggers
        assert set(trigger.expect) == set(AFTER_BACKFILL_TRIGGER["expect"])
        assert not after.schedules
        assert weekly.parameters == {"full": True, "shard": f"{index}/2"}
        assert [s.schedule.cron for s in weekly.schedules] == [FULL_CHECK_CRON]
        assert after.concurrency_limit == weekly.concurrency_limit == 1
        assert after.entrypoint == built["daily"].entrypoint.replace(
            "backfill.py:backfill", "quality_checks.py:quality_checks"
        )
