"""The deployments of ``prefect.yaml`` as objects, for ``mdq serve`` (one process, no worker).

Backfill daily at 02:00 UTC (concurrency 1), the quality checks after each backfill run
(an event trigger on the ``backfill`` flow's Completed/Failed), health every 6 hours.
``tests/unit/test_deployments.py`` checks that this module and ``prefect.yaml`` agree.
"""

from __future__ import annotations

from typing import Any

#: Cron schedules (UTC) of the scheduled deployments.
BACKFILL_CRON = "0 2 * * *"
HEALTH_CRON = "0 */6 * * *"

#: The trigger that starts the quality checks when a backfill flow run ends.
AFTER_BACKFILL_TRIGGER: dict[str, Any] = {
    "type": "event",
    "enabled": True,
    "match": {"prefect.resource.id": "prefect.flow-run.*"},
    "match_related": {"prefect.resource.role": "flow", "prefect.resource.name": "backfill"},
    "expect": ["prefect.flow-run.Completed", "prefect.flow-run.Failed"],
    "posture": "Reactive",
    "threshold": 1,
}


def build_deployments() -> list[Any]:
    """The three runner deployments (``RunnerDeployment``) to pass to ``prefect.serve``.

    Raises:
        ImportError: the backfill flow (``flows/backfill.py``) is missing.
    """
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    from mdq.resources import load_flow

    backfill = load_flow("backfill.py:backfill")
    health_check = load_flow("health.py:health_check")
    quality_checks = load_flow("quality_checks.py:quality_checks")

    trigger = {k: v for k, v in AFTER_BACKFILL_TRIGGER.items() if k != "type"}
    return [
        backfill.to_deployment(
            name="daily",
            schedules=[Cron(BACKFILL_CRON, timezone="UTC")],
            concurrency_limit=1,
            tags=["mdq", "backfill"],
        ),
        quality_checks.to_deployment(
            name="after-backfill",
            triggers=[DeploymentEventTrigger(**trigger)],
            concurrency_limit=1,
            tags=["mdq", "quality"],
        ),
        health_check.to_deployment(
            name="every-6h",
            schedules=[Cron(HEALTH_CRON, timezone="UTC")],
            concurrency_limit=1,
            tags=["mdq", "health"],
        ),
    ]
