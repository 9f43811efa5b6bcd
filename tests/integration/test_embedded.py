"""The embedded server is private and shared (issue 16, points 3 and 7), run as a user runs it.

- ``MDQ_HOME`` long, with a space, or with ``$(...)`` works and executes nothing;
- its socket sits in a private 0700 directory on a short path; another OS user cannot connect
  (when the tests run as root they try as ``nobody``), and peer authentication refuses that
  user even when it can reach the socket; the parents of MDQ_HOME keep their permissions;
- commands at once on a stopped home all complete, and one command's exit never stops the
  server under another.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mdq import embedded
from mdq.embedded import _bin
from tests.integration.test_cli_database import run_mdq

pytestmark = pytest.mark.integration

MIGRATIONS = len(list((Path(embedded.__file__).parent / "migrations").glob("*.sql")))


def _socket_of(home: Path) -> Path:
    lines = (embedded.pgdata_dir(home) / "postmaster.pid").read_text().splitlines()
    return Path(lines[4])


def _psql_as(user: str, socket_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", _bin("psql"), "-h", str(socket_dir), "-U", "postgres",
         "-d", "mdq", "-Atc", "select 1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("with space", id="space"),
        pytest.param("$(touch PWNED)`touch PWNED2`", id="command-substitution"),
        pytest.param("/".join(["a-rather-long-directory-name-for-mdq"] * 6), id="long"),
    ],
)
def test_a_hostile_home_works_executes_nothing_and_stays_private(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o700)
    home = parent / name
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, parent)}
    started = run_mdq("db", "start", env={"MDQ_HOME": str(home)}, cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert "ready: embedded PostgreSQL" in started.stdout
        socket_dir = _socket_of(home)
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert len(str(socket_dir / ".s.PGSQL.5432")) < 40
        assert sorted(p.name for p in tmp_path.rglob("PWNED*")) == []
        assert not Path("/PWNED").exists() and not Path.cwd().joinpath("PWNED").exists()
        hba = (embedded.pgdata_dir(home) / "pg_hba.conf").read_text()
        assert [ln for ln in hba.splitlines() if ln and not ln.startswith("#")] == [
            "local all all peer map=mdq"
        ]
        if os.geteuid() == 0:
            refused = _psql_as("nobody", socket_dir)
            assert refused.returncode == 2
            assert "Permission denied" in refused.stderr
            # even with the directory opened up, peer authentication refuses nobody
            socket_dir.chmod(0o711)
            (socket_dir / ".s.PGSQL.5432").chmod(0o777)
            try:
                peer = _psql_as("nobody", socket_dir)
            finally:
                socket_dir.chmod(0o700)
            assert peer.returncode == 2
            assert 'Peer authentication failed for user "postgres"' in peer.stderr
        env = run_mdq("db", "env", env={"MDQ_HOME": str(home)}, cwd=tmp_path)
        assert env.returncode == 0, env.stderr
        assert f"export MDQ_PGHOST={socket_dir}" in env.stdout.splitlines()
    finally:
        stopped = run_mdq("db", "stop", env={"MDQ_HOME": str(home)}, cwd=tmp_path)
    assert stopped.stdout.strip() == "stopped"
    assert not socket_dir.exists()
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, parent)} == before


def test_commands_at_once_on_a_stopped_home_all_complete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env["MDQ_HOME"] = str(home)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mdq.cli", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    applied = [int(out.split("applied ")[1].split(" ")[0]) for out, _ in outputs]
    assert sum(applied) == MIGRATIONS  # each migration once, whoever got the lock first
    assert not embedded.is_running(home), "the last user out stops the server"


HOLDER = """
import sys, time
from pathlib import Path
import psycopg
from mdq import embedded
with embedded.session(Path(sys.argv[1])) as socket_dir:
    with psycopg.connect(host=socket_dir, user="postgres", dbname="mdq") as conn:
        print("in", flush=True)
        sys.stdin.readline()  # until the test says the other command is done
        print(conn.execute("select 41 + 1").fetchone()[0], flush=True)
