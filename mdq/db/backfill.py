"""All SQL of the backfill: state rows, candle writes, watermarks, empty windows, quarantine,
failure streaks and instruments.

Functions take an open connection and run inside the caller's transaction when there is one
(they open a savepoint where they need atomicity of their own). Values always travel as ``%s``
parameters. Tables: ``backfill_state_persistent``, ``market_data``, ``backfill_watermarks``,
``backfill_confirmed_empty``, ``quarantined_candles``, ``symbol_failure_tracking``,
``instruments`` (migrations 001-003, 010).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg.rows import dict_row

from mdq.exceptions import LeaseLost
from mdq.providers.base import Instrument
from mdq.validation import Rejected
from mdq.windows import Window, should_alert

#: Columns written to market_data, in COPY order.
WRITE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "asset_class",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "is_final",
    "source_ts",
)
_COLUMN_LIST = ", ".join(WRITE_COLUMNS)
ACTIVE = ("pending", "in_progress")


@dataclass(frozen=True)
class BackfillState:
    """One row of ``backfill_state_persistent``.

    Attributes mirror the columns; instants are UTC-aware; the window is ``[start, end)``.
    """

    execution_id: uuid.UUID
    symbol: str
    timeframe: str
    status: str
    asset_class: str | None = None
    provider: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    records_fetched: int = 0
    records_inserted: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    records_quarantined: int = 0
    records_duplicate: int = 0
    records_out_of_window: int = 0
    error_message: str | None = None
    flow_run_id: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


_STATE_FIELDS = tuple(BackfillState.__dataclass_fields__)


def _state(row: dict[str, Any]) -> BackfillState:
    return BackfillState(**{k: row[k] for k in _STATE_FIELDS})


def create_backfill_state(
    conn: psycopg.Connection,
    *,
    symbol: str,
    timeframe: str,
    window: Window | None,
    provider: str,
    lease_seconds: int,
    asset_class: str | None = None,
    flow_run_id: str | None = None,
    start: bool = False,
) -> BackfillState:
    """Claim (symbol, timeframe) for one backfill execution.

    The partial unique index ``uq_backfill_state_one_active`` allows one pending/in_progress
    row per (symbol, timeframe). An active row whose lease has expired (its worker died, or the
    database went away under it) is marked failed, counted in the series' failure streak, and
    taken over. When a live backfill holds the series, the new execution is
    recorded directly as ``skipped`` (a second active row is impossible) and must not run.

    Args:
        conn: open connection.
        symbol: the symbol.
        timeframe: the timeframe.
        window: requested window ``[start, end)``; None for rows that could not be placed in
            time (every row rejected before a window applies).
        provider: provider name.
        lease_seconds: how long the claim holds without renewal.
        asset_class: the asset class, when known.
        flow_run_id: the Prefect flow-run id, when run by Prefect.
        start: claim it directly ``in_progress`` (``started_at`` set), in the same statement,
            instead of ``pending`` (the backfill starts at once: one round trip less).

    Returns:
        The new row: status ``pending`` (``in_progress`` with ``start``) or ``skipped``
        (another one is active; ``error_message`` names it).
    """
    execution_id = uuid.uuid4()
    params = {
        "execution_id": execution_id,
        "symbol": symbol,
        "timeframe": timeframe,
        "asset_class": asset_class,
        "provider": provider,
        "window_start": window.start if window else None,
        "window_end": window.end if window else None,
        "flow_run_id": flow_run_id,
        "lease": lease_seconds,
        "status": "in_progress" if start else "pending",
    }
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            update backfill_state_persistent
            set status = 'failed',
                error_message = 'lease expired at ' || lease_expires_at::text
                    || ' (worker presumed dead); taken over by ' || %(execution_id)s::text,
                completed_at = clock_timestamp(),
                updated_at = clock_timestamp()
            where symbol = %(symbol)s
                and timeframe = %(timeframe)s
                and status in ('pending', 'in_progress')
                and lease_expires_at < clock_timestamp()
            returning error_message
            """,
            params,
        )
        for (reason,) in [(r["error_message"],) for r in cur.fetchall()]:
            # the dead execution is a failure of the series: extend its streak (its one alert
            # is claimed by the next outcome that reaches the threshold)
            track_symbol_failure(
                conn, symbol, timeframe, success=False, threshold=2**31 - 1, error=reason
            )
        cur.execute(
            """
            insert into backfill_state_persistent (
                execution_id, symbol, asset_class, timeframe, status, provider,
                window_start, window_end, flow_run_id, lease_expires_at, started_at
            )
            values (
                %(execution_id)s, %(symbol)s, %(asset_class)s, %(timeframe)s, %(status)s,
                %(provider)s, %(window_start)s, %(window_end)s, %(flow_run_id)s,
                clock_timestamp() + make_interval(secs => %(lease)s),
                case when %(status)s = 'in_progress' then clock_timestamp() end
            )
            on conflict (symbol, timeframe) where status in ('pending', 'in_progress')
            do nothing
            returning *
            """,
            params,
        )
        row = cur.fetchone()
        if row is not None:
            return _state(row)
        cur.execute(
            """
            select execution_id, status, lease_expires_at
            from backfill_state_persistent
            where symbol = %(symbol)s
                and timeframe = %(timeframe)s
                and status in ('pending', 'in_progress')
            """,
            params,
        )
        holder = cur.fetchone()
        reason = (
            f"skipped: backfill {holder['execution_id']} is {holder['status']} for "
            f"{symbol}/{timeframe} (lease until {holder['lease_expires_at'].isoformat()})"
            if holder
            else f"skipped: another backfill was active for {symbol}/{timeframe}"
        )
        cur.execute(
            """
            insert into backfill_state_persistent (
                execution_id, symbol, asset_class, timeframe, status, provider,
                window_start, window_end, flow_run_id, error_message, completed_at
            )
            values (
                %(execution_id)s, %(symbol)s, %(asset_class)s, %(timeframe)s, 'skipped',
                %(provider)s, %(window_start)s, %(window_end)s, %(flow_run_id)s,
                %(reason)s, clock_timestamp()
            )
            returning *
            """,
            {**params, "reason": reason},
        )
        skipped = cur.fetchone()
        assert skipped is not None
        return _state(skipped)


