"""A repeat check re-uses dbt's models when nothing they are built from changed (issue 9, fast
repeat runs; :mod:`mdq.dbt_reuse`, migration 150).

Two databases get the same data and the same changes, in order: ``reuse`` runs ``mdq check``
as shipped (the models step is skipped when the models are as a build would leave them),
``never`` with ``MDQ_REUSE_MODELS=0`` (every run builds every model). After each step the
recorded anomalies of both are equal, and the ``reuse`` run built its models exactly when an
input of them changed: a new candle, an instrument edit, a corporate action, a ``--vars``
change, a series label, ``--full``, a what-if ``as_of``, a new day's sessions, a dbt command
run by hand.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.dbt_reuse import REUSE_ENV
from mdq.dbt_runner import dbt_paths, run_dbt
from mdq.quality import QualityReport, run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

SCHEMA = "mdq_reuse"
T0 = datetime(2026, 9, 1, 12, tzinfo=UTC)
#: AAPL trades on the old basis until this session, then at half the price (a 2:1 split that
#: corporate_actions does not know yet: a split_suspect)
SPLIT_DATE = date(2024, 5, 20)


def _candles() -> str:
    rng = random.Random(9)
    lines = []
    day = date(2024, 4, 1)
    price = 100.0
    while day <= date(2024, 5, 31):
        if day.weekday() < 5 and day != date(2024, 5, 27):  # XNYS: Memorial Day
            price *= 1 + rng.uniform(-0.01, 0.01)
            level = price / 2 if day >= SPLIT_DATE else price
            lines.append(
                f"AAPL,stock,1d,{day.isoformat()}T04:00:00Z,{level:.4f},{level * 1.01:.4f},"
                f"{level * 0.99:.4f},{level * 1.002:.4f},{rng.randint(900, 1100)}"
            )
        day += timedelta(days=1)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    price = 60000.0
    for hour in range(240):
        if 100 <= hour < 104:  # a hole
            continue
        price *= 1 + rng.uniform(-0.003, 0.003)
        lines.append(_btc(at + timedelta(hours=hour), price, rng.uniform(1, 2)))
    for session in ("2024-05-13", "2024-05-14", "2024-05-15"):
        for slot in range(7):  # XNYS 1h on the session grid: 09:30, 10:30, ... (13:30Z)
            ts = datetime.fromisoformat(f"{session}T13:30:00+00:00") + timedelta(hours=slot)
            lines.append(
                f"MSFT,stock,1h,{ts.isoformat()},400,401,399,400.5,{rng.randint(100, 200)}"
            )
    return "\n".join(lines) + "\n"


def _btc(ts: datetime, price: float, volume: float) -> str:
    return (
        f"BTCUSD,crypto,1h,{ts.isoformat()},{price:.2f},{price * 1.001:.2f},"
        f"{price * 0.999:.2f},{price:.2f},{volume:.3f}"
    )


@pytest.fixture(scope="module")
def dbs(make_database: Callable[[], Database]) -> dict[str, Database]:
    """``reuse`` and ``never``: the same data, migrated."""
    made = {"reuse": make_database(), "never": make_database()}
    for db in made.values():
        with connect(db, autocommit=True) as conn:
            apply_migrations(conn)
            insert_candles(conn, _candles())
            conn.execute(
                "insert into instruments (symbol, asset_class, exchange, calendar)"
                " values ('AAPL', 'stock', 'XNYS', 'XNYS'), ('MSFT', 'stock', 'XNYS', 'XNYS')"
            )
    return made


@contextmanager
def _reuse_setting(value: str) -> Iterator[None]:
    saved = os.environ.get(REUSE_ENV)
    os.environ[REUSE_ENV] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(REUSE_ENV, None)
        else:
            os.environ[REUSE_ENV] = saved


def last_build(db: Database) -> Any:
    """mdq's record of its last build of every model in SCHEMA (None: none recorded)."""
    with connect(db) as conn:
        row = conn.execute(
            "select built_at, changes_xmin from dbt_model_builds where dbt_schema = %s",
            (SCHEMA,),
        ).fetchone()
    return row


def models_step_of_results() -> str:
    """``skipped`` or ``built``: what the last run's models step did, from the run results
    mdq keeps (``run_results_build.json``: dbt's, or mdq's note of a skipped step)."""
    results = json.loads((dbt_paths().target_path / "run_results_build.json").read_text())
    if "mdq_models_step" in results["metadata"]:
        assert results["results"] == []
        return "skipped"
    models = [r for r in results["results"] if r["unique_id"].startswith("model.")]
    assert models and all(r["status"] == "success" for r in models), results["results"]
    return "built"


#: what the models step of the last check() did, per database name
STEPS: dict[str, str] = {}


