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


class LogNotifier:
    """Logs each alert as a warning and emits a Prefect event ``mdq.alert.<kind>``.

    The event is best-effort: without a reachable Prefect API it is only logged.
    """

    def send(self, alert: Alert) -> None:
        """Log the alert and emit it as a Prefect event."""
        logger.warning("ALERT %s %s: %s", alert.kind, alert.subject, alert.message)
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
