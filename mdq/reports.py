"""What the Prefect flows publish: run names, failure messages and artifact contents.

Plain functions over the library's records (no Prefect, no database), so the flows stay thin
and the texts are unit-tested. Artifact keys are stable (:data:`ARTIFACT_KEYS`): the Prefect UI
shows each key's history across runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mdq.backfill_core import SeriesResult
from mdq.db.anomalies import StoredAnomaly
from mdq.health import HealthSnapshot
from mdq.quality import QualityReport

#: Artifact keys (Prefect: lowercase letters, digits and dashes), one per kind of report.
ARTIFACT_KEYS = {
    "backfill": "mdq-backfill-series",
    "anomalies": "mdq-open-anomalies",
    "findings": "mdq-worst-findings",
    "health": "mdq-health-snapshot",
}

#: How many anomalies the worst-findings summary lists.
WORST_FINDINGS = 10


def run_name(kind: str, when: datetime, detail: str | None = None) -> str:
    """A flow-run name that says what ran and when, e.g. ``backfill csv 2026-12-01T02:00Z``.

    Args:
        kind: the flow, e.g. ``backfill``.
        when: the run's scheduled start (any zone; shown in UTC to the minute).
        detail: what it ran on (the provider), if anything.
    """
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return " ".join(part for part in (kind, detail, stamp) if part)


def backfill_rows(results: Sequence[SeriesResult]) -> list[dict[str, Any]]:
    """The backfill artifact's table: one row per series, in the results' order.

    Columns: series (``SYMBOL/timeframe``), status, fetched, inserted, updated, unchanged,
    quarantined, duplicates, error ("" when none).
    """
    return [
        {
            "series": f"{r.symbol}/{r.timeframe}",
            "status": r.status,
            "fetched": r.fetched,
            "inserted": r.inserted,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "quarantined": r.quarantined,
            "duplicates": r.duplicates,
            "error": r.error or "",
        }
        for r in results
    ]


def backfill_failure_message(results: Sequence[SeriesResult]) -> str | None:
    """The backfill flow's Failed message, naming each failed series and why; None when no
    series failed.

    Example: ``1 of 3 series failed: NOSUCH/1d: no progress: ...``.
    """
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return None
    reasons = "; ".join(f"{r.symbol}/{r.timeframe}: {r.error or 'failed'}" for r in failed)
    return f"{len(failed)} of {len(results)} series failed: {reasons}"


def anomaly_rows(anomalies: Sequence[StoredAnomaly], seen_at: datetime) -> list[dict[str, Any]]:
    """The open-anomalies artifact's table, by symbol, anomaly type and severity.

    Args:
        anomalies: the open anomalies plus those the run resolved (any order).
        seen_at: the quality run's time: an anomaly first seen then is new, one resolved then
            was resolved by this run.

    Returns:
        Rows sorted by severity (error first), symbol ("" for project-wide findings), type;
        columns symbol, anomaly_type, severity, open, new (of the open ones, first seen by
        this run), resolved (by this run).
    """
    counts: dict[tuple[str, str, str], Counter[str]] = {}
    for a in anomalies:
        key = (a.symbol or "", a.anomaly_type, a.severity)
        bucket = counts.setdefault(key, Counter())
        if a.status == "open":
            bucket["open"] += 1
            bucket["new"] += a.first_seen_at >= seen_at
        elif a.resolved_at is not None and a.resolved_at >= seen_at:
            bucket["resolved"] += 1
    order = sorted(counts, key=lambda k: (k[2] != "error", k[0], k[1]))
    return [
        {
            "symbol": symbol,
            "anomaly_type": kind,
            "severity": severity,
            "open": counts[(symbol, kind, severity)]["open"],
            "new": counts[(symbol, kind, severity)]["new"],
            "resolved": counts[(symbol, kind, severity)]["resolved"],
        }
        for symbol, kind, severity in order
    ]


def quality_markdown(
    report: QualityReport,
    anomalies: Sequence[StoredAnomaly],
    limit: int = WORST_FINDINGS,
    html_report: str | None = None,
) -> str:
    """The worst-findings artifact: the run's counts, then the ``limit`` worst open anomalies.

    Worst: error before warn, then seen most often, then oldest. ``anomalies``: any order;
    only the open ones are listed. ``html_report``: a line about the HTML quality report
    (its location, or why it was not written), shown under the counts.
    """
    anomalies = [a for a in anomalies if a.status == "open"]
    lines = [
        f"**{report.verdict}**: {report.summary()}",
        "",
        f"New: {report.inserted} · resolved: {report.resolved} · reopened: {report.reopened} · "
        f"open: {report.open_errors} error, {report.open_warnings} warn",
        "",
    ]
    if html_report:
        lines += [html_report, ""]
    if report.broken:
        lines += ["Could not run:", *(f"- {line}" for line in report.broken), ""]
    worst = sorted(
        anomalies, key=lambda a: (a.severity != "error", -a.times_seen, a.first_seen_at)
    )[:limit]
    if not worst:
        lines.append("No open anomaly.")
        return "\n".join(lines)
    lines += [
        f"Worst {len(worst)} of {len(anomalies)} open:",
        "",
        "| severity | check | series | from (UTC) | seen | reason |",
        "|---|---|---|---|---|---|",
    ]
    for a in worst:
        series = f"{a.symbol}/{a.timeframe}" if a.symbol else "(all)"
        start = a.ts_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if a.ts_start else ""
        reason = str(a.details.get("failure_reason") or a.anomaly_type).replace("|", "/")
        lines.append(
            f"| {a.severity} | {a.check_name} | {series} | {start} | {a.times_seen} | {reason} |"
        )
    return "\n".join(lines)


def health_markdown(snapshot: HealthSnapshot) -> str:
    """The health artifact: the snapshot's line and one row per problem (alerted ones marked)."""
    lines = [f"**{snapshot.summary()}**", ""]
    if not snapshot.problems:
        return "\n".join(lines).rstrip()
    alerted = {p.key for p in snapshot.alerted}
    lines += ["| severity | problem | series | alerted now | message |", "|---|---|---|---|---|"]
    for p in snapshot.problems:
        message = p.message.replace("|", "/")
        flag = "yes" if p.key in alerted else ""
        lines.append(f"| {p.severity} | {p.kind} | {p.subject} | {flag} | {message} |")
    return "\n".join(lines)