def check(db: Database, seen_at: datetime, *, reuse: bool = True, **kwargs: Any) -> QualityReport:
    """One live check (``mdq check``); notes what its models step did in STEPS: a skipped step
    leaves mdq's record of the last build as it was (a models step deletes it when it starts,
    the on-run-start hook, and a successful one writes a new one)."""
    before = last_build(db)
    with _reuse_setting("1" if reuse else "0"):
        report = run_quality_checks(db, SCHEMA, use_prefect=False, seen_at=seen_at, **kwargs)
    assert report.verdict != "broken", report.broken
    STEPS[db.dbname] = "skipped" if before is not None and last_build(db) == before else "built"
    return report


def models_step(db: Database) -> str:
    return STEPS[db.dbname]


def both(dbs: dict[str, Database], seen_at: datetime, **kwargs: Any) -> str:
    """Run the never-skipping check, then the re-using one; returns the latter's models step
    after asserting both recorded the same anomalies."""
    check(dbs["never"], seen_at, reuse=False, **kwargs)
    assert models_step(dbs["never"]) == "built"
    assert last_build(dbs["never"]) is None
    check(dbs["reuse"], seen_at, **kwargs)
    step = models_step(dbs["reuse"])
    assert anomalies(dbs["reuse"]) == anomalies(dbs["never"])
    return step


def anomalies(db: Database) -> list[tuple[Any, ...]]:
    """Every recorded anomaly, without the run's own times (a stale series' ts_end is now)."""
    with connect(db) as conn:
        return conn.execute(
            """
            select
                fingerprint, check_name, anomaly_type, symbol, timeframe, ts_start,
                case when check_name <> 'candle_staleness' then ts_end end, severity, status
            from data_anomalies
            order by fingerprint
            """
        ).fetchall()


def change(dbs: dict[str, Database], statement: str, params: tuple[Any, ...] = ()) -> None:
    for db in dbs.values():
        with connect(db, autocommit=True) as conn:
            conn.execute(statement, params)


def open_checks(db: Database) -> set[tuple[str, str]]:
    with connect(db) as conn:
        rows = conn.execute(
            "select check_name, symbol from data_anomalies where status = 'open'"
        ).fetchall()
    return {(str(name), str(symbol)) for name, symbol in rows}


def test_the_first_run_builds_and_a_repeat_reuses_the_models(dbs: dict[str, Database]) -> None:
    assert both(dbs, T0) == "built"
    assert models_step_of_results() == "built"
    assert ("split_suspects", "AAPL") in open_checks(dbs["reuse"])
    with connect(dbs["reuse"]) as conn:
        (sources,) = conn.execute(
            "select sources from dbt_model_builds where dbt_schema = %s", (SCHEMA,)
        ).fetchone() or (None,)
    # the sources upstream of a table or incremental model (check_scopes: per-run rows)
    assert set(sources) >= {"public.market_data", "public.instruments", "public.corporate_actions"}
    assert "public.check_scopes" not in sources

    check(dbs["reuse"], T0 + timedelta(hours=1))
    assert models_step(dbs["reuse"]) == "skipped"
    assert models_step_of_results() == "skipped"  # mdq's note in place of dbt's results
    check(dbs["reuse"], T0 + timedelta(hours=2))
    assert models_step(dbs["reuse"]) == "skipped"
    # the checks ran all the same: staleness judged again, nothing resolved
    assert ("candle_staleness", "BTCUSD") in open_checks(dbs["reuse"])


def test_a_new_candle_builds_the_models(dbs: dict[str, Database]) -> None:
    last = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(hours=240)
    with connect(dbs["reuse"]) as conn:
        (close,) = conn.execute(
            "select close from market_data where symbol = 'BTCUSD' order by ts desc limit 1"
        ).fetchone() or (0,)
    for db in dbs.values():
        with connect(db, autocommit=True) as conn:
            # a bad print: 30 % above the last close, then back
            insert_candles(
                conn,
                _btc(last, float(close) * 1.3, 1.5)
                + "\n"
                + _btc(last + timedelta(hours=1), float(close), 1.5),
            )
    assert both(dbs, T0 + timedelta(days=1)) == "built"
    assert ("price_outliers", "BTCUSD") in open_checks(dbs["reuse"])


def test_an_instrument_edit_builds_the_models(dbs: dict[str, Database]) -> None:
    change(dbs, "update instruments set quote_currency = 'USD' where symbol = 'AAPL'")
    assert both(dbs, T0 + timedelta(days=2)) == "built"


