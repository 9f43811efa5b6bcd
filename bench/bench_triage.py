"""Time what triage adds to the quality run: open counts through the triage view, and a
what-if persist (rolled back) next to a recorded one, on N synthetic anomalies.

Generates N open anomalies over 500 symbols in a fresh database, then times, on the same rows:

* ``open counts, plain``: the count by severity a run did before triage existed;
* ``open counts, triage view``: :func:`mdq.db.anomalies.open_counts` (acknowledged and muted
  ones apart), with no rule, then with ``--mutes`` mute rules and N/100 acknowledgements;
* ``persist, recorded``/``persist, what-if``: :func:`mdq.db.anomalies.persist_findings` of the
  same N findings seen again, committed, or inside a transaction that is rolled back (what a
  run with ``--as-of`` does).

It prints one table: seconds and the ratio to the plain count (counts) or to the recorded
persist (persists).

Run::

    .venv/bin/python bench/bench_triage.py --anomalies 200000

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``. The
database ``mdq_bench_<random>`` is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from _support import bench_database

from mdq.anomalies import AnomalyRecord, fingerprint
from mdq.db import connect
from mdq.db.anomalies import open_counts, persist_findings

SEEN = datetime(2026, 1, 1, tzinfo=UTC)


def records(n: int) -> list[AnomalyRecord]:
    """N findings: 500 symbols, gaps on consecutive hours, one in ten of error severity."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        symbol, ts = f"S{i % 500:03d}", start + timedelta(hours=i // 500)
        out.append(
            AnomalyRecord(
                fingerprint=fingerprint("candle_gaps", "gap", symbol, "1h", ts),
                check_name="candle_gaps",
                dbt_unique_id="test.mdq.candle_gaps",
                anomaly_type="gap",
                severity="error" if i % 10 == 0 else "warn",
                symbol=symbol,
                asset_class="crypto",
                timeframe="1h",
                ts_start=ts,
                ts_end=ts,
                observed_value=1.0,
                expected_value=0.0,
                details={"failure_reason": "1 missing 1h candle"},
            )
        )
    return out


def timed(func: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalies", type=int, default=200_000)
    parser.add_argument("--mutes", type=int, default=20, help="mute rules in force")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    with bench_database(keep=args.keep) as database:
        found = records(args.anomalies)
        with connect(database) as conn:
            persist_findings(conn, found, completed_test_ids=[], seen_at=SEEN)
            conn.execute("analyze data_anomalies")
        rows: list[tuple[str, float, float]] = []
        with connect(database) as conn:

            def plain() -> None:
                conn.execute(
                    "select severity, count(*) from data_anomalies where status = 'open'"
                    " group by severity"
                ).fetchall()

            base = min(timed(plain) for _ in range(3))
            rows.append(("open counts, plain (before triage)", base, 1.0))
            view = min(timed(lambda: open_counts(conn)) for _ in range(3))
            rows.append(("open counts, triage view, no rule", view, view / base))
            until = datetime.now(UTC) + timedelta(days=1)
            conn.execute(
                "insert into anomaly_mutes (symbol, anomaly_type, muted_by, reason, expires_at)"
                " select 'S' || lpad(g::text, 3, '0'), 'gap', 'bench', 'bench', %s"
                " from generate_series(0, %s - 1) as g",
                (until, args.mutes),
            )
            conn.execute(
                "insert into anomaly_acks (anomaly_id, acked_by, reason, severity,"
                " observed_value, ts_end) select anomaly_id, 'bench', 'bench', severity,"
                " observed_value, ts_end from data_anomalies where mod(anomaly_id, 100) = 0"
            )
            conn.commit()
            counts = open_counts(conn)
            ruled = min(timed(lambda: open_counts(conn)) for _ in range(3))
            label = f"open counts, {args.mutes} mutes + 1% acked"
            rows.append((label, ruled, ruled / base))
        with connect(database) as conn:
            recorded = timed(
                lambda: persist_findings(conn, found, completed_test_ids=[], seen_at=SEEN)
            )
            conn.commit()
        with connect(database) as conn:

            def what_if() -> None:
                with conn.transaction(force_rollback=True):
                    persist_findings(conn, found, completed_test_ids=[], seen_at=SEEN)

            rolled_back = timed(what_if)
        rows.append(("persist N seen again, recorded", recorded, 1.0))
        rows.append(("persist N seen again, what-if", rolled_back, rolled_back / recorded))
        print(f"\n{args.anomalies:,} open anomalies; with the rules: {counts}")
        width = max(len(r[0]) for r in rows)
        print(f"{'what':<{width}}  {'seconds':>8}  ratio")
        for what, seconds, ratio in rows:
            print(f"{what:<{width}}  {seconds:>8.3f}  {ratio:.2f}")


if __name__ == "__main__":
    main()
