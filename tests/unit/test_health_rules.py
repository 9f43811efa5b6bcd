"""Health decisions (issue 12): only problems at or above the minimum severity page, warn
outliers ("likely real" moves) never do, and split suspects are their own kind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdq.health_rules import SeriesHealth, find_problems, pages, plan_alerts

LAST = datetime(2013, 3, 1, 5, tzinfo=UTC)


def test_split_suspects_are_their_own_kind_and_warn_problems_never_page() -> None:
    series = [
        # AAPL: 2 split suspects (warn) and a likely real move (a warn outlier)
        SeriesHealth("AAPL", "1d", LAST, 0, 0, 1, 0, outlier_errors=0, open_splits=2),
        # EURUSD: a gap of error severity and one of warn severity
        SeriesHealth("EURUSD", "1h", LAST, 0, 2, 0, 1, gap_errors=1),
        # IBM: everything acknowledged or muted: no problem at all
        SeriesHealth("IBM", "1d", LAST, 0, 0, 0, 0, acknowledged=1, muted=2),
    ]
    problems = find_problems(series, [])
    assert [(p.kind, p.subject, p.severity) for p in problems] == [
        ("open_gaps", "EURUSD/1h", "error"),
        ("open_outliers", "AAPL/1d", "warn"),
        ("split_suspects", "AAPL/1d", "warn"),
    ]
    assert [pages(p) for p in problems] == [True, False, False]
    assert [pages(p, "warn") for p in problems] == [True, True, True]

    plan = plan_alerts(problems, {"open_outliers:AAPL/1d"}, "error")
    assert [p.key for p in plan.start] == ["open_gaps:EURUSD/1h"]
    assert (plan.ongoing, plan.ended) == ((), ("open_outliers:AAPL/1d",))
    every = plan_alerts(problems, set(), "warn")
    assert len(every.start) == 3
    with pytest.raises(ValueError, match="min_severity 'info' not supported"):
        plan_alerts(problems, set(), "info")


@pytest.mark.parametrize(
    ("stale_errors", "expected"),
    [pytest.param(0, "warn", id="stale-warn"), pytest.param(1, "error", id="stale-error")],
)
def test_a_stale_problem_takes_the_severity_of_its_finding(
    stale_errors: int, expected: str
) -> None:
    series = [SeriesHealth("FB", "1d", LAST, 1, 0, 0, 0, stale_errors=stale_errors)]
    (problem,) = find_problems(series, [])
    assert (problem.kind, problem.severity) == ("stale", expected)
