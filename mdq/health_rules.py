"""Health decisions as plain functions: what is a problem, and which problems to alert on.

No Prefect, no database. A *problem* is identified by (kind, subject); an alert is sent when a
problem starts a streak (it was not present at the previous health run) and never again while
the streak lasts. When it disappears the streak ends; if it comes back, that is a new streak.

Only problems at or above the minimum severity (default ``error``) page: warn-level problems —
e.g. "likely real" moves, which the price checks report as warn outliers — are listed in the
snapshot and never alert. Acknowledged and muted anomalies are not problems at all (they are
counted apart). Split suspects are their own kind (``split_suspects``), not outliers.
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
OUTLIER_TYPES: tuple[str, ...] = ("outlier", "wick_outlier")
SPLIT_TYPES: tuple[str, ...] = ("split_suspect", "split_date_mismatch", "split_not_observed")

#: check_name of the quarantine check (dbt test quarantined_rows): rows a backfill rejected.
QUARANTINE_CHECK = "quarantined_rows"

TProblemKind = Literal[
    "stale",
    "consecutive_failures",
    "open_gaps",
    "open_outliers",
    "rejected_rows",
    "split_suspects",
]
TSeverity = Literal["warn", "error"]

#: Severities in increasing order (for a minimum severity).
SEVERITY_RANK: dict[str, int] = {"warn": 1, "error": 2}

#: The default minimum severity of an alert.
DEFAULT_MIN_SEVERITY: TSeverity = "error"


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
        open_errors: open error-severity anomalies of the gap and outlier types.
        open_rejected_errors: open error-severity findings of the quarantine check (the latest
            backfill stored less than the set share of what it fetched, or nothing).
        stale_errors: open error-severity stale anomalies (None: as many as ``open_stale``).
        gap_errors: open error-severity gaps (None: ``open_errors``).
        outlier_errors: open error-severity outliers (None: ``open_errors``).
        open_splits: open anomalies of a split type.
        split_errors: of those, error severity.
        acknowledged: open anomalies of any type that are acknowledged (not counted above).
        muted: open anomalies of any type that a mute rule covers (not counted above).
    """

    symbol: str
    timeframe: str
    last_ts: datetime | None
    open_stale: int
    open_gaps: int
    open_outliers: int
    open_errors: int
    open_rejected_errors: int = 0
    stale_errors: int | None = None
    gap_errors: int | None = None
    outlier_errors: int | None = None
    open_splits: int = 0
    split_errors: int = 0
    acknowledged: int = 0
    muted: int = 0

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
        kind: ``stale``, ``consecutive_failures``, ``open_gaps``, ``open_outliers``,
            ``rejected_rows`` or ``split_suspects``.
        subject: ``SYMBOL/timeframe``.
        severity: ``error`` or ``warn`` (the highest of the anomalies behind it).
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

    def level(errors: int | None, fallback: int) -> TSeverity:
        return "error" if (fallback if errors is None else errors) else "warn"

    for s in series:
        last = s.last_ts.strftime("%Y-%m-%d %H:%M UTC") if s.last_ts else "never"
        if s.open_stale:
            problems.append(
                Problem(
                    "stale",
                    s.subject,
                    level(s.stale_errors, s.open_stale),
                    f"stale: last candle {last}",
                )
            )
        if s.open_gaps:
            problems.append(
                Problem(
                    "open_gaps",
                    s.subject,
                    level(s.gap_errors, s.open_errors),
                    f"{s.open_gaps} open gap anomaly(ies)",
                )
            )
        if s.open_outliers:
            problems.append(
                Problem(
                    "open_outliers",
                    s.subject,
                    level(s.outlier_errors, s.open_errors),
                    f"{s.open_outliers} open outlier anomaly(ies)",
                )
            )
        if s.open_splits:
            problems.append(
                Problem(
                    "split_suspects",
                    s.subject,
                    level(s.split_errors, 0),
                    f"{s.open_splits} unexplained price step(s) at a split ratio; record the "
                    "split (mdq split) or acknowledge it",
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


def pages(problem: Problem, min_severity: str = DEFAULT_MIN_SEVERITY) -> bool:
    """Whether a problem is severe enough to alert.

    Raises:
        ValueError: an unknown ``min_severity`` (expected warn, error).
    """
    if min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity {min_severity!r} not supported; expected warn, error")
    return SEVERITY_RANK[problem.severity] >= SEVERITY_RANK[min_severity]


def plan_alerts(
    problems: Sequence[Problem],
    active_keys: Collection[str],
    min_severity: str = "warn",
) -> AlertPlan:
    """Split current problems into new streaks and ongoing ones; list streaks that ended.

    Only problems at or above ``min_severity`` take part: the others never start a streak
    and end one they had.

    Args:
        problems: the current problems.
        active_keys: keys of the streaks recorded at the previous run.
        min_severity: ``warn`` (every problem) or ``error``.

    Raises:
        ValueError: an unknown ``min_severity``.
    """
    problems = [p for p in problems if pages(p, min_severity)]
    active = set(active_keys)
    current = {p.key for p in problems}
    return AlertPlan(
        start=tuple(p for p in problems if p.key not in active),
        ongoing=tuple(p for p in problems if p.key in active),
        ended=tuple(sorted(active - current)),
    )
