"""The deployments of ``prefect.yaml`` as objects, for ``mdq serve`` (one process, no worker).

Backfill daily at 02:00 UTC (concurrency 1), the quality checks after each backfill run
(an event trigger on the ``backfill`` flow's Completed/Failed; incremental), a full re-read of
the checks weekly (``full-weekly``), health every 6 hours. ``mdq serve --check-shards n``
serves the two quality deployments once per shard (``after-backfill-shard-<i>-of-<n>``, ...,
parameter ``shard``), so that n flow runs check the database at the same time.
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


#: The quality deployments that sharded serving (``mdq serve --check-shards n``) replaces
#: by one deployment per shard (:func:`quality_deployment_names`).
QUALITY_DEPLOYMENTS = ("after-backfill", "full-weekly")


def quality_deployment_names(check_shards: int = 1) -> dict[str, dict[str, Any]]:
    """The quality deployments' names and parameters for ``check_shards`` shards.

    One shard: ``after-backfill`` (no parameters) and ``full-weekly`` (``full``). ``n`` > 1:
    ``after-backfill-shard-<i>-of-<n>`` (``shard: "i/n"``) and ``full-weekly-shard-<i>-of-<n>``
    (``full``, ``shard``) for each i: n flow runs check one database at the same time, each
    its own symbols and dbt schema (:mod:`mdq.db.locks`).

    Raises:
        ValueError: ``check_shards`` < 1.
    """
    if check_shards < 1:
        raise ValueError(f"check_shards must be >= 1, got {check_shards}")
    if check_shards == 1:
        return {"after-backfill": {}, "full-weekly": {"full": True}}
    names: dict[str, dict[str, Any]] = {}
    for kind, base in (("after-backfill", {}), ("full-weekly", {"full": True})):
        for index in range(1, check_shards + 1):
            label = f"{index}/{check_shards}"
            names[f"{kind}-shard-{index}-of-{check_shards}"] = {**base, "shard": label}
    return names


def build_deployments(check_shards: int = 1) -> list[Any]:
    """The runner deployments (``RunnerDeployment``) to pass to ``prefect.serve``: the four of
    ``prefect.yaml``, or with ``check_shards`` > 1 one after-backfill and one weekly quality
    deployment per shard (:func:`quality_deployment_names`; ``mdq serve --check-shards n``).

    Raises:
        ImportError: the backfill flow (``flows/backfill.py``) is missing.
        ValueError: ``check_shards`` < 1.
    """
    quality_names = quality_deployment_names(check_shards)
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    from mdq.resources import load_flow

    backfill = load_flow("backfill.py:backfill")
    health_check = load_flow("health.py:health_check")
    quality_checks = load_flow("quality_checks.py:quality_checks")

    trigger = {k: v for k, v in AFTER_BACKFILL_TRIGGER.items() if k != "type"}
    quality = [
        quality_checks.to_deployment(
            name=name,
            **(
                {"schedules": [Cron(FULL_CHECK_CRON, timezone="UTC")]}
                if parameters.get("full")
                else {"triggers": [DeploymentEventTrigger(**trigger)]}
            ),
            **({"parameters": parameters} if parameters else {}),
            concurrency_limit=1,
            tags=["mdq", "quality"],
        )
        for name, parameters in quality_names.items()
    ]
    return [
        backfill.to_deployment(
            name="daily",
            schedules=[Cron(BACKFILL_CRON, timezone="UTC")],
            concurrency_limit=1,
            tags=["mdq", "backfill"],
        ),
        *quality,
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

    Quality deployments of another shard count than the ones served (``after-backfill`` when
    serving shards, or shards of an earlier ``mdq serve --check-shards``) are deleted too.

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
        taken += _retire_other_quality_deployments(client, deployments)
    return taken


def _retire_other_quality_deployments(client: Any, deployments: list[Any]) -> list[str]:
    """Delete the quality deployments of another shard count than the ones served (e.g.
    ``after-backfill`` once ``mdq serve --check-shards 2`` serves its shards): left in the
    API, their trigger and schedule would still start runs that nobody serves. Returns their
    ``flow/deployment`` names."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    served = {d.name for d in deployments if d.flow_name == "quality-checks"}
    if not served:
        return []
    retired: list[str] = []
    existing = client.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["quality-checks"]))
    )
    for deployment in existing:
        name = str(deployment.name)
        ours = name in QUALITY_DEPLOYMENTS or name.startswith(
            tuple(f"{kind}-shard-" for kind in QUALITY_DEPLOYMENTS)
        )
        if ours and name not in served:
            client.delete_deployment(deployment.id)
            retired.append(f"quality-checks/{name}")
    return retired