def update_backfill_state(
    conn: psycopg.Connection,
    execution_id: uuid.UUID,
    *,
    status: str | None = None,
    lease_seconds: int | None = None,
    error_message: str | None = None,
    **counts: int,
) -> BackfillState:
    """Update one state row: status, counts, error, lease.

    Moving to ``in_progress`` sets ``started_at``; moving to ``completed``/``failed``/
    ``skipped`` sets ``completed_at`` and clears the lease.

    Args:
        conn: open connection.
        execution_id: the row.
        status: new status, or None to keep it.
        lease_seconds: renew the lease to now + this many seconds.
        error_message: the error, for a failure.
        **counts: ``records_fetched``, ``records_inserted``, ``records_updated``,
            ``records_unchanged``, ``records_quarantined``, ``records_duplicate``,
            ``records_out_of_window`` (totals).

    Returns:
        The updated row.

    Raises:
        KeyError: an unknown count name, or no such execution.
    """
    allowed = {
        "records_fetched",
        "records_inserted",
        "records_updated",
        "records_unchanged",
        "records_quarantined",
        "records_duplicate",
        "records_out_of_window",
    }
    unknown = set(counts) - allowed
    if unknown:
        raise KeyError(f"unknown counts {sorted(unknown)}; expected {sorted(allowed)}")
    sets = [f"{name} = %({name})s" for name in counts]  # names checked against `allowed`
    params: dict[str, Any] = {"execution_id": execution_id, **counts}
    if status is not None:
        sets.append("status = %(status)s")
        params["status"] = status
        if status == "in_progress":
            sets.append("started_at = coalesce(started_at, clock_timestamp())")
        elif status in ("completed", "failed", "skipped"):
            sets.append("completed_at = clock_timestamp()")
            sets.append("lease_expires_at = null")
    if lease_seconds is not None and status not in ("completed", "failed", "skipped"):
        sets.append("lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)")
        params["lease"] = lease_seconds
    if error_message is not None:
        sets.append("error_message = %(error_message)s")
        params["error_message"] = error_message
    sets.append("updated_at = clock_timestamp()")
    query = (
        "update backfill_state_persistent set "
        + ", ".join(sets)
        + " where execution_id = %(execution_id)s returning *"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.encode(), params)
        row = cur.fetchone()
    if row is None:
        raise KeyError(f"no backfill state {execution_id}")
    return _state(row)


def renew_lease(conn: psycopg.Connection, execution_id: uuid.UUID, lease_seconds: int) -> None:
    """Extend an in_progress row's lease; call it in each write transaction.

    Raises:
        LeaseLost: the row is no longer in_progress (another backfill took the series over
            after the lease expired); the caller's transaction must roll back.
    """
    row = conn.execute(
        """
        update backfill_state_persistent
        set lease_expires_at = clock_timestamp() + make_interval(secs => %s),
            updated_at = clock_timestamp()
        where execution_id = %s and status = 'in_progress'
        returning 1
        """,
        (lease_seconds, execution_id),
    ).fetchone()
    if row is None:
        raise LeaseLost(str(execution_id))


def get_active_backfill_states(
    conn: psycopg.Connection, symbol: str | None = None, timeframe: str | None = None
) -> list[BackfillState]:
    """Pending and in_progress rows (optionally of one symbol/timeframe), oldest first.

    Rows whose lease has expired are included; ``lease_expires_at`` tells them apart.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            select *
            from backfill_state_persistent
            where status in ('pending', 'in_progress')
                and (%(symbol)s::text is null or symbol = %(symbol)s)
                and (%(timeframe)s::text is null or timeframe = %(timeframe)s)
            order by created_at
            """,
            {"symbol": symbol, "timeframe": timeframe},
        )
        return [_state(r) for r in cur.fetchall()]


