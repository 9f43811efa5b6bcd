"""Fault suite, commands (issue 16, point 5): no command prints a traceback.

Every command runs against a database that was stopped (the socket directory a stopped
embedded server leaves: gone with its socket), with bad settings, and with bad flag values;
each must print one
line on stderr and exit 2 ("could not run"; 1 would mean "findings" to a scheduler).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mdq import embedded

pytestmark = pytest.mark.integration

COMMANDS = [
    ["db", "start"],
    ["db", "env"],
    ["db", "migrate"],
    ["calendars", "refresh"],
    ["demo"],
    ["split", "AAA", "2024-06-10", "2"],
    ["backfill", "--provider", "synthetic", "--symbols", "S1", "--start", "2024-01-01",
     "--end", "2024-01-02", "--no-prefect"],
    ["check"],
    ["anomalies"],
    ["dedupe"],
    ["dedupe", "--apply"],
    ["health"],
    ["docs", "--no-serve"],
]  # fmt: skip


@pytest.fixture(scope="module")
def stopped_url() -> Iterator[str]:
    """The URL of a stopped embedded PostgreSQL: what ``mdq db stop`` leaves behind, its
    private socket directory ``/tmp/mdq-XXXXXXXX`` removed with the socket (see
    :func:`mdq.embedded.stop`; ``test_embedded.py`` checks that it is removed). Starting a
    server only to stop it cost this module ~5 s and changed nothing a client can see."""
    socket_dir = tempfile.mkdtemp(prefix="mdq-", dir=embedded.SOCKET_PARENT)
    os.rmdir(socket_dir)
    yield f"postgresql://postgres@/mdq?host={socket_dir}"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MDQ_", "PREFECT_API"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mdq.cli", *args],
        capture_output=True, text=True, env=full, timeout=300, check=False,
    )  # fmt: skip


def _one_line_exit_2(cases: list[tuple[list[str], dict[str, str], str]]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case[0], case[1]), cases))
    broken = []
    for (args, _, expected), result in zip(cases, results, strict=True):
        lines = result.stderr.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1 or expected not in lines[0]:
            broken.append((" ".join(args), result.returncode, result.stderr[-400:]))
    assert broken == []


def test_every_command_against_a_stopped_database(stopped_url: str) -> None:
    env = {"MDQ_DATABASE_URL": stopped_url, "MDQ_CONNECT_TIMEOUT": "3"}
    expected = "cannot connect to PostgreSQL at /tmp/mdq-"
    _one_line_exit_2([(args, env, expected) for args in COMMANDS])


def test_bad_settings_and_bad_flag_values(tmp_path: Path, stopped_url: str) -> None:
    url = {"MDQ_DATABASE_URL": stopped_url}
    cases = [
        (["check"], {"MDQ_CONNECT_TIMEOUT": "abc"}, "MDQ_CONNECT_TIMEOUT: Input should be"),
        (["anomalies"], {"MDQ_BACKFILL_MAX_CONCURRENCY": "0"}, "MDQ_BACKFILL_MAX_CONCURRENCY"),
        (["check"], {"MDQ_DATABASE_URL": "mysql://x@y/z"}, "MDQ_DATABASE_URL: must start"),
        (["check", "--as-of", "9999-12-31T23:59:59Z"], url, "outside the supported range"),
        (["health", "--as-of", "9999-12-31T23:59:59Z"], url, "outside the supported range"),
        (["demo", "--as-of", "2024-06-01T00:00:00"], url, "has no time zone"),
        (["check", "--as-of", "yesterday"], url, "is not an ISO 8601 timestamp"),
        (["anomalies", "--status", "x"], url, "'x' not supported"),
        (["backfill", "--concurrency", "99"], url, "less than or equal to 32"),
        (["check", "--bogus"], url, "No such option: --bogus"),
        (["db"], url, "Missing command"),
    ]
    _one_line_exit_2(cases)
