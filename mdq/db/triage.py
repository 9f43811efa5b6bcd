"""Triage of findings: acknowledge one anomaly, mute a set of them, with their history.

Tables of migration 090. An **acknowledgement** covers one anomaly as it is now (severity,
observed value, ``ts_end``; for a ``stale`` finding, whose count grows by nature, severity
only): a recorded quality run that sees any of those change, or the anomaly resolve, ends it
(``end_reason`` ``changed``/``resolved``) and the anomaly is open again; so does its
``expires_at`` passing. A **mute rule** covers every anomaly whose symbol,
timeframe, check and type match (NULL = any) and whose ``ts_start`` lies in
``[ts_from, ts_to)``, until ``expires_at`` or ``unmute``. Rows are never deleted: ending one
sets ``ended_at``/``ended_by``.

The effective status of each anomaly is the view ``data_anomaly_triage``: ``open``,
``acknowledged``, ``muted`` or ``resolved`` (judged at the transaction's ``now()``).
Acknowledged and muted anomalies neither fail ``mdq check``/the quality flow nor alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from mdq.exceptions import AnomalyNotFound, MuteNotFound, TriageError

#: Anomaly types whose observed value and ``ts_end`` move at every run by nature (a stale
#: series misses one more candle each time): their acknowledgement lapses only on a severity
#: change or resolution (view ``data_anomaly_triage``, migration 090, says the same in SQL).
DRIFTING_TYPES: tuple[str, ...] = ("stale",)

#: The effective statuses of an anomaly (view ``data_anomaly_triage``).
TRIAGE_STATUSES: tuple[str, ...] = ("open", "acknowledged", "muted", "resolved")


@dataclass(frozen=True)
class Ack:
    """One acknowledgement (a row of ``anomaly_acks``; instants UTC-aware).

    Attributes:
        ack_id: its id.
        anomaly_id: the anomaly acknowledged.
        acked_by: who.
        reason: why.
        acked_at: when.
        expires_at: when it stops covering the anomaly (None: until it changes).
        severity: the anomaly's severity when acknowledged.
        observed_value: its observed value then.
        ts_end: its ``ts_end`` then.
        ended_at: when it ended (None: still in force unless expired).
        ended_by: who ended it (``unack``), or ``check`` for a run that saw a change.
        end_reason: ``unacknowledged``, ``changed`` or ``resolved`` (None while in force).
    """

    ack_id: int
    anomaly_id: int
    acked_by: str
    reason: str
    acked_at: datetime
    expires_at: datetime | None
    severity: str
    observed_value: float | None
    ts_end: datetime | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None


@dataclass(frozen=True)
class MuteRule:
    """One mute rule (a row of ``anomaly_mutes``; instants UTC-aware; None = any).

    Attributes:
        mute_id: its id.
        symbol: the symbol covered.
        timeframe: the timeframe covered.
        check_name: the check covered.
        anomaly_type: the anomaly type covered.
        ts_from: findings with ``ts_start`` ≥ this.
        ts_to: findings with ``ts_start`` < this.
        muted_by: who.
        reason: why.
        created_at: when.
        expires_at: when it stops.
        ended_at: when it was unmuted (None: not).
        ended_by: who unmuted it.
        covered: open anomalies it covers now (0 for an ended or expired rule).
    """

    mute_id: int
    symbol: str | None
    timeframe: str | None
    check_name: str | None
    anomaly_type: str | None
    ts_from: datetime | None
    ts_to: datetime | None
    muted_by: str
    reason: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    covered: int = 0

    def describe(self) -> str:
        """What the rule covers, e.g. ``symbol=AAPL timeframe=1d type=split_suspect``."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("symbol", self.symbol),
                ("timeframe", self.timeframe),
                ("check", self.check_name),
                ("type", self.anomaly_type),
                ("from", self.ts_from.isoformat() if self.ts_from else None),
                ("to", self.ts_to.isoformat() if self.ts_to else None),
            )
            if value is not None
        ]
        return " ".join(parts) or "every finding"


_ACK_COLUMNS = ", ".join(Ack.__dataclass_fields__)
_MUTE_COLUMNS = ", ".join(f"m.{c}" for c in MuteRule.__dataclass_fields__ if c != "covered")


def _require(who: str, why: str) -> None:
    if not who.strip():
        raise TriageError("who is required (--by)")
    if not why.strip():
        raise TriageError("why is required (--reason)")