def get_backfill_state(conn: psycopg.Connection, execution_id: uuid.UUID) -> BackfillState | None:
    """One state row by execution id, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from backfill_state_persistent where execution_id = %s", (execution_id,)
        )
        row = cur.fetchone()
    return _state(row) if row else None


# -- candles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteCounts:
    """What one write did to ``market_data``.

    Attributes:
        inserted: new keys.
        updated: existing keys whose values changed (a vendor correction, a candle closing).
        unchanged: existing keys with identical values: not rewritten.
        fast_path: True when the rows went straight in with COPY (no existing row in range).
        xmin: on the fast path, the id of the (sub)transaction that wrote every row (their
            ``xmin``), for the series' fingerprint (:func:`record_file_load`); else None.
    """

    inserted: int
    updated: int
    unchanged: int
    fast_path: bool = False
    xmin: int | None = None


def _csv_bytes(candles: pd.DataFrame, source: str) -> bytes:
    """Encode candles as CSV for COPY (pyarrow's multithreaded writer)."""
    n = len(candles)
    table = pa.table(
        {
            "symbol": pa.array(candles["symbol"].astype(str).to_numpy(), pa.string()),
            "asset_class": pa.array(candles["asset_class"].astype(str).to_numpy(), pa.string()),
            "timeframe": pa.array(candles["timeframe"].astype(str).to_numpy(), pa.string()),
            "ts": pa.array(
                candles["ts"].dt.as_unit("us").astype("int64").to_numpy(), pa.int64()
            ).cast(pa.timestamp("us", tz="UTC")),
            **{
                c: pa.array(candles[c].to_numpy(dtype="float64"), pa.float64())
                for c in ("open", "high", "low", "close", "volume")
            },
            "source": pa.array([source] * n, pa.string()) if n else pa.array([], pa.string()),
            "is_final": pa.array(candles["is_final"].to_numpy(dtype=bool), pa.bool_()),
            "source_ts": _source_ts(candles),
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def _source_ts(candles: pd.DataFrame) -> pa.Array:
    """The vendor's label where it differs from ``ts`` (:mod:`mdq.labels`), else null."""
    if "source_ts" not in candles or len(candles) == 0:
        return pa.nulls(len(candles), pa.timestamp("us", tz="UTC"))
    label = candles["source_ts"].dt.as_unit("us")
    same = (label == candles["ts"].dt.as_unit("us")) | label.isna()
    values = label.astype("int64").to_numpy()
    return pa.array(values, pa.int64(), mask=same.to_numpy()).cast(pa.timestamp("us", tz="UTC"))


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"


def _binary_bytes(candles: pd.DataFrame, source: str) -> bytes | None:
    """Encode candles in COPY's binary format (no text parsing on the server), or None when
    a row's shape differs from the others (a null value; ``source_ts`` set on some rows only):
    then :func:`_csv_bytes` is used.

    Every row of one (symbol, timeframe) batch has the same text fields, so a row is a fixed
    record (numpy structured array): field count, then per column its length and value, in
    :data:`WRITE_COLUMNS` order; ``ts`` in microseconds since 2000-01-01 (PostgreSQL's epoch).
    """
    n = len(candles)
    if n == 0:
        return None
    numbers = ["open", "high", "low", "close", "volume"]
    if candles[numbers].isna().to_numpy().any() or candles["ts"].isna().any():
        return None
    labels = _source_ts(candles)
    nulls = labels.null_count
    if 0 < nulls < n:
        return None
    texts = {c: str(candles[c].iloc[0]).encode() for c in ("symbol", "asset_class", "timeframe")}
    for c in texts:
        if not (candles[c].astype(str) == texts[c].decode()).all():
            return None
    src = source.encode()
    if not src or not all(texts.values()):
        return None
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, width in (
        ("symbol", len(texts["symbol"])),
        ("asset_class", len(texts["asset_class"])),
        ("timeframe", len(texts["timeframe"])),
    ):
        fields += [(f"{name}_len", ">i4"), (name, f"S{width}")]
    fields += [("ts_len", ">i4"), ("ts", ">i8")]
    for c in numbers:
        fields += [(f"{c}_len", ">i4"), (c, ">f8")]
    fields += [("source_len", ">i4"), ("source", f"S{len(src)}")]
    fields += [("is_final_len", ">i4"), ("is_final", "u1"), ("source_ts_len", ">i4")]
    if nulls == 0:
        fields += [("source_ts", ">i8")]
    rows = np.zeros(n, dtype=fields)
    rows["count"] = len(WRITE_COLUMNS)
    for name, value in (*texts.items(), ("source", src)):
        rows[f"{name}_len"] = len(value)
        rows[name] = value
    us = candles["ts"].dt.as_unit("us").astype("int64").to_numpy()
    rows["ts_len"], rows["ts"] = 8, us - _PG_EPOCH_US
    for c in numbers:
        rows[f"{c}_len"], rows[c] = 8, candles[c].to_numpy(dtype="float64")
    rows["is_final_len"], rows["is_final"] = 1, candles["is_final"].to_numpy(dtype=bool)
    if nulls == 0:
        rows["source_ts_len"] = 8
        rows["source_ts"] = labels.cast(pa.int64()).to_numpy(zero_copy_only=False) - _PG_EPOCH_US
    else:
        rows["source_ts_len"] = -1
    return _COPY_SIGNATURE + rows.tobytes() + b"\xff\xff"


def _copy_binary(conn: psycopg.Connection, table: str, payload: bytes) -> None:
    statement = f"copy {table} ({_COLUMN_LIST}) from stdin (format binary)"  # constant names
    with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
        view = memoryview(payload)
        for offset in range(0, len(view), 1 << 20):
            copy.write(view[offset : offset + (1 << 20)])


def _copy_candles(conn: psycopg.Connection, table: str, candles: pd.DataFrame, source: str) -> None:
    """COPY candles into ``table``: binary when the batch allows it, else CSV."""
    binary = _binary_bytes(candles, source)
    if binary is not None:
        _copy_binary(conn, table, binary)
    else:
        _copy(conn, table, _csv_bytes(candles, source))


def _copy(conn: psycopg.Connection, table: str, payload: bytes) -> None:
    statement = f"copy {table} ({_COLUMN_LIST}) from stdin (format csv)"  # constant names only
    with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
        view = memoryview(payload)
        for offset in range(0, len(view), 1 << 20):
            copy.write(view[offset : offset + (1 << 20)])


#: Candles per digest bucket: the write compares stored and incoming candles per bucket of
#: this many timeframe steps (1m: a day; 1h: 60 days) and merges only buckets that differ.
BUCKET_STEPS = 1440

#: Seconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch (binary format).
_PG_EPOCH_US = 946_684_800_000_000

_DIGEST_DTYPE = [
    ("ts", ">i8"),
    ("open", ">f8"),
    ("high", ">f8"),
    ("low", ">f8"),
    ("close", ">f8"),
    ("volume", ">f8"),
    ("is_final", "u1"),
]


@dataclass(frozen=True)
class _Digests:
    """Per-bucket digests of one batch of candles (see :func:`_incoming_digests`)."""

    buckets: Any  # numpy int64: each candle's bucket
    by_bucket: dict[int, tuple[int, str]]  # bucket -> (candles, md5 hex)


def _incoming_digests(candles: pd.DataFrame, bucket_seconds: int) -> _Digests | None:
    """Per-bucket (count, md5) of the candles' stored bytes, computed exactly as
    :data:`_STORED_DIGESTS` computes them in SQL: per candle the binary send format of ts
    (int8 microseconds since 2000-01-01), open, high, low, close, volume (float8) and is_final
    (bool), concatenated in ts order. None when a value is null (then no bucket is skipped)."""
    cols = ["open", "high", "low", "close", "volume"]
    if candles[cols].isna().to_numpy().any() or candles["ts"].isna().any():
        return None
    us_in = candles["ts"].dt.as_unit("us").astype("int64").to_numpy()
    order = np.argsort(us_in, kind="stable")
    us = us_in[order]
    rows = np.empty(len(us), dtype=_DIGEST_DTYPE)
    rows["ts"] = us - _PG_EPOCH_US
    for c in cols:
        rows[c] = candles[c].to_numpy(dtype="float64")[order]
    rows["is_final"] = candles["is_final"].to_numpy(dtype=bool)[order]
    width = bucket_seconds * 1_000_000
    buckets = us // width
    cuts = np.flatnonzero(np.diff(buckets)) + 1
    by_bucket: dict[int, tuple[int, str]] = {}
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
        by_bucket[int(buckets[lo])] = (int(hi - lo), hashlib.md5(rows[lo:hi].tobytes()).hexdigest())
    order_back = us_in // width
    return _Digests(order_back, by_bucket)


_STORED_DIGESTS = """
    select
        floor(extract(epoch from ts) / %(bucket)s)::bigint as bucket,
        count(*) as candles,
        md5(string_agg(
            timestamptz_send(ts) || float8send(open) || float8send(high) || float8send(low)
            || float8send(close) || float8send(volume) || boolsend(is_final),
            ''::bytea order by ts
        )) as digest,
        bool_and(asset_class is not distinct from %(asset_class)s) as same_asset_class
    from market_data
    where symbol = %(symbol)s and timeframe = %(timeframe)s and ts >= %(lo)s and ts <= %(hi)s
    group by 1
"""


def write_candles(
    conn: psycopg.Connection,
    candles: pd.DataFrame,
    *,
    source: str,
    execution_id: uuid.UUID | None = None,
) -> WriteCounts:
    """Write candles of one (symbol, timeframe), set-based and keyed on (symbol, timeframe, ts).

    When no row exists yet in the batch's time range, the rows are COPYed straight into
    ``market_data`` (first load, close to raw keyed-COPY speed). Otherwise the stored candles
    of the range are compared in bulk, per bucket of :data:`BUCKET_STEPS` timeframe steps
    (count and md5 of their exact binary values, one grouped query): buckets whose stored
    candles equal the incoming ones are skipped without writing (an unchanged rerun writes
    nothing and reads each bucket once). Only the candles of buckets that differ are COPYed
    into a temporary table and upserted with ``on conflict (symbol, timeframe, ts) do update
    ... where (...) is distinct from (...)``: an unchanged candle is not rewritten (no dead
    tuple), a changed one is updated, and a final candle is never replaced by a not-final one.
    The previous values of a changed *final* candle (a vendor's correction; not a forming
    candle that closed) go to ``candle_revisions`` with ``execution_id``, in the same
    statement. Runs inside the caller's transaction (a failure aborts it whole), else in its
    own transaction.
    Works on a partitioned ``market_data`` as well (the key includes ``ts``).

    Args:
        conn: open connection.
        candles: unique on ``ts``, one (symbol, timeframe); canonical columns plus
            ``is_final``; ``ts`` UTC-aware.
        source: stored in ``market_data.source``.
        execution_id: the backfill execution, recorded with revisions.

    Returns:
        Inserted, updated and unchanged counts (they add up to ``len(candles)``).
    """
    from mdq.validation import timeframe_seconds

    n = len(candles)
    if n == 0:
        return WriteCounts(0, 0, 0)
    symbol = str(candles["symbol"].iloc[0])
    timeframe = str(candles["timeframe"].iloc[0])
    asset_class = str(candles["asset_class"].iloc[0])
    lo, hi = candles["ts"].min().to_pydatetime(), candles["ts"].max().to_pydatetime()
    bucket_seconds = timeframe_seconds(timeframe) * BUCKET_STEPS
    # inside the caller's transaction no savepoint is needed: a failure aborts it whole
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction() if idle else contextlib.nullcontext():
        stored = conn.execute(
            _STORED_DIGESTS,
            {
                "bucket": bucket_seconds,
                "asset_class": asset_class,
                "symbol": symbol,
                "timeframe": timeframe,
                "lo": lo,
                "hi": hi,
            },
        ).fetchall()
        if not stored:
            try:
                with conn.transaction():
                    _copy_candles(conn, "market_data", candles, source)
                    # every row of one COPY carries the same xmin (the savepoint's id)
                    mark = conn.execute(
                        """
                        select xmin::text::bigint
                        from market_data
                        where symbol = %s and timeframe = %s and ts = %s
                        """,
                        (symbol, timeframe, lo),
                    ).fetchone()
                return WriteCounts(
                    n, 0, 0, fast_path=True, xmin=int(mark[0]) if mark is not None else None
                )
            except psycopg.errors.UniqueViolation:
                pass  # a row appeared meanwhile: fall back to the keyed upsert
        digests = _incoming_digests(candles, bucket_seconds) if stored else None
        if digests is not None:
            same = {
                int(bucket)
                for bucket, count, digest, same_asset_class in stored
                if same_asset_class and digests.by_bucket.get(int(bucket)) == (count, digest)
            }
            if same:
                candles = candles[~np.isin(digests.buckets, list(same))]
                if len(candles) == 0:
                    return WriteCounts(0, 0, n)
        conn.execute(
            """
            create temp table if not exists mdq_incoming_candles (
                symbol text, asset_class text, timeframe text, ts timestamptz,
                open double precision, high double precision, low double precision,
                close double precision, volume double precision, source text,
                is_final boolean, source_ts timestamptz
            ) on commit delete rows
            """
        )
        conn.execute("truncate mdq_incoming_candles")
        _copy_candles(conn, "mdq_incoming_candles", candles, source)
        conn.execute(
            """
            insert into candle_revisions (
                symbol, asset_class, timeframe, ts, open, high, low, close, volume, is_final,
                source, source_ts, new_open, new_high, new_low, new_close, new_volume,
                execution_id
            )
            select
                md.symbol,
                md.asset_class,
                md.timeframe,
                md.ts,
                md.open,
                md.high,
                md.low,
                md.close,
                md.volume,
                md.is_final,
                md.source,
                md.source_ts,
                incoming.open,
                incoming.high,
                incoming.low,
                incoming.close,
                incoming.volume,
                %s
            from mdq_incoming_candles as incoming
            inner join market_data as md
                on md.symbol = incoming.symbol
                and md.timeframe = incoming.timeframe
                and md.ts = incoming.ts
            where md.is_final
                and incoming.is_final
                and (md.open, md.high, md.low, md.close, md.volume)
                is distinct from (
                    incoming.open, incoming.high, incoming.low, incoming.close,
                    incoming.volume
                )
            """,
            (execution_id,),
        )
        # inserted = incoming keys not stored before the statement (its snapshot); RETURNING
        # xmax cannot tell them apart on a partitioned market_data (migration 110): PostgreSQL
        # refuses system columns in an ON CONFLICT ... RETURNING on a partitioned table
        result = conn.execute(
            """
            with existing as (
                select count(*) as stored_before
                from mdq_incoming_candles as incoming
                inner join market_data as md
                    on md.symbol = incoming.symbol
                    and md.timeframe = incoming.timeframe
                    and md.ts = incoming.ts
            ),

            upserted as (
                insert into market_data as md (
                    symbol, asset_class, timeframe, ts, open, high, low, close, volume,
                    source, is_final, source_ts
                )
                select
                    incoming.symbol,
                    incoming.asset_class,
                    incoming.timeframe,
                    incoming.ts,
                    incoming.open,
                    incoming.high,
                    incoming.low,
                    incoming.close,
                    incoming.volume,
                    incoming.source,
                    incoming.is_final,
                    incoming.source_ts
                from mdq_incoming_candles as incoming
                on conflict (symbol, timeframe, ts) do update
                set asset_class = excluded.asset_class,
                    open = excluded.open,
                    high = excluded.high,
                    low = excluded.low,
                    close = excluded.close,
                    volume = excluded.volume,
                    source = excluded.source,
                    is_final = excluded.is_final,
                    source_ts = excluded.source_ts,
                    updated_at = now()
                where (
                    md.asset_class, md.open, md.high, md.low, md.close, md.volume, md.is_final
                ) is distinct from (
                    excluded.asset_class, excluded.open, excluded.high, excluded.low,
                    excluded.close, excluded.volume, excluded.is_final
                )
                    and (excluded.is_final or not md.is_final)
                returning 1
            ),

            final as (
                select
                    (select count(*) from upserted) as written,
                    existing.stored_before
                from existing
            )

            select * from final
            """
        ).fetchone()
    assert result is not None
    written, stored_before = int(result[0]), int(result[1])
    inserted = len(candles) - stored_before
    updated = written - inserted
    return WriteCounts(inserted, updated, n - inserted - updated)


def record_series_labels(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    *,
    daily_label: str | None,
    intraday_grid: str,
    intraday_label: str,
    decided_by: str,
) -> None:
    """Store the label convention a series was loaded in (``series_labels``, migration 062);
    the calendar checks read its grid."""
    conn.execute(
        """
        insert into series_labels as s (
            symbol, timeframe, daily_label, intraday_grid, intraday_label, decided_by
        )
        values (%s, %s, %s, %s, %s, %s)
        on conflict (symbol, timeframe) do update
        set daily_label = excluded.daily_label,
            intraday_grid = excluded.intraday_grid,
            intraday_label = excluded.intraday_label,
            decided_by = excluded.decided_by,
            updated_at = now()
        where (s.daily_label, s.intraday_grid, s.intraday_label, s.decided_by)
            is distinct from (
                excluded.daily_label, excluded.intraday_grid, excluded.intraday_label,
                excluded.decided_by
            )
        """,
        (symbol, timeframe, daily_label, intraday_grid, intraday_label, decided_by),
    )


# -- watermarks and confirmed-empty windows --------------------------------------------------------


def get_watermark(conn: psycopg.Connection, symbol: str, timeframe: str) -> datetime | None:
    """The watermark of a series (exclusive: every candle before it is loaded), or None."""
    row = conn.execute(
        "select watermark_at from backfill_watermarks where symbol = %s and timeframe = %s",
        (symbol, timeframe),
    ).fetchone()
    return row[0] if row else None


def set_watermark(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    watermark_at: datetime,
    execution_id: uuid.UUID | None,
) -> datetime:
    """Store a watermark; it never moves backwards (``greatest`` of old and new).

    Call it in the transaction that wrote the rows it covers.

    Returns:
        The stored watermark.
    """
    row = conn.execute(
        """
        insert into backfill_watermarks as w (symbol, timeframe, watermark_at, execution_id)
        values (%s, %s, %s, %s)
        on conflict (symbol, timeframe) do update
        set watermark_at = greatest(w.watermark_at, excluded.watermark_at),
            execution_id = case
                when excluded.watermark_at > w.watermark_at then excluded.execution_id
                else w.execution_id
            end,
            updated_at = now()
        returning watermark_at
        """,
        (symbol, timeframe, watermark_at, execution_id),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def is_confirmed_empty(
    conn: psycopg.Connection, symbol: str, timeframe: str, window: Window
) -> bool:
    """True when one recorded confirmed-empty window contains all of ``window``."""
    row = conn.execute(
        """
        select exists (
            select 1 from backfill_confirmed_empty
            where symbol = %s and timeframe = %s and window_start <= %s and window_end >= %s
        )
        """,
        (symbol, timeframe, window.start, window.end),
    ).fetchone()
    return bool(row and row[0])


def record_confirmed_empty(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    window: Window,
    provider: str,
    execution_id: uuid.UUID | None,
) -> None:
    """Record that the source answered ``window`` successfully with no candles (BH-07)."""
    conn.execute(
        """
        insert into backfill_confirmed_empty as e (
            symbol, timeframe, window_start, window_end, provider, execution_id
        )
        values (%s, %s, %s, %s, %s, %s)
        on conflict (symbol, timeframe, window_start) do update
        set window_end = greatest(e.window_end, excluded.window_end),
            confirmed_at = now()
        """,
        (symbol, timeframe, window.start, window.end, provider, execution_id),
    )


# -- quarantine ----------------------------------------------------------------------------------


def quarantine(
    conn: psycopg.Connection,
    rejected: Sequence[Rejected],
    *,
    execution_id: uuid.UUID | None,
    provider: str,
    source: str,
    symbol: str | None,
    timeframe: str | None,
) -> int:
    """Store rejected input rows with their reason, raw row and source row number.

    A row already quarantined (same provider, source, row number, reason and raw row) is not
    stored twice: it moves to the latest execution that rejected it (``execution_id``,
    ``quarantined_at``), so the quarantine check reports it on the latest run.

    Returns:
        How many rows were newly stored.
    """
    if not rejected:
        return 0
    records = []
    for item in rejected:
        raw = json.dumps(item.raw, sort_keys=True, default=str)
        fingerprint = hashlib.sha256(
            json.dumps(
                [provider, source, item.source_row, item.reason, symbol, timeframe, raw]
            ).encode()
        ).hexdigest()
        records.append(
            (
                execution_id,
                provider,
                source,
                item.source_row,
                symbol,
                timeframe,
                item.reason,
                item.code,
                raw,
                fingerprint,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into quarantined_candles as q (
                execution_id, provider, source, source_row, symbol, timeframe, reason,
                reason_code, raw_row, fingerprint
            )
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
            on conflict (fingerprint) do update
            set execution_id = excluded.execution_id,
                reason_code = excluded.reason_code,
                quarantined_at = now()
            where q.execution_id is distinct from excluded.execution_id
            """,
            records,
        )
        return max(cur.rowcount, 0)


# -- failure tracking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureStatus:
    """A series' failure streak after one backfill.

    Attributes:
        consecutive_failures: the streak (0 after a success).
        should_alert: the streak is at or past the threshold.
        alert_due: this call claimed the streak's one alert: send it now.
    """

    consecutive_failures: int
    should_alert: bool
    alert_due: bool


def track_symbol_failure(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    *,
    success: bool,
    threshold: int,
    error: str | None = None,
) -> FailureStatus:
    """Record a backfill outcome in ``symbol_failure_tracking``.

    A success resets the streak (and re-arms the alert); a failure increments it. The first
    call that finds the streak at ``>= threshold`` with no alert sent claims the alert
    atomically (``alert_sent_at``), so one streak yields exactly one alert, even with
    concurrent callers.

    Args:
        conn: open connection.
        symbol: the symbol.
        timeframe: the timeframe.
        success: the outcome.
        threshold: alert when the streak reaches this many failures.
        error: the failure's message.

    Returns:
        The streak and whether to alert now.
    """
    if success:
        conn.execute(
            """
            insert into symbol_failure_tracking as t (
                symbol, timeframe, consecutive_failures, last_success_at
            )
            values (%s, %s, 0, now())
            on conflict (symbol, timeframe) do update
            set consecutive_failures = 0,
                last_success_at = now(),
                alert_sent_at = null,
                updated_at = now()
            """,
            (symbol, timeframe),
        )
        return FailureStatus(0, False, False)
    row = conn.execute(
        """
        insert into symbol_failure_tracking as t (
            symbol, timeframe, consecutive_failures, total_failures, last_error, last_failure_at
        )
        values (%s, %s, 1, 1, %s, now())
        on conflict (symbol, timeframe) do update
        set consecutive_failures = t.consecutive_failures + 1,
            total_failures = t.total_failures + 1,
            last_error = excluded.last_error,
            last_failure_at = now(),
            updated_at = now()
        returning consecutive_failures
        """,
        (symbol, timeframe, error),
    ).fetchone()
    assert row is not None
    streak = int(row[0])
    alert = should_alert(streak, threshold)
    claimed = False
    if alert:
        claimed = (
            conn.execute(
                """
                update symbol_failure_tracking
                set alert_sent_at = now()
                where symbol = %s and timeframe = %s and alert_sent_at is null
                returning 1
                """,
                (symbol, timeframe),
            ).fetchone()
            is not None
        )
    return FailureStatus(streak, alert, claimed)


# -- instruments ---------------------------------------------------------------------------------


def upsert_instruments(conn: psycopg.Connection, instruments: Iterable[Instrument]) -> int:
    """Insert or refresh ``instruments`` rows; an unchanged row is not rewritten.

    Returns:
        Rows inserted or changed.
    """
    records = {
        i.symbol: (
            i.symbol,
            i.asset_class,
            i.exchange,
            i.calendar,
            i.quote_currency,
            i.calendar_source,
        )
        for i in instruments
    }
    if not records:
        return 0
    with conn.cursor() as cur:
        # one pipelined batch (psycopg sends every row before reading any answer)
        cur.executemany(
            """
                insert into instruments as i (
                    symbol, asset_class, exchange, calendar, quote_currency, calendar_source
                )
                values (%s, %s, %s, %s, %s, %s)
                on conflict (symbol) do update
                set asset_class = excluded.asset_class,
                    exchange = coalesce(excluded.exchange, i.exchange),
                    calendar = excluded.calendar,
                    quote_currency = coalesce(excluded.quote_currency, i.quote_currency),
                    calendar_source = case
                        when excluded.calendar_source = 'instruments' then i.calendar_source
                        else excluded.calendar_source
                    end,
                    updated_at = now()
                where (i.asset_class, i.exchange, i.calendar, i.quote_currency)
                    is distinct from (
                        excluded.asset_class, coalesce(excluded.exchange, i.exchange),
                        excluded.calendar, coalesce(excluded.quote_currency, i.quote_currency)
                    )
                    or (
                        excluded.calendar_source <> 'instruments'
                        and i.calendar_source is distinct from excluded.calendar_source
                    )
                """,
            list(records.values()),
        )
        return max(cur.rowcount, 0)


def get_instruments(conn: psycopg.Connection, *, active_only: bool = True) -> list[Instrument]:
    """Instruments, sorted by symbol (only ``active`` ones by default)."""
    rows = conn.execute(
        """
        select symbol, asset_class, calendar, exchange, quote_currency, calendar_source
        from instruments
        where active or not %s
        order by symbol
        """,
        (active_only,),
    ).fetchall()
    return [Instrument(*row) for row in rows]


# -- unchanged files (migration 155) -------------------------------------------------------------

#: The fingerprint of one series' stored candles in ``[first_ts, last_ts]`` (``r`` is the
#: series row): their count and the sum of their ``xmin`` (the writing transaction of each row
#: version). An insert, update or delete in that range since it was taken changes it: the count
#: moves, or a row version of another transaction replaces one, moving the sum (unless several
#: such writes by different transactions cancel out exactly in it, with the count unchanged).
_FINGERPRINT = """
    select count(*) as candles, coalesce(sum(md.xmin::text::bigint), 0) as xmin_sum
    from market_data as md
    where md.symbol = r.symbol
        and md.timeframe = r.timeframe
        and md.ts >= r.first_ts
        and md.ts <= r.last_ts
"""

#: The instruments row of ``r.symbol`` as text, without its timestamps.
_INSTRUMENT = """
    select (to_jsonb(i) - 'created_at' - 'updated_at')::text
    from instruments as i
    where i.symbol = r.symbol
"""

#: The watermark of ``r``'s series.
_WATERMARK = """
    select w.watermark_at
    from backfill_watermarks as w
    where w.symbol = r.symbol and w.timeframe = r.timeframe
"""

#: Rows in quarantine under ``r``'s execution.
_QUARANTINED = """
    select count(*)
    from quarantined_candles as q
    where q.execution_id = r.execution_id
"""


@dataclass(frozen=True)
class FileSeries:
    """One series of a whole-file load, as :func:`record_file_load` records it.

    Attributes:
        symbol, timeframe: the series.
        execution_id: the execution that loaded it (its state row, its quarantined rows).
        asset_class: the state row's asset class (None: the instruments row's).
        window: the window loaded, ``[start, end)``.
        first_ts, last_ts: the first and last candle written (both included).
        candles, xmin_sum: the fingerprint when the load knows it (every row COPYed on the
            fast path: count and count x xmin per COPY); None: taken by a scan of the range.
        fetched, stored, quarantined, duplicates, outside_window: the state row's counts.
    """

    symbol: str
    timeframe: str
    execution_id: uuid.UUID
    asset_class: str | None
    window: Window
    first_ts: datetime
    last_ts: datetime
    candles: int | None
    xmin_sum: int | None
    fetched: int
    stored: int
    quarantined: int
    duplicates: int
    outside_window: int


def record_file_load(
    conn: psycopg.Connection,
    *,
    provider: str,
    source_digest: str,
    source: str,
    input_rows: int,
    series: Sequence[FileSeries],
) -> None:
    """Record that a whole-file run of ``source_digest`` completed every series (one
    transaction; replaces an earlier record of the same digest).

    Per series it stores the fingerprint of its candles (given, or taken by a scan of
    ``[first_ts, last_ts]`` when None), the instruments row, the watermark and the number of
    its execution's quarantined rows as they are now: :func:`unchanged_file_series` compares
    them later. Records of other digests under the same ``source`` (file name) are deleted.
    """
    with conn.transaction():
        conn.execute(
            """
            insert into backfill_file_loads as f (
                provider, source_digest, source, series, input_rows
            )
            values (%s, %s, %s, %s, %s)
            on conflict (provider, source_digest) do update
            set source = excluded.source,
                series = excluded.series,
                input_rows = excluded.input_rows,
                loaded_at = now(),
                confirmed_at = now()
            """,
            (provider, source_digest, source, len(series), input_rows),
        )
        conn.execute(
            "delete from backfill_file_series where provider = %s and source_digest = %s",
            (provider, source_digest),
        )
        # one record per file name: an earlier version of the file is forgotten (its rerun
        # loads in full), so the records do not grow with every daily drop
        conn.execute(
            """
            delete from backfill_file_loads
            where provider = %s and source = %s and source_digest <> %s
            """,
            (provider, source, source_digest),
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"""
                insert into backfill_file_series (
                    provider, source_digest, symbol, timeframe, execution_id, asset_class,
                    window_start, window_end, first_ts, last_ts, candles, xmin_sum, instrument,
                    watermark_at, quarantine_rows, records_fetched, records_stored,
                    records_quarantined, records_duplicate, records_out_of_window
                )
                select
                    r.provider, r.source_digest, r.symbol, r.timeframe, r.execution_id,
                    coalesce(
                        r.asset_class,
                        (select i.asset_class from instruments as i where i.symbol = r.symbol)
                    ),
                    r.window_start, r.window_end, r.first_ts, r.last_ts,
                    coalesce(r.candles, scanned.candles),
                    coalesce(r.xmin_sum, scanned.xmin_sum),
                    ({_INSTRUMENT}),
                    ({_WATERMARK}),
                    ({_QUARANTINED}),
                    r.fetched, r.stored, r.quarantined, r.duplicates, r.outside_window
                from (
                    select
                        %(provider)s::text as provider,
                        %(digest)s::text as source_digest,
                        %(symbol)s::text as symbol,
                        %(timeframe)s::text as timeframe,
                        %(execution_id)s::uuid as execution_id,
                        %(asset_class)s::text as asset_class,
                        %(window_start)s::timestamptz as window_start,
                        %(window_end)s::timestamptz as window_end,
                        %(first_ts)s::timestamptz as first_ts,
                        %(last_ts)s::timestamptz as last_ts,
                        %(candles)s::bigint as candles,
                        %(xmin_sum)s::numeric as xmin_sum,
                        %(fetched)s::integer as fetched,
                        %(stored)s::integer as stored,
                        %(quarantined)s::integer as quarantined,
                        %(duplicates)s::integer as duplicates,
                        %(outside_window)s::integer as outside_window
                ) as r
                left join lateral (
                    {_FINGERPRINT}
                        and r.candles is null
                ) as scanned on true
                """.encode(),  # constant SQL fragments only; values are parameters
                [
                    {
                        "provider": provider,
                        "digest": source_digest,
                        "symbol": s.symbol,
                        "timeframe": s.timeframe,
                        "execution_id": s.execution_id,
                        "asset_class": s.asset_class,
                        "window_start": s.window.start,
                        "window_end": s.window.end,
                        "first_ts": s.first_ts,
                        "last_ts": s.last_ts,
                        "candles": s.candles,
                        "xmin_sum": s.xmin_sum,
                        "fetched": s.fetched,
                        "stored": s.stored,
                        "quarantined": s.quarantined,
                        "duplicates": s.duplicates,
                        "outside_window": s.outside_window,
                    }
                    for s in series
                ],
            )


@dataclass(frozen=True)
class FileSeriesCheck:
    """One recorded series of an unchanged file, checked against the database now.

    Attributes:
        symbol, timeframe, execution_id, asset_class, window: as recorded.
        fetched, stored, quarantined, duplicates, outside_window: the recorded counts.
        watermark: the series' watermark now.
        unchanged: its candles' fingerprint, instruments row, watermark and quarantined rows
            are as recorded, and no backfill of it is active.
        why: what differs, when not unchanged.
        span, fingerprint: the recorded first and last candle and (rows, sum of xmin).
    """

    symbol: str
    timeframe: str
    execution_id: uuid.UUID
    asset_class: str | None
    window: Window
    fetched: int
    stored: int
    quarantined: int
    duplicates: int
    outside_window: int
    watermark: datetime | None
    unchanged: bool
    why: str | None
    span: tuple[datetime, datetime] | None = None
    fingerprint: tuple[int, int] | None = None


@dataclass(frozen=True)
class FileLoad:
    """A recorded whole-file load (``backfill_file_loads``) and its series checked now."""

    source: str
    input_rows: int
    series: list[FileSeriesCheck]


def has_file_loads(conn: psycopg.Connection, provider: str) -> bool:
    """Whether any whole-file load of ``provider`` is recorded (else no file digest is
    needed before loading)."""
    row = conn.execute(
        "select exists (select 1 from backfill_file_loads where provider = %s)", (provider,)
    ).fetchone()
    return bool(row and row[0])


def unchanged_file_series(
    conn: psycopg.Connection, provider: str, source_digest: str
) -> FileLoad | None:
    """The recorded load of ``source_digest`` with each series checked now (one statement:
    one range scan per series for the fingerprint), or None when none is recorded."""
    head = conn.execute(
        """
        select source, series, input_rows
        from backfill_file_loads
        where provider = %s and source_digest = %s
        """,
        (provider, source_digest),
    ).fetchone()
    if head is None:
        return None
    rows = conn.execute(
        f"""
        with checked as (
            select
                r.*,
                now_state.candles as now_candles,
                now_state.xmin_sum as now_xmin_sum,
                ({_INSTRUMENT}) as now_instrument,
                ({_WATERMARK}) as now_watermark,
                ({_QUARANTINED}) as now_quarantined,
                exists (
                    select 1
                    from backfill_state_persistent as s
                    where s.symbol = r.symbol
                        and s.timeframe = r.timeframe
                        and s.status in ('pending', 'in_progress')
                ) as busy
            from backfill_file_series as r
            cross join lateral ({_FINGERPRINT}) as now_state
            where r.provider = %s and r.source_digest = %s
        )

        select
            symbol, timeframe, execution_id, asset_class, window_start, window_end,
            records_fetched, records_stored, records_quarantined, records_duplicate,
            records_out_of_window, now_watermark, first_ts, last_ts, candles, xmin_sum,
            case
                when busy then 'a backfill of the series is active'
                when (now_candles, now_xmin_sum) is distinct from (candles, xmin_sum)
                    then 'its candles were written since'
                when now_instrument is distinct from instrument
                    then 'its instruments row changed'
                when now_watermark is distinct from watermark_at then 'its watermark moved'
                when now_quarantined <> quarantine_rows then 'its quarantined rows changed'
            end as why
        from checked
        order by symbol, timeframe
        """.encode(),  # constant SQL fragments only
        (provider, source_digest),
    ).fetchall()
    series = [
        FileSeriesCheck(
            symbol=r[0],
            timeframe=r[1],
            execution_id=r[2],
            asset_class=r[3],
            window=Window(r[4], r[5]),
            fetched=r[6],
            stored=r[7],
            quarantined=r[8],
            duplicates=r[9],
            outside_window=r[10],
            watermark=r[11],
            span=(r[12], r[13]),
            fingerprint=(int(r[14]), int(r[15])),
            unchanged=r[16] is None,
            why=r[16],
        )
        for r in rows
    ]
    if len(series) != head[1]:
        return FileLoad(head[0], int(head[2]), [])
    return FileLoad(head[0], int(head[2]), series)


def confirm_unchanged_file(
    conn: psycopg.Connection,
    *,
    provider: str,
    source_digest: str,
    series: Sequence[FileSeriesCheck],
) -> dict[tuple[str, str], uuid.UUID]:
    """Record a rerun of an unchanged file in one transaction, for every series at once: a
    ``completed`` state row per series (its rows counted unchanged, the file's rejected rows
    quarantined again, as a full rerun counts them), the quarantined rows moved to the new
    execution (as :func:`quarantine` moves a row rejected again), a success in each failure
    streak, and the new executions on the series' records.

    Returns:
        The new execution id per (symbol, timeframe).
    """
    ids = {(s.symbol, s.timeframe): uuid.uuid4() for s in series}
    records = [
        (
            ids[(s.symbol, s.timeframe)],
            s.execution_id,
            s.symbol,
            s.timeframe,
            s.asset_class,
            s.window.start,
            s.window.end,
            s.fetched,
            s.stored,
            s.quarantined,
            s.duplicates,
            s.outside_window,
        )
        for s in series
    ]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            """
            create temp table if not exists mdq_unchanged_series (
                execution_id uuid, previous_id uuid, symbol text, timeframe text,
                asset_class text, window_start timestamptz, window_end timestamptz,
                fetched integer, stored integer, quarantined integer, duplicates integer,
                outside_window integer
            ) on commit delete rows
            """
        )
        with cur.copy(
            "copy mdq_unchanged_series (execution_id, previous_id, symbol, timeframe,"
            " asset_class, window_start, window_end, fetched, stored, quarantined, duplicates,"
            " outside_window) from stdin"
        ) as copy:
            for record in records:
                copy.write_row(record)
        cur.execute(
            """
            insert into backfill_state_persistent (
                execution_id, symbol, asset_class, timeframe, status, provider, window_start,
                window_end, records_fetched, records_unchanged, records_quarantined,
                records_duplicate, records_out_of_window, started_at, completed_at
            )
            select
                u.execution_id, u.symbol, u.asset_class, u.timeframe, 'completed', %s,
                u.window_start, u.window_end, u.fetched, u.stored, u.quarantined,
                u.duplicates, u.outside_window, clock_timestamp(), clock_timestamp()
            from mdq_unchanged_series as u
            """,
            (provider,),
        )
        cur.execute(
            """
            update quarantined_candles as q
            set execution_id = u.execution_id,
                quarantined_at = now()
            from mdq_unchanged_series as u
            where q.execution_id = u.previous_id
            """
        )
        cur.execute(
            """
            update backfill_file_series as r
            set execution_id = u.execution_id
            from mdq_unchanged_series as u
            where r.provider = %s
                and r.source_digest = %s
                and r.symbol = u.symbol
                and r.timeframe = u.timeframe
            """,
            (provider, source_digest),
        )
        cur.execute(
            "update backfill_file_loads set confirmed_at = now() "
            "where provider = %s and source_digest = %s",
            (provider, source_digest),
        )
        cur.execute(
            """
            insert into symbol_failure_tracking as t (
                symbol, timeframe, consecutive_failures, last_success_at
            )
            select symbol, timeframe, 0, now()
            from mdq_unchanged_series
            on conflict (symbol, timeframe) do update
            set consecutive_failures = 0,
                last_success_at = now(),
                alert_sent_at = null,
                updated_at = now()
            """
        )
    return ids
