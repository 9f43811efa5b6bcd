"""Notifiers: where alerts go (consecutive backfill failures, health problems).

The default :class:`LogNotifier` writes a warning to the log and emits a Prefect event
(``mdq.alert.<kind>``) that a Prefect automation can route to Slack, e-mail or a pager.
Deciding *whether* to alert (once per streak) is the caller's job; a notifier only delivers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        kind: what kind of problem, e.g. ``consecutive_failures``, ``stale``, ``open_anomalies``.
        subject: what it is about, e.g. ``AAPL/1d``.
        message: one human-readable line.
        details: extra JSON-serialisable context.
    """

    kind: str
    subject: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    """Delivers alerts. Implementations must not raise for delivery problems they can log."""

    def send(self, alert: Alert) -> None:
        """Deliver one alert."""


def _prefect_api_in_use() -> bool:
    """True inside a Prefect flow run or when ``PREFECT_API_URL`` is set.

    Outside both, emitting an event would start an ephemeral Prefect server (~25 s measured).
    """
    import os
    import sys

    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class LogNotifier:
    """Logs each alert as a warning and, when a Prefect API is in use (inside a flow run or
    with ``PREFECT_API_URL`` set), emits a Prefect event ``mdq.alert.<kind>``.

    The event is best-effort: if it cannot be emitted, the log line is the record.
    """

    def send(self, alert: Alert) -> None:
        """Log the alert and emit it as a Prefect event."""
        logger.warning("ALERT %s %s: %s", alert.kind, alert.subject, alert.message)
        if not _prefect_api_in_use():
            return
        try:
            from prefect.events import emit_event

            emit_event(
                event=f"mdq.alert.{alert.kind}",
                resource={"prefect.resource.id": f"mdq.{alert.subject}"},
                payload={"message": alert.message, **alert.details},
            )
        except Exception as exc:  # delivery is best-effort; the log line above is the record
            logger.info("could not emit Prefect event for alert: %s", exc)


class RecordingNotifier:
    """Keeps alerts in memory (for tests and dry runs)."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        """Record the alert."""
        self.sent.append(alert)