def acknowledge(
    conn: psycopg.Connection,
    anomaly_id: int,
    *,
    by: str,
    reason: str,
    expires_at: datetime | None = None,
) -> Ack:
    """Acknowledge one anomaly as it is now; a previous acknowledgement of it is replaced.

    Args:
        conn: an open connection.
        anomaly_id: the anomaly (``mdq anomalies`` shows the ids).
        by: who acknowledges it.
        reason: why (e.g. "real crash, confirmed with the vendor").
        expires_at: when the acknowledgement lapses (UTC-aware); None: until the anomaly
            changes, resolves or is unacknowledged.

    Returns:
        The new acknowledgement.

    Raises:
        AnomalyNotFound: no anomaly has this id.
        TriageError: empty ``by``/``reason``, a naive or past ``expires_at``, or a resolved
            anomaly.
    """
    _require(by, reason)
    _check_expiry(expires_at)
    with conn.transaction():
        row = conn.execute(
            "select status, severity, observed_value, ts_end from data_anomalies"
            " where anomaly_id = %s for update",
            (anomaly_id,),
        ).fetchone()
        if row is None:
            raise AnomalyNotFound(anomaly_id)
        status, severity, observed, ts_end = row
        if status != "open":
            raise TriageError(f"anomaly {anomaly_id} is {status}; only open ones are acknowledged")
        conn.execute(
            "update anomaly_acks set ended_at = now(), ended_by = %s,"
            " end_reason = 'unacknowledged' where anomaly_id = %s and ended_at is null",
            (by, anomaly_id),
        )
        new = conn.execute(
            f"""
            insert into anomaly_acks
                (anomaly_id, acked_by, reason, expires_at, severity, observed_value, ts_end)
            values (%s, %s, %s, %s, %s, %s, %s)
            returning {_ACK_COLUMNS}
            """,
            (anomaly_id, by, reason, expires_at, severity, observed, ts_end),
        ).fetchone()
    assert new is not None
    return Ack(*new)


def unacknowledge(conn: psycopg.Connection, anomaly_id: int, *, by: str) -> int:
    """End the acknowledgement in force on one anomaly (it counts as open again).

    Args:
        conn: an open connection.
        anomaly_id: the anomaly.
        by: who.

    Returns:
        Acknowledgements ended: 1, or 0 when none was in force.

    Raises:
        AnomalyNotFound: no anomaly has this id.
    """
    with conn.transaction():
        if (
            conn.execute(
                "select 1 from data_anomalies where anomaly_id = %s", (anomaly_id,)
            ).fetchone()
            is None
        ):
            raise AnomalyNotFound(anomaly_id)
        cur = conn.execute(
            "update anomaly_acks set ended_at = now(), ended_by = %s,"
            " end_reason = 'unacknowledged' where anomaly_id = %s and ended_at is null",
            (by, anomaly_id),
        )
    return max(cur.rowcount, 0)


def mute(
    conn: psycopg.Connection,
    *,
    by: str,
    reason: str,
    expires_at: datetime,
    symbol: str | None = None,
    timeframe: str | None = None,
    check_name: str | None = None,
    anomaly_type: str | None = None,
    ts_from: datetime | None = None,
    ts_to: datetime | None = None,
) -> MuteRule:
    """Add a mute rule.

    Args:
        conn: an open connection.
        by: who mutes.
        reason: why (e.g. "historic file, not updated on purpose").
        expires_at: when the rule lapses (UTC-aware, in the future).
        symbol: only this symbol (None: any).
        timeframe: only this timeframe (None: any).
        check_name: only this check (None: any).
        anomaly_type: only this anomaly type (None: any).
        ts_from: only findings with ``ts_start`` ≥ this (UTC-aware; None: no bound).
        ts_to: only findings with ``ts_start`` < this (UTC-aware; None: no bound).

    Returns:
        The rule, with the open anomalies it covers now.

    Raises:
        TriageError: empty ``by``/``reason``, naive instants, a past ``expires_at``, an
            empty time range, or a rule naming nothing (it would mute every finding).
    """
    _require(by, reason)
    _check_expiry(expires_at)
    for name, value in (("ts_from", ts_from), ("ts_to", ts_to)):
        if value is not None and value.tzinfo is None:
            raise TriageError(f"{name} must be timezone-aware, got {value.isoformat()}")
    if ts_from is not None and ts_to is not None and ts_from >= ts_to:
        raise TriageError(f"empty range: from {ts_from.isoformat()} is not before {ts_to}")
    if all(v is None for v in (symbol, timeframe, check_name, anomaly_type, ts_from, ts_to)):
        raise TriageError(
            "a mute rule must name a symbol, timeframe, check, type or time range; "
            "muting every finding would hide everything"
        )
    row = conn.execute(
        """
        insert into anomaly_mutes (symbol, timeframe, check_name, anomaly_type, ts_from, ts_to,
                                   muted_by, reason, expires_at)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        returning mute_id
        """,
        (symbol, timeframe, check_name, anomaly_type, ts_from, ts_to, by, reason, expires_at),
    ).fetchone()
    assert row is not None
    (rule,) = list_mutes(conn, include_ended=True, mute_id=int(row[0]))
    return rule


