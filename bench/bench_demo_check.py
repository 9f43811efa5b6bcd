"""Time ``mdq check`` on the demo data: the first run, a repeat, and dbt's own floor.

Loads the shipped sample files (``mdq/sample_data``: 40,872 candles in 8 series) into a fresh
database (bench/_support.py), then runs the real console script ``mdq check`` as a user would
(a live run: it records its findings; the saved parse of the dbt project is kept, as after
``mdq demo``):

* ``first``: the trading calendars are built and every model is built in full (the session
  enumerations, 165K + 141K rows, included);
* ``repeat``: the same command again with no new data: no calendar is built, the session
  enumerations add no row, dbt re-uses its saved parse.

For each run it prints the wall time, the CPU seconds of the ``mdq`` process, and the slowest
nodes of both dbt steps with dbt's own ``execution_time`` (``target/run_results_build.json``
for the models, ``target/run_results_test.json`` for the checks, copies of dbt's
``run_results.json`` that mdq keeps per step). Then dbt's floor, measured the same way:

* ``dbt build`` of an empty selection (start-up, partial parse, no connection);
* ``dbt run`` of one staging view (start-up, partial parse, connection, one node).

Run (a couple of minutes)::

    .venv/bin/python bench/bench_demo_check.py [--repeats 3] [--keep]

The machine's load average is printed with the figures: other jobs on its 2 cores stretch the
wall times (the CPU seconds much less).
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
from pathlib import Path

from _support import REPO_ROOT, bench_database

from mdq.db import Database, connect
from mdq.dbt_runner import DBT_PROJECT_DIR

BIN = Path(sys.executable).parent
TARGET = DBT_PROJECT_DIR / "target"
SCHEMA = "bench_demo"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run a command; (wall s, CPU s of the child, exit status, output tail)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode, (done.stdout + done.stderr)[-3000:]


def node_times(step: str) -> list[tuple[str, float]]:
    """(node, execution seconds) of one dbt step of the last ``mdq check``, slowest first."""
    path = TARGET / f"run_results_{step}.json"
    results = json.loads(path.read_text())["results"]
    rows = [(r["unique_id"].split(".", 2)[-1], float(r["execution_time"])) for r in results]
    return sorted(rows, key=lambda row: -row[1])


def dbt_elapsed(step: str) -> float | None:
    """dbt's elapsed seconds of one step; None when mdq skipped the models step (the models
    were re-used: ``metadata.mdq_models_step`` in its run results)."""
    results = json.loads((TARGET / f"run_results_{step}.json").read_text())
    if "mdq_models_step" in results.get("metadata", {}):
        return None
    return float(results["elapsed_time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeat runs (median shown)")
    parser.add_argument("--top", type=int, default=8, help="slowest nodes shown per step")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    with bench_database(keep=args.keep) as database:
        from mdq.backfill_core import load_sample_data

        loaded = load_sample_data(database)
        with connect(database, autocommit=True) as conn:
            (candles,) = conn.execute("select count(*) from market_data").fetchone() or (0,)
        print(f"loaded {candles} candles in {len(loaded)} series", flush=True)
        run(database, args.repeats, args.top)


def run(database: Database, repeats: int, top: int) -> None:
    env = {**os.environ, "MDQ_DATABASE_URL": database.url(), "MDQ_DBT_SCHEMA": SCHEMA}
    env.pop("PREFECT_API_URL", None)  # dbt's own runner, as on a machine without Prefect
    check = [str(BIN / "mdq"), "check"]
    runs: list[tuple[str, float, float, int]] = []
    nodes: dict[str, dict[str, list[tuple[str, float]]]] = {}
    elapsed: dict[str, tuple[float | None, float | None]] = {}
    for label in ["first", *(f"repeat {i}" for i in range(1, repeats + 1))]:
        wall, cpu, status, tail = timed(check, env)
        if status == 2:
            raise SystemExit(f"mdq check could not run:\n{tail}")
        runs.append((label, wall, cpu, status))
        nodes[label] = {step: node_times(step) for step in ("build", "test")}
        elapsed[label] = (dbt_elapsed("build"), dbt_elapsed("test"))
        print(f"{label}: {wall:.1f} s wall, exit {status}", flush=True)

    # dbt's floor: the same profile and project, from the shell as an analyst runs it
    dbt_env = {**env, **database.dbt_env(SCHEMA)}
    dbt = [str(BIN / "dbt"), "--no-use-colors"]
    where = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(REPO_ROOT)]
    floors = [
        ("dbt build, empty selection", [*dbt, "build", *where, "--select", "mdq_no_such_node"]),
        ("dbt run, one view", [*dbt, "run", *where, "--select", "stg_market__trading_calendars"]),
    ]
    floor_rows = []
    for label, command in floors:
        samples = [timed(command, dbt_env) for _ in range(max(repeats, 1))]
        for _, _, status, tail in samples:
            if status != 0:
                raise SystemExit(f"{label} failed:\n{tail}")
        floor_rows.append(
            (
                label,
                statistics.median(s[0] for s in samples),
                statistics.median(s[1] for s in samples),
            )
        )

    load = os.getloadavg()
    first_wall = runs[0][1]
    print(f"\nmdq check on the demo data (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(
        f"{'run':<12} {'wall s':>7} {'cpu s':>6} {'first/this':>10} {'dbt models s':>12} "
        f"{'dbt checks s':>12} {'exit':>4}"
    )
    for label, wall, cpu, status in runs:
        models, checks = (
            "skipped" if value is None else f"{value:.1f}" for value in elapsed[label]
        )
        print(
            f"{label:<12} {wall:>7.1f} {cpu:>6.1f} {first_wall / wall:>10.2f} {models:>12} "
            f"{checks:>12} {status:>4}"
        )
    repeat_walls = [r[1] for r in runs[1:]]
    if repeat_walls:
        median = statistics.median(repeat_walls)
        print(
            f"median repeat: {median:.1f} s wall (target <= 8 s): "
            f"{'met' if median <= 8 else 'NOT met'}; first / repeat = {first_wall / median:.2f}"
        )

    print(
        f"\n{'dbt floor (median of ' + str(max(repeats, 1)) + ')':<34} {'wall s':>7} {'cpu s':>6}"
    )
    for label, wall, cpu in floor_rows:
        print(f"{label:<34} {wall:>7.1f} {cpu:>6.1f}")

    for label in ("first", "repeat 1"):
        if label not in nodes:
            continue
        for step, title in (("build", "models"), ("test", "checks")):
            rows = nodes[label][step]
            if not rows:
                print(f"\n{label}, dbt {title}: skipped (re-used as built)")
                continue
            total = sum(t for _, t in rows)
            print(f"\n{label}, dbt {title}: {len(rows)} nodes, {total:.1f} s summed; slowest:")
            for name, seconds in rows[:top]:
                print(f"  {seconds:>6.2f}  {name}")


if __name__ == "__main__":
    main()
