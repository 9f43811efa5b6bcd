"""The write path's bulk skip (mdq.db.backfill.write_candles): buckets of stored candles equal
to the incoming ones are skipped without a write; only differing buckets are merged, and the
counts still add up (inserted + updated + unchanged = candles)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from mdq.backfill_core import BackfillOptions, SeriesRequest, load_series
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.notify import RecordingNotifier
from mdq.providers.base import FetchResult
from mdq.providers.synthetic import SyntheticProvider
from mdq.windows import Window

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, tzinfo=UTC)
OPTIONS = BackfillOptions(lease_seconds=60, chunk_rows=100_000)


class OneCorrected:
    """The synthetic provider with the close of the candle at ``at`` moved up 0.1 %."""

    name = "synthetic"

    def __init__(self, inner: SyntheticProvider, at: datetime) -> None:
        self.inner = inner
        self.at = at

    def list_series(self):  # noqa: ANN201 - test double
        return self.inner.list_series()

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        got = self.inner.fetch_candles(symbol, timeframe, window)
        c = got.candles.copy()
        hit = c["ts"] == self.at
        c.loc[hit, "close"] = c.loc[hit, "close"] * 1.001
        c.loc[hit, "high"] = c.loc[hit, ["high", "close"]].max(axis=1)
        return FetchResult(c, got.rejected, got.fetched_at, got.source, got.source_confirms_empty)


@pytest.fixture(scope="module")
def write_db(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    return database


def _xmins(database: Database, symbol: str) -> dict[datetime, str]:
    with connect(database, autocommit=True) as conn:
        rows = conn.execute(
            "select ts, xmin::text from market_data where symbol = %s", (symbol,)
        ).fetchall()
    return dict(rows)


def test_appended_day_inserts_only_it_and_a_correction_updates_one_candle(
    write_db: Database,
) -> None:
    provider = SyntheticProvider(["WR1"], ["1m"], seed=3, now=datetime(2030, 1, 1, tzinfo=UTC))

    def load(p: object, days: int):  # noqa: ANN202 - test helper
        window = Window(START, START + timedelta(days=days))
        result = load_series(
            write_db,
            p,  # type: ignore[arg-type]
            SeriesRequest("WR1", "1m", window),
            OPTIONS,
            notifier=RecordingNotifier(),
        )
        assert result.status == "completed", result.error
        return result

    first = load(provider, 2)
    assert (first.inserted, first.updated, first.unchanged) == (2880, 0, 0)
    before = _xmins(write_db, "WR1")

    more = load(provider, 3)  # two unchanged days skipped in bulk, the third inserted
    assert (more.inserted, more.updated, more.unchanged) == (1440, 0, 2880)
    after = _xmins(write_db, "WR1")
    assert {ts: after[ts] for ts in before} == before  # no stored candle rewritten
    assert len(after) == 4320

    at = START + timedelta(days=1, hours=5, minutes=7)
    fixed = load(OneCorrected(provider, at), 3)
    assert (fixed.inserted, fixed.updated, fixed.unchanged) == (0, 1, 4319)
    rewritten = {ts for ts, x in _xmins(write_db, "WR1").items() if after[ts] != x}
    assert rewritten == {at}
    with connect(write_db, autocommit=True) as conn:
        revisions = conn.execute(
            "select ts, execution_id from candle_revisions where symbol = 'WR1'"
        ).fetchall()
    assert revisions == [(at, fixed.execution_id)]

    again = load(OneCorrected(provider, at), 3)  # the corrected data rerun: nothing written
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4320)
