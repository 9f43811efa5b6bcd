"""The deployments of ``prefect.yaml`` as objects, for ``mdq serve`` (one process, no worker).

Backfill daily at 02:00 UTC (concurrency 1), the quality checks after each backfill run
(an event trigger on the ``backfill`` flow's Completed/Failed; incremental), a full re-read of
the checks weekly (``full-weekly``), health every 6 hours.
``tests/unit/test_deployments.py`` checks that this module and ``prefect.yaml`` agree.

``prefect deploy`` and ``mdq serve`` register deployments of the same names. Prefect's runner
updates an existing deployment in place but leaves its ``path`` unset when ``prefect deploy``
made it (that one has pull steps and no path instead): the served run then fails to load its
flow (``FileNotFoundError: <cwd>/None``). :func:`take_over` removes such work-pool deployments
first, so ``mdq serve`` registers its own; ``prefect deploy --all`` gives them back to a worker.
"""

from __future__ import annotations

from typing import Any

#: Cron schedules (UTC) of the scheduled deployments.
BACKFILL_CRON = "0 2 * * *"
HEALTH_CRON = "0 */6 * * *"
#: The weekly full re-read of the checks (``mdq check --full``): Sundays 04:00 UTC, after the
#: daily backfill's quality run.
FULL_CHECK_CRON = "0 4 * * 0"

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
    """The four runner deployments (``RunnerDeployment``) to pass to ``prefect.serve``.

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
        quality_checks.to_deployment(
            name="full-weekly",
            schedules=[Cron(FULL_CHECK_CRON, timezone="UTC")],
            parameters={"full": True},
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


def take_over(deployments: list[Any]) -> list[str]:
    """Delete the deployments of the same names that ``prefect deploy`` registered for a work
    pool, so that ``prefect.serve`` creates its own instead of half-updating them.

    Deployments that a previous ``mdq serve`` registered (no work pool) are kept: the runner
    updates those correctly. Their past flow runs stay in the API.

    Args:
        deployments: the runner deployments about to be served (:func:`build_deployments`).

    Returns:
        The names (``flow/deployment``) of the deployments deleted, in the given order.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    taken: list[str] = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name or existing.pull_steps:
                client.delete_deployment(existing.id)
                taken.append(name)
    return taken
