"""Health decisions as plain functions: what is a problem, and which problems to alert on.

No Prefect, no database. A *problem* is identified by (kind, subject); an alert is sent when a
problem starts a streak (it was not present at the previous health run) and never again while
the streak lasts. When it disappears the streak ends; if it comes back, that is a new streak.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: Default number of consecutive backfill failures that make a symbol a problem (the seed's 3).
FAILURE_THRESHOLD = 3

#: anomaly_type values counted as staleness, gaps and outliers (the checks' contract, README).
STALE_TYPES: tuple[str, ...] = ("stale",)
GAP_TYPES: tuple[str, ...] = ("gap", "venue_outage")
OUTLIER_TYPES: tuple[str, ...] = ("outlier", "wick_outlier", "split_suspect")

#: check_name of the quarantine check (dbt test quarantined_rows): rows a backfill rejected.
QUARANTINE_CHECK = "quarantined_rows"

TProblemKind = Literal[
    "stale", "consecutive_failures", "open_gaps", "open_outliers", "rejected_rows"
]


@dataclass(frozen=True)
class SeriesHealth:
    """One (symbol, timeframe) as health sees it.

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe.
        last_ts: open time of its newest candle (UTC), or None when it has none.
        open_stale: open anomalies of a stale type.
        open_gaps: open anomalies of a gap type.
        open_outliers: open anomalies of an outlier type.
        open_errors: open error-severity anomalies of those types.
        open_rejected_errors: open error-severity findings of the quarantine check (the latest
            backfill stored less than the set share of what it fetched, or nothing).
    """

    symbol: str
    timeframe: str
    last_ts: datetime | None
    open_stale: int
    open_gaps: int
    open_outliers: int
    open_errors: int
    open_rejected_errors: int = 0

    @property
    def subject(self) -> str:
        """``SYMBOL/timeframe``."""
        return f"{self.symbol}/{self.timeframe}"


@dataclass(frozen=True)
class FailureStreak:
    """A row of symbol_failure_tracking.

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe (``*`` for all).
        consecutive_failures: backfill failures since the last success.
        last_error: the last error message.
    """

    symbol: str
    timeframe: str
    consecutive_failures: int
    last_error: str | None


@dataclass(frozen=True)
class Problem:
    """Something wrong right now.

    Attributes:
        kind: ``stale``, ``consecutive_failures``, ``open_gaps`` or ``open_outliers``.
        subject: ``SYMBOL/timeframe``.
        severity: ``error`` or ``warn``.
        message: one human line with the numbers.
    """

    kind: TProblemKind
    subject: str
    severity: Literal["warn", "error"]
    message: str

    @property
    def key(self) -> str:
        """The streak identity, ``<kind>:<subject>``."""
        return f"{self.kind}:{self.subject}"


@dataclass(frozen=True)
class AlertPlan:
    """What to do with the streaks after one health run.

    Attributes:
        start: problems that start a streak: alert now.
        ongoing: problems whose streak continues: no alert.
        ended: keys of streaks whose problem is gone.
    """

    start: tuple[Problem, ...]
    ongoing: tuple[Problem, ...]
    ended: tuple[str, ...]


def find_problems(
    series: Iterable[SeriesHealth],
    failures: Iterable[FailureStreak],
    *,
    failure_threshold: int = FAILURE_THRESHOLD,
) -> list[Problem]:
    """Every current problem, sorted by kind then subject.

    Args:
        series: per (symbol, timeframe) state.
        failures: the failure tracking rows.
        failure_threshold: consecutive failures from which a symbol is a problem (≥ 1).

    Raises:
        ValueError: ``failure_threshold`` < 1.
    """
    if failure_threshold < 1:
        raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
    problems: list[Problem] = []
    for s in series:
        last = s.last_ts.strftime("%Y-%m-%d %H:%M UTC") if s.last_ts else "never"
        severity: Literal["warn", "error"] = "error" if s.open_errors else "warn"
        if s.open_stale:
            problems.append(Problem("stale", s.subject, "error", f"stale: last candle {last}"))
        if s.open_gaps:
            problems.append(
                Problem("open_gaps", s.subject, severity, f"{s.open_gaps} open gap anomaly(ies)")
            )
        if s.open_outliers:
            problems.append(
                Problem(
                    "open_outliers",
                    s.subject,
                    severity,
                    f"{s.open_outliers} open outlier anomaly(ies)",
                )
            )
        if s.open_rejected_errors:
            problems.append(
                Problem(
                    "rejected_rows",
                    s.subject,
                    "error",
                    f"the latest backfill quarantined rows ({s.open_rejected_errors} open error "
                    "finding(s) of quarantined_rows)",
                )
            )
    for f in failures:
        if f.consecutive_failures >= failure_threshold:
            problems.append(
                Problem(
                    "consecutive_failures",
                    f"{f.symbol}/{f.timeframe}",
                    "error",
                    f"{f.consecutive_failures} consecutive backfill failures; last error: "
                    f"{(f.last_error or 'unknown').strip().splitlines()[0][:200]}",
                )
            )
    return sorted(problems, key=lambda p: (p.kind, p.subject))


def plan_alerts(problems: Sequence[Problem], active_keys: Collection[str]) -> AlertPlan:
    """Split current problems into new streaks and ongoing ones; list streaks that ended.

    Args:
        problems: the current problems.
        active_keys: keys of the streaks recorded at the previous run.
    """
    active = set(active_keys)
    current = {p.key for p in problems}
    return AlertPlan(
        start=tuple(p for p in problems if p.key not in active),
        ongoing=tuple(p for p in problems if p.key in active),
        ended=tuple(sorted(active - current)),
    )
