"""`prefect deploy` accepts prefect.yaml against a real Prefect server (the session harness)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_prefect_deploy_registers_schedules_and_the_trigger(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="mdq", type="process"), overwrite=True)
    # Until the backfill flow exists (issue 3) only the other two can be deployed.
    if importlib.util.find_spec("flows.backfill") is not None:
        which = ["--all"]
    else:
        which = ["--name", "after-backfill", "--name", "every-6h"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *which],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    with get_client(sync_client=True) as client:
        health = client.read_deployment_by_name("health/every-6h")
        assert [s.schedule.cron for s in health.schedules] == ["0 */6 * * *"]
        assert health.schedules[0].schedule.timezone == "UTC"
        quality = client.read_deployment_by_name("quality-checks/after-backfill")
        automations = client.read_resource_related_automations(f"prefect.deployment.{quality.id}")
        assert len(automations) == 1
        trigger = automations[0].trigger
        assert set(trigger.expect) == {"prefect.flow-run.Completed", "prefect.flow-run.Failed"}
        if which == ["--all"]:
            daily = client.read_deployment_by_name("backfill/daily")
            assert [s.schedule.cron for s in daily.schedules] == ["0 2 * * *"]
            assert daily.global_concurrency_limit is not None
            assert daily.global_concurrency_limit.limit == 1
            weekly = client.read_deployment_by_name("quality-checks/full-weekly")
            assert [s.schedule.cron for s in weekly.schedules] == ["0 4 * * 0"]
            assert weekly.parameters == {"full": True}
