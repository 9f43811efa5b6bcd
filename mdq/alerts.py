"""Alert routing: a Prefect automation that sends every ``mdq.alert.*`` event to a person.

mdq decides *when* to alert (once per problem streak: :mod:`mdq.health`,
:func:`mdq.db.backfill.track_symbol_failure`) and emits one Prefect event per alert
(:class:`mdq.notify.LogNotifier`). :func:`setup_alert_routing` creates, on the Prefect server,
the automation that turns each such event into one call of a notification block: a webhook
block it creates, or any notification block already saved (Slack, e-mail, Teams, PagerDuty...:
configuration of the same automation). The Prefect server sends the notifications, so the
mdq process that raised the alert needs no network access to the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

#: The event names the automation matches (see :class:`mdq.notify.LogNotifier`).
ALERT_EVENTS = "mdq.alert.*"

#: Notification subject and body, Jinja templates rendered by the Prefect server per event.
SUBJECT_TEMPLATE = "mdq alert {{ event.event }}: {{ event.resource.id }}"
BODY_TEMPLATE = "{{ event.payload.message }}"

#: The JSON the webhook block posts; ``{{subject}}``/``{{body}}`` are the rendered templates.
WEBHOOK_JSON = {"subject": "{{subject}}", "body": "{{body}}"}


@dataclass(frozen=True)
class AlertRouting:
    """What :func:`setup_alert_routing` made.

    Attributes:
        automation_id: the Prefect automation.
        automation_name: its name.
        block_document_id: the notification block it calls.
        block: ``<block-type-slug>/<block-name>`` of that block.
    """

    automation_id: UUID
    automation_name: str
    block_document_id: UUID
    block: str


def setup_alert_routing(
    *, webhook_url: str | None = None, block: str | None = None, name: str = "mdq-alerts"
) -> AlertRouting:
    """Create (or replace) the automation routing ``mdq.alert.*`` events to a notification
    block, on the Prefect server of ``PREFECT_API_URL``. Idempotent: running it again replaces
    the automation (and the webhook block) of the same name.

    Exactly one of ``webhook_url`` and ``block`` must be given.

    Args:
        webhook_url: create (or overwrite) a webhook block named ``name`` posting
            ``{"subject": ..., "body": ...}`` as JSON to this URL.
        block: use a saved notification block instead, ``<block-type-slug>/<name>``, e.g.
            ``slack-webhook/ops`` or ``sendgrid-email/oncall``.
        name: the automation's name (and the webhook block's).

    Returns:
        The automation and the block it calls.

    Raises:
        ValueError: neither or both of ``webhook_url`` and ``block``, or ``block`` is not a
            saved notification block.
    """
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if (webhook_url is None) == (block is None):
        raise ValueError("give exactly one of a webhook URL and a saved notification block")
    target: Any
    if webhook_url is not None:
        target = CustomWebhookNotificationBlock(name=name, url=webhook_url, json_data=WEBHOOK_JSON)
        block_id = target.save(name, overwrite=True)
        slug = f"{CustomWebhookNotificationBlock.get_block_type_slug()}/{name}"
    else:
        assert block is not None
        target = Block.load(block)
        if "notify" not in target.get_block_capabilities():
            raise ValueError(f"block {block!r} is not a notification block")
        block_id, slug = target._block_document_id, block
    _delete_automations(name)
    automation = Automation(
        name=name,
        description=(
            "mdq: one notification per mdq alert event (mdq decides: once per problem streak)."
        ),
        trigger=EventTrigger(
            match={"prefect.resource.id": "mdq.*"},
            expect={ALERT_EVENTS},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id, subject=SUBJECT_TEMPLATE, body=BODY_TEMPLATE
            )
        ],
    ).create()
    assert automation.id is not None
    return AlertRouting(automation.id, name, block_id, slug)


def _delete_automations(name: str) -> None:
    """Delete every automation called ``name`` (so setup replaces, never duplicates)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(name):
            client.delete_automation(automation.id)
