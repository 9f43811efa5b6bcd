"""Time a repeat ``mdq check``: the first run against a second one with no new data.

Loads the shipped sample files (``mdq/sample_data``: five stocks daily 2000-2013, AAPL 1m,
BTCUSD and EURUSD hourly) into a fresh database, removes dbt's saved parse
(``dbt_project/target/partial_parse.msgpack``), then runs the real console script
``mdq check`` (a live run: it records its findings) as a user would:

* ``first``: dbt parses the whole project and builds every model (incremental ones in full);
* ``second, no new data``: the same command again; dbt re-uses its saved parse (the run's
  reference time reaches dbt in the environment, ``MDQ_AS_OF``, not in ``--vars``) and the
  incremental models add nothing;
* ``second, vars changed``: for comparison, the same with a changed ``--vars`` value, which
  makes dbt re-parse the whole project (what every run cost while ``as_of`` went in
  ``--vars``).

For each run it reads dbt's log (``dbt_project/logs/dbt.log``) to tell whether dbt parsed the
whole project ("Unable to do partial parsing"), and prints one table: seconds, full parse, and
the ratio of the first run's time to each run's.

Run (about 3 minutes on 2 busy cores)::

    .venv/bin/python bench/bench_repeat_check.py

Measured here (sample data: 40,872 candles in 8 series; embedded PostgreSQL; 2 shared cores,
load average 4-6), after the checks became incremental (issue 15: a repeat with no new data
re-reads no candle in the calendar checks) and the sessions stopped being rebuilt: first 9.5 s
wall (6.3 s CPU), repeat with no new data median 6.2 s (4.2 s CPU): first/repeat 1.53 wall,
1.50 CPU; with changed vars (full re-parse) 1.14. The 2x goal is not shown on this small data
(dbt's own floor of ~2 s per invocation, two invocations); at 1M candles
``bench/bench_scale.py --parts P1,P2,P3`` measured first full 31.1 s vs repeat 15.5 s (2.00).
Earlier (before those changes) the ratios were 0.5-1.8 wall, 1.18 CPU.

The server is ``MDQ_DATABASE_URL`` when set, else the embedded server under ``.mdq-bench``. The
database ``mdq_bench_<random>`` is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _support import bench_database

from mdq.db import Database, connect
from mdq.dbt_runner import DBT_PROJECT_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_LOG = DBT_PROJECT_DIR / "logs" / "dbt.log"
MDQ = Path(sys.executable).parent / "mdq"


def log_size() -> int:
    return DBT_LOG.stat().st_size if DBT_LOG.exists() else 0


def models_step() -> str:
    """What the last ``mdq check``'s models step did: ``skipped`` (the models were re-used,
    mdq's note in ``run_results_build.json``) or ``built``."""
    path = DBT_PROJECT_DIR / "target" / "run_results_build.json"
    metadata = json.loads(path.read_text()).get("metadata", {})
    return "skipped" if "mdq_models_step" in metadata else "built"


def run_check(database: Database, *args: str) -> tuple[float, float, bool, str, int]:
    """Run ``mdq check`` once.

    Returns:
        (wall seconds, CPU seconds of the mdq process (user + system: parsing is CPU there,
        the checks' SQL runs in PostgreSQL), dbt parsed the whole project, the models step
        (``built`` or ``skipped``), exit status).

    Raises:
        SystemExit: the check could not run (exit status 2).
    """
    env = {**os.environ, "MDQ_DATABASE_URL": database.url(), "MDQ_DBT_SCHEMA": "bench"}
    before = log_size()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(MDQ), "check", *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode == 2:
        raise SystemExit(f"mdq check could not run:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with DBT_LOG.open("rb") as log:
        log.seek(before if log_size() >= before else 0)
        appended = log.read().decode(errors="replace")
    full_parse = "Unable to do partial parsing" in appended
    return seconds, cpu, full_parse, models_step(), done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeat runs of each kind (the median is shown)"
    )
    args = parser.parse_args()

    with bench_database(keep=args.keep) as database:
        from mdq.backfill_core import load_sample_data

        loaded = load_sample_data(database)
        with connect(database, autocommit=True) as conn:
            (candles,) = conn.execute("select count(*) from market_data").fetchone() or (0,)
        print(f"loaded {candles} candles in {len(loaded)} series", flush=True)

        (DBT_PROJECT_DIR / "target" / "partial_parse.msgpack").unlink(missing_ok=True)
        rows = [("first (no saved parse, models built in full)", *run_check(database))]
        for repeat in range(1, args.repeats + 1):
            rows.append((f"repeat {repeat}, no new data", *run_check(database)))
            probe = f"{{mdq_bench_probe: {uuid.uuid4().hex[:6]}}}"
            label = f"repeat {repeat}, vars changed (full re-parse)"
            rows.append((label, *run_check(database, "--vars", probe)))
            # back to the project's vars: the next plain repeat re-parses once, not timed
            run_check(database)

        first, first_cpu = rows[0][1], rows[0][2]
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print(
            f"{'run':<46} {'wall s':>7} {'first/this':>10} {'cpu s':>6} "
            f"{'first/this':>10} {'full parse':>10} {'models':>7} {'exit':>4}"
        )
        for label, wall, cpu, full_parse, models, status in rows:
            print(
                f"{label:<46} {wall:>7.1f} {first / wall:>10.2f} {cpu:>6.1f} "
                f"{first_cpu / cpu:>10.2f} {str(full_parse):>10} {models:>7} {status:>4}"
            )
        for kind in ("no new data", "vars changed"):
            wall = statistics.median(r[1] for r in rows if kind in r[0])
            cpu = statistics.median(r[2] for r in rows if kind in r[0])
            print(
                f"{'median repeat, ' + kind:<46} {wall:>7.1f} {first / wall:>10.2f} "
                f"{cpu:>6.1f} {first_cpu / cpu:>10.2f}"
            )


if __name__ == "__main__":
    main()