def unmute(conn: psycopg.Connection, mute_id: int, *, by: str) -> MuteRule:
    """End a mute rule now.

    Args:
        conn: an open connection.
        mute_id: the rule (``mdq anomalies mutes`` shows them).
        by: who.

    Returns:
        The ended rule.

    Raises:
        MuteNotFound: no rule in force has this id.
    """
    cur = conn.execute(
        "update anomaly_mutes set ended_at = now(), ended_by = %s"
        " where mute_id = %s and ended_at is null and expires_at > now()",
        (by, mute_id),
    )
    if cur.rowcount != 1:
        raise MuteNotFound(mute_id)
    (rule,) = list_mutes(conn, include_ended=True, mute_id=mute_id)
    return rule


def list_mutes(
    conn: psycopg.Connection, *, include_ended: bool = False, mute_id: int | None = None
) -> list[MuteRule]:
    """Mute rules, newest first, each with the open anomalies it covers now.

    Args:
        conn: an open connection.
        include_ended: also rules that were unmuted or have expired (the history).
        mute_id: only this rule.
    """
    rows = conn.execute(
        f"""
        with covered as (
            select t.mute_id, count(*) as n
            from data_anomaly_triage as t
            where t.triage_status = 'muted'
            group by t.mute_id
        )
        select {_MUTE_COLUMNS}, coalesce(c.n, 0)
        from anomaly_mutes as m
        left join covered as c on c.mute_id = m.mute_id
        where (%(all)s or (m.ended_at is null and m.expires_at > now()))
            and (%(id)s::bigint is null or m.mute_id = %(id)s)
        order by m.mute_id desc
        """,
        {"all": include_ended, "id": mute_id},
    ).fetchall()
    return [MuteRule(*row[:-1], covered=int(row[-1])) for row in rows]


def ack_history(conn: psycopg.Connection, anomaly_id: int) -> list[Ack]:
    """Every acknowledgement of one anomaly, oldest first."""
    rows = conn.execute(
        f"select {_ACK_COLUMNS} from anomaly_acks where anomaly_id = %s order by ack_id",
        (anomaly_id,),
    ).fetchall()
    return [Ack(*row) for row in rows]


def end_stale_acks(conn: psycopg.Connection, *, seen_at: datetime) -> int:
    """End acknowledgements whose anomaly changed or resolved (called by a recorded run).

    A change is any difference in severity, observed value or ``ts_end`` from the values
    acknowledged (for :data:`DRIFTING_TYPES`, in severity only); the anomaly then counts as
    open again and can fail a check and alert.

    Args:
        conn: an open connection (inside the run's transaction).
        seen_at: the run's time, written to ``ended_at``.

    Returns:
        Acknowledgements ended.
    """
    cur = conn.execute(
        """
        update anomaly_acks as k
        set ended_at = %(seen)s,
            ended_by = 'check',
            end_reason = case when a.status = 'resolved' then 'resolved' else 'changed' end
        from data_anomalies as a
        where a.anomaly_id = k.anomaly_id
            and k.ended_at is null
            and (
                a.status = 'resolved'
                or a.severity <> k.severity
                or (
                    not a.anomaly_type = any(%(drifting)s)
                    and (
                        a.observed_value is distinct from k.observed_value
                        or a.ts_end is distinct from k.ts_end
                    )
                )
            )
        """,
        {"seen": seen_at, "drifting": list(DRIFTING_TYPES)},
    )
    return max(cur.rowcount, 0)


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise TriageError(f"until must be timezone-aware, got {expires_at.isoformat()}")
    from datetime import UTC

    if expires_at <= datetime.now(UTC):
        raise TriageError(f"until {expires_at.isoformat()} is not in the future")