def test_a_corporate_action_builds_the_models_and_changes_the_findings(
    dbs: dict[str, Database],
) -> None:
    assert splits_matched(dbs["reuse"]) == []
    change(
        dbs,
        "insert into corporate_actions (symbol, action_type, effective_date, ratio, source)"
        " values ('AAPL', 'split', %s, 2, 'test')",
        (SPLIT_DATE,),
    )
    assert both(dbs, T0 + timedelta(days=3)) == "built"
    # the table model matched the known split to the step in the prices
    assert splits_matched(dbs["reuse"]) == [("AAPL", SPLIT_DATE, "matched")]
    assert splits_matched(dbs["never"]) == splits_matched(dbs["reuse"])


def splits_matched(db: Database) -> list[tuple[Any, ...]]:
    with connect(db) as conn:
        return conn.execute(
            sql.SQL("select symbol, effective_date, match_status from {}").format(
                sql.Identifier(SCHEMA, "int_candle_splits_matched")
            )
        ).fetchall()


def test_a_label_builds_the_models(dbs: dict[str, Database]) -> None:
    change(
        dbs,
        "insert into series_labels (symbol, timeframe, intraday_grid, decided_by)"
        " values ('MSFT', '1h', 'clock', 'mapping')",
    )
    assert both(dbs, T0 + timedelta(days=4)) == "built"


def test_changed_vars_build_the_models_and_the_same_vars_reuse_them(
    dbs: dict[str, Database],
) -> None:
    dbt_vars = {"mdq_outlier_min_move": {"*:*": 0.05}}
    assert both(dbs, T0 + timedelta(days=5), dbt_vars=dbt_vars) == "built"
    check(dbs["reuse"], T0 + timedelta(days=5, hours=1), dbt_vars=dbt_vars)
    assert models_step(dbs["reuse"]) == "skipped"
    check(dbs["reuse"], T0 + timedelta(days=5, hours=2))
    assert models_step(dbs["reuse"]) == "built"  # the project's vars again


def test_full_builds_the_models_and_the_next_run_reuses_them(dbs: dict[str, Database]) -> None:
    assert both(dbs, T0 + timedelta(days=6), full=True) == "built"
    check(dbs["reuse"], T0 + timedelta(days=6, hours=1))
    assert models_step(dbs["reuse"]) == "skipped"


def test_a_what_if_run_and_a_new_day_build_the_models(dbs: dict[str, Database]) -> None:
    # a what-if compiles its views with its as_of: the live run after it builds again
    check(dbs["reuse"], T0 + timedelta(days=7), as_of=datetime(2024, 5, 10, tzinfo=UTC))
    assert models_step(dbs["reuse"]) == "built"
    check(dbs["reuse"], T0 + timedelta(days=7, hours=1))
    assert models_step(dbs["reuse"]) == "built"
    check(dbs["reuse"], T0 + timedelta(days=7, hours=2))
    assert models_step(dbs["reuse"]) == "skipped"
    # 40 days later: trading_sessions gets the new days (mdq.quality.refresh_sessions)
    assert both(dbs, T0 + timedelta(days=47)) == "built"


def test_a_dbt_command_run_by_hand_makes_the_next_check_build(dbs: dict[str, Database]) -> None:
    from mdq.dbt_reuse import why_build

    result = run_dbt(
        dbs["reuse"],
        SCHEMA,
        "run",
        dbt_vars={"mdq_outlier_z": {"*:*": 3.0}},
        extra=["--select", "int_candle_splits_matched"],
    )
    assert result.success
    reason, _ = why_build(dbs["reuse"], SCHEMA, "any")
    assert reason == "no complete build by mdq recorded"
    check(dbs["reuse"], T0 + timedelta(days=48))
    assert models_step(dbs["reuse"]) == "built"


def test_a_missing_relation_or_an_unwatched_source_means_build(dbs: dict[str, Database]) -> None:
    from mdq.dbt_reuse import why_build

    db = dbs["reuse"]
    with connect(db) as conn:
        (fingerprint,) = conn.execute(
            "select fingerprint from dbt_model_builds where dbt_schema = %s", (SCHEMA,)
        ).fetchone() or ("",)
    assert why_build(db, SCHEMA, fingerprint)[0] is None
    with connect(db, autocommit=True) as conn:
        conn.execute("alter table corporate_actions disable trigger trg_mdq_model_inputs_update")
        try:
            reason = why_build(db, SCHEMA, fingerprint)[0]
        finally:
            conn.execute("alter table corporate_actions enable trigger trg_mdq_model_inputs_update")
        assert reason == "no change log on public.corporate_actions"
        view, moved = sql.Identifier(SCHEMA, "int_candles_scored"), sql.Identifier(SCHEMA, "moved")
        conn.execute(sql.SQL("alter view {} rename to moved").format(view))
        try:
            reason = why_build(db, SCHEMA, fingerprint)[0]
        finally:
            conn.execute(sql.SQL("alter view {} rename to int_candles_scored").format(moved))
        assert reason == f"missing relation {SCHEMA}.int_candles_scored"
    assert why_build(db, SCHEMA, fingerprint)[0] is None
