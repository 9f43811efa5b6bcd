"""market_data's monthly partitions (migration 110): created on demand by the loader.

``market_data`` is range-partitioned by ``ts``, one partition per UTC calendar month
(``market_data_pYYYY_MM``), plus ``market_data_default`` for a candle of a month that has no
partition yet. The loader calls :func:`ensure_partitions` with a batch's timestamps before it
writes them, so the default partition stays empty and a check over recent candles reads only
recent partitions. Writers that do not call it (a team's own ingest, ``mdq dedupe`` restores,
tests) still store every row: it lands in the default partition until
:func:`split_default_partition` (or the next loader call for that month) moves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionChange:
    """One month that had no partition when asked for.

    Attributes:
        month_start: first instant of the UTC month.
        partition_name: ``market_data_pYYYY_MM``.
        action: ``created`` (now attached, rows of that month moved out of the default
            partition) or ``deferred`` (the default partition's lock was not granted within
            2 s, e.g. a long check was reading it: the month's candles are stored in the
            default partition until a later call creates it).
    """

    month_start: datetime
    partition_name: str
    action: str


def month_starts(timestamps: pd.Series | Iterable[datetime]) -> list[datetime]:
    """The distinct UTC months of ``timestamps``, as their first instants, sorted.

    Args:
        timestamps: UTC-aware instants (a pandas Series of ``datetime64[ns, UTC]`` or any
            iterable of aware datetimes).

    Returns:
        ``datetime(year, month, 1, tzinfo=UTC)`` per month present.

    Raises:
        ValueError: a naive datetime (its month would depend on a guess of its zone).
    """
    if isinstance(timestamps, pd.Series):
        if timestamps.empty:
            return []
        if timestamps.dt.tz is None:
            raise ValueError("naive timestamps: cannot tell their UTC month")
        utc = timestamps.dt.tz_convert(UTC)
        keys = sorted({int(k) for k in (utc.dt.year * 12 + utc.dt.month - 1).unique()})
    else:
        found = set()
        for ts in timestamps:
            if ts.tzinfo is None:
                raise ValueError(f"naive timestamp {ts!r}: cannot tell its UTC month")
            u = ts.astimezone(UTC)
            found.add(u.year * 12 + u.month - 1)
        keys = sorted(found)
    return [datetime(k // 12, k % 12 + 1, 1, tzinfo=UTC) for k in keys]


def ensure_partitions(
    conn: psycopg.Connection, timestamps: pd.Series | Iterable[datetime]
) -> list[PartitionChange]:
    """Create the monthly partitions that candles at ``timestamps`` will be stored in.

    Calls ``mdq_ensure_market_data_partitions`` (migration 110) with the distinct months; a
    month that already has its partition costs one catalog look-up. Call it outside a
    transaction (autocommit) or in a short one of its own: creating a partition holds a
    ``share update exclusive`` lock on market_data and an ``access exclusive`` lock on the
    default partition until the transaction ends.

    Args:
        conn: an open connection to a migrated database.
        timestamps: the candles' ``ts`` (UTC-aware).

    Returns:
        One :class:`PartitionChange` per month that had no partition (empty: all existed).
        A ``deferred`` month is also logged as a warning: its candles are stored, in the
        default partition.

    Raises:
        ValueError: a naive timestamp.
        psycopg.Error: the database refused (e.g. the role does not own market_data).
    """
    months = month_starts(timestamps)
    if not months:
        return []
    rows = conn.execute(
        "select month_start, partition_name, action"
        " from mdq_ensure_market_data_partitions(%s::timestamptz[])",
        (months,),
    ).fetchall()
    changes = [PartitionChange(m, str(n), str(a)) for m, n, a in rows]
    for change in changes:
        if change.action == "deferred":
            log.warning(
                "partition %s not created (market_data_default was busy); its candles are "
                "stored in market_data_default until a later load or "
                "`select * from mdq_split_market_data_default()` moves them",
                change.partition_name,
            )
    return changes


def split_default_partition(conn: psycopg.Connection) -> list[PartitionChange]:
    """Give every month found in ``market_data_default`` its own partition (maintenance).

    Returns:
        As :func:`ensure_partitions`.
    """
    rows = conn.execute(
        "select month_start, partition_name, action from mdq_split_market_data_default()"
    ).fetchall()
    return [PartitionChange(m, str(n), str(a)) for m, n, a in rows]