"""


def test_one_command_leaving_never_stops_the_server_under_another(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "in"
    other = run_mdq("db", "migrate", env={"MDQ_HOME": str(home)})
    assert other.returncode == 0, other.stderr
    assert embedded.is_running(home), "the holder still uses it"
    out, err = holder.communicate("go\n", timeout=120)
    assert holder.returncode == 0, err
    assert out.strip() == "42"
    deadline = time.monotonic() + 10
    while embedded.is_running(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not embedded.is_running(home)


@pytest.mark.skipif(os.geteuid() != 0, reason="the mode without a user namespace exists as root")
def test_as_root_without_a_user_namespace_the_server_runs_as_pgserver_and_stays_private(
    tmp_path: Path,
) -> None:
    """``MDQ_EMBEDDED_USER_NAMESPACE=false`` takes the path used where namespaces are denied."""
    server_user = pwd.getpwnam(embedded.ROOT_SERVER_USER)
    env = {"MDQ_EMBEDDED_USER_NAMESPACE": "false"}
    # under a directory pgserver cannot traverse: one line saying so, nothing chmod-ed (the
    # CLI: the setting reaches the server's start; only this mode gives that message)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    refused = run_mdq("db", "start", env={**env, "MDQ_HOME": str(closed / "home")}, cwd=tmp_path)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Permission denied" in refused.stderr
    assert "as root the server runs as OS user 'pgserver'" in refused.stderr
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    # under a directory others may traverse (made here; mdq never changes it); started as
    # the CLI starts it, without the CLI's migrations (this test is about the server)
    parent = Path(tempfile.mkdtemp(prefix="mdq-test-", dir="/tmp"))
    parent.chmod(0o711)
    home = parent / "home"
    try:
        _, started = embedded.start(home, user_namespace=False)
        assert started
        pgdata = embedded.pgdata_dir(home)
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        uids = next(
            ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ln.startswith("Uid:")
        ).split()[1:]  # fmt: skip
        assert set(map(int, uids)) == {server_user.pw_uid}  # real, effective, saved, fs
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
        assert pgdata.stat().st_uid == server_user.pw_uid
        socket_dir = _socket_of(home)
        info = socket_dir.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, server_user.pw_uid)
        assert len(str(socket_dir / ".s.PGSQL.5432")) < 40
        hba = (pgdata / "pg_hba.conf").read_text()
        assert [ln for ln in hba.splitlines() if ln and not ln.startswith("#")] == [
            "local all all peer map=mdq"
        ]
        ident = (pgdata / "pg_ident.conf").read_text()
        assert sorted(ln for ln in ident.splitlines() if ln and not ln.startswith("#")) == [
            "mdq pgserver postgres",
            "mdq root postgres",
        ]
        refused_nobody = _psql_as("nobody", socket_dir)
        assert refused_nobody.returncode == 2
        assert "Permission denied" in refused_nobody.stderr
        socket_dir.chmod(0o711)  # opened up, peer authentication still refuses nobody
        (socket_dir / ".s.PGSQL.5432").chmod(0o777)
        try:
            peer = _psql_as("nobody", socket_dir)
        finally:
            socket_dir.chmod(0o700)
            (socket_dir / ".s.PGSQL.5432").chmod(0o700)
        assert peer.returncode == 2
        assert 'Peer authentication failed for user "postgres"' in peer.stderr
        owner = _psql_as("root", socket_dir)  # the owner of MDQ_HOME logs in
        assert (owner.returncode, owner.stdout.strip()) == (0, "1"), owner.stderr
        assert stat.S_IMODE(home.stat().st_mode) == 0o711
        assert stat.S_IMODE(parent.stat().st_mode) == 0o711
    finally:
        stopped = embedded.stop(home)
        shutil.rmtree(parent, ignore_errors=True)
    assert stopped
    assert not socket_dir.exists()
