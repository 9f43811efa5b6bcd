"""Fault suite, SQL side (issue 16): an extreme value in one series never stops the checks of
another, and hostile dbt vars never reach the SQL as code.

One database, one ``mdq check``-equivalent run (:func:`mdq.quality.run_quality_checks`) per
case: a normal series with a known bad tick next to a series whose prices and volume are
1e308 (the fault that stopped every price check with ``value out of range: overflow``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import psycopg
import pytest

from mdq.db import Database, connect
from mdq.db.calendars import refresh_calendars
from mdq.db.migrate import apply_migrations
from mdq.dbt_runner import run_dbt
from mdq.quality import run_quality_checks
from tests.support import insert_candles

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

#: a bad tick at half the price that reverts the next day: one error-severity outlier
BAD_TICK = """
NORM,stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
NORM,stock,1d,2024-06-07T04:00:00Z,120.10,121.20,119.60,120.40,4200000
NORM,stock,1d,2024-06-10T04:00:00Z,120.50,121.30,60.20,60.90,4300000
NORM,stock,1d,2024-06-11T04:00:00Z,120.90,121.50,120.60,121.20,4100000
NORM,stock,1d,2024-06-12T04:00:00Z,121.20,121.90,120.80,121.50,3900000
"""

#: prices and volume at the edge of double precision, next to ordinary and tiny ones
EXTREME = """
HUGE,stock,1d,2024-06-06T04:00:00Z,119.00,121.00,118.50,120.10,4000000
HUGE,stock,1d,2024-06-07T04:00:00Z,1e308,1e308,1e308,1e308,1e308
HUGE,stock,1d,2024-06-10T04:00:00Z,1e-308,1e308,1e-308,1e308,1e308
HUGE,stock,1d,2024-06-11T04:00:00Z,120.90,121.50,120.60,121.20,1e308
HUGE,stock,1d,2024-06-12T04:00:00Z,121.20,121.90,120.80,121.50,3900000
"""

AS_OF = datetime(2024, 6, 13, tzinfo=UTC)


@pytest.fixture(scope="module")
def loaded(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database, autocommit=True) as conn:
        apply_migrations(conn)
        insert_candles(conn, BAD_TICK)
        insert_candles(conn, EXTREME)
        # a split on the extreme series: fct_candles multiplies its volume by the factor
        conn.execute(
            "insert into corporate_actions (symbol, action_type, effective_date, ratio, source)"
            " values ('HUGE', 'split', '2024-06-11', 2, 'test')"
        )
        refresh_calendars(conn, today=date(2024, 6, 14))
    return database


def _open_anomalies(conn: psycopg.Connection) -> list[tuple[str, str, str, str]]:
    return conn.execute(
        "select symbol, anomaly_type, severity, to_char(ts_start at time zone 'UTC', 'YYYY-MM-DD')"
        " from data_anomalies where status = 'open' and symbol is not null"
        " order by symbol, anomaly_type, ts_start"
    ).fetchall()


def test_an_extreme_value_does_not_stop_the_checks_of_another_symbol(loaded: Database) -> None:
    report = run_quality_checks(loaded, "faults", as_of=AS_OF, use_prefect=False, record=True)
    assert report.verdict != "broken", report.summary()
    with connect(loaded, autocommit=True) as conn:
        found = _open_anomalies(conn)
    assert found == [
        ("HUGE", "invalid_price", "error", "2024-06-07"),
        ("HUGE", "invalid_price", "error", "2024-06-10"),
        ("HUGE", "invalid_price", "error", "2024-06-11"),
        ("HUGE", "split_not_observed", "warn", "2024-06-11"),
        ("NORM", "outlier", "error", "2024-06-10"),
    ]


def test_a_hostile_string_var_is_a_literal_not_code(loaded: Database) -> None:
    """String vars with quotes in them: each stays one literal. An asset class matches no
    candle (the build runs, no split suspect); a look-back that is not an interval fails its
    cast (the model errors) instead of running a second statement."""
    hostile = {
        "as_of": AS_OF.isoformat(),
        "mdq_split_asset_classes": ["stock') or true or ('x", "x'; drop table market_data; --"],
    }
    # models, then the split check (a failing check in one `dbt build` would skip the price
    # models: HUGE's invalid prices are error rows of ohlc_integrity)
    built = run_dbt(
        loaded,
        "faults_hostile",
        "build",
        dbt_vars=hostile,
        extra=["--exclude-resource-type", "test"],
    )
    assert built.success is True
    checked = run_dbt(
        loaded,
        "faults_hostile",
        "test",
        dbt_vars=hostile,
        extra=["--select", "split_suspects_stg_market__candles"],
    )
    assert checked.success is True
    with connect(loaded, autocommit=True) as conn:
        suspects = conn.execute(
            "select anomaly_type, symbol"
            " from faults_hostile_audit.split_suspects_stg_market__candles"
        ).fetchall()
    # only the known split the prices do not show: no class matched, no suspect was judged
    assert suspects == [("split_not_observed", "HUGE")]
    ran = run_dbt(
        loaded,
        "faults_hostile",
        "run",
        dbt_vars={
            "as_of": AS_OF.isoformat(),
            "mdq_forming_grace": {"*:*": "4 days'::interval; drop table market_data; --"},
        },
        extra=["--select", "fct_candles"],
    )
    assert ran.success is False
    messages = " ".join(str(r.message) for r in ran.result.results)
    assert "invalid input syntax for type interval" in messages
    with connect(loaded, autocommit=True) as conn:
        assert conn.execute("select count(*) from market_data").fetchone() == (10,)


@pytest.mark.parametrize(
    ("dbt_vars", "message"),
    [
        pytest.param(
            {"mdq_split_max_term": "20); drop table market_data; --"},
            "var 'mdq_split_max_term' must be an integer from 2 to 100,"
            " got 20); drop table market_data; --",
            id="split-max-term-text",
        ),
        pytest.param(
            {"mdq_split_asset_classes": "stock, etf"},
            "var 'mdq_split_asset_classes' must be a non-empty list, got stock, etf",
            id="split-classes-string",
        ),
        pytest.param(
            {"price_checks_scale_blocks": {"1d": "year', ts) --"}},
            "var 'price_checks_scale_blocks' has 'year', ts) --'; expected one of day, week",
            id="scale-unit",
        ),
        pytest.param(
            {"price_checks_lookback_candles": "50 * 0) --"},
            "var 'price_checks_lookback_candles' must be a number",
            id="lookback-candles",
        ),
    ],
)
def test_a_hostile_var_stops_compilation_naming_it(
    loaded: Database, dbt_vars: dict[str, object], message: str
) -> None:
    result = run_dbt(
        loaded,
        "faults_hostile",
        "compile",
        dbt_vars={"as_of": AS_OF.isoformat(), **dbt_vars},
        extra=["--select", "int_candle_features_computed int_candle_splits_matched"],
    )
    assert result.success is False
    assert message in str(result.exception)
