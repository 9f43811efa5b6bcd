"""The embedded PostgreSQL: the server binaries of the ``pgserver`` wheel, started by mdq itself.

pgserver ships ``initdb`` and ``postgres``; mdq runs them directly with argument lists
(``subprocess``, never a shell), because pgserver's own start-up was unsafe as root and shared
(issue 16): it ran ``pg_ctl`` (which passes the data directory through ``/bin/sh``, so an
``MDQ_HOME`` holding ``$(...)`` ran the command and one holding a space could not start),
chmod-ed every parent of the data directory o+rx, put the socket of a long path in a
world-writable directory, and allowed ``trust`` logins to anyone who reached it.

What this module guarantees:

- **One server per MDQ_HOME**, data in ``<MDQ_HOME>/pgdata``; two homes never share data.
- **Socket only, private**: no TCP listener; the Unix socket lives in a fresh ``0700``
  directory ``/tmp/mdq-XXXXXXXX`` (short, whatever the length of MDQ_HOME) owned by the
  server's OS user. Nobody else can even reach it.
- **No trust authentication**: ``pg_hba.conf`` allows only ``peer`` logins over the socket,
  mapped (``pg_ident.conf``) from the OS user that owns the home (and the server's own OS
  user) to the role ``postgres``; everything else is rejected. Homes made by older versions
  (pgserver's ``trust``) are rewritten at the next start, or reloaded when running.
- **Shared and serialised**: commands that use the server take a shared lock on
  ``<MDQ_HOME>/.server.users`` for as long as they use it; starting and stopping take an
  exclusive lock on ``<MDQ_HOME>/.server.lock``. Concurrent commands on a stopped home start
  it once and all use it.
- **Lifetime**: the server is stopped when its **last user leaves**, unless ``mdq db start``
  (or ``mdq db env``) pinned it (``<MDQ_HOME>/.server.keep``); ``mdq db stop`` unpins and
  stops it. A command killed by SIGKILL releases its locks with its process (flock).
- **As root** (CI, containers): PostgreSQL refuses to run as root. A new home's server runs in
  a user namespace (``unshare --user``) where root is mapped to the OS user ``pgserver``, so its
  files stay root's and MDQ_HOME may be under ``/root``. A home whose data belongs to
  ``pgserver`` (made by pgserver), or any new home where user namespaces are denied or
  ``MDQ_EMBEDDED_USER_NAMESPACE=false``, runs as the OS user ``pgserver`` (created with
  ``useradd`` when missing, as pgserver did); MDQ_HOME is then made ``0711`` so that user can
  traverse it. mdq never changes the permissions of MDQ_HOME's parents: when that user cannot
  reach the data directory or the binaries, start-up fails with one line saying so (pick an
  MDQ_HOME under a directory others may traverse, e.g. ``/var/lib/mdq``, or set
  ``MDQ_DATABASE_URL``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import importlib.util
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mdq.exceptions import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

#: Name of the database the project uses inside the embedded server.
EMBEDDED_DBNAME = "mdq"
#: The OS user the server runs as when mdq runs as root (pgserver's choice, kept for old homes).
ROOT_SERVER_USER = "pgserver"
#: Where the private socket directories are made: short, so that any MDQ_HOME works (a Unix
#: socket path is limited to 107 bytes).
SOCKET_PARENT = Path("/tmp")
#: Seconds to wait for another command holding the start/stop lock, and for start-up.
LOCK_TIMEOUT_SECONDS = 180
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60

_HBA = """\
# Written by mdq (mdq/embedded.py) at every start; edits are overwritten.
# Only peer logins over the private Unix socket, for the OS users mapped in pg_ident.conf
# (the owner of MDQ_HOME). No TCP listener, no trust, no password.
local all all peer map=mdq
"""


def pgdata_dir(home: Path) -> Path:
    """Return the embedded server's data directory for a given MDQ_HOME (absolute path)."""
    return (home / "pgdata").expanduser().resolve()


def _bin(name: str) -> str:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError("(pgserver)", "the pgserver package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


@dataclass(frozen=True)
class _ServerUser:
    """How the postmaster runs: as this process's user, as another OS user (``uid``), or
    (root) in a user namespace mapping root to ``uid`` (``namespace``).

    Attributes:
        name: the OS user name the server sees itself as (and peer logins arrive as).
        uid, gid: the OS user to switch to, or to map root to; None: this process's own.
        namespace: run under ``unshare --user`` with root mapped to uid/gid: PostgreSQL does
            not see root, yet its files stay root's (so MDQ_HOME may sit under ``/root``).
    """

    name: str
    uid: int | None = None
    gid: int | None = None
    namespace: bool = False

    def command(self, args: list[str]) -> list[str]:
        if not self.namespace:
            return args
        return [
            "unshare", "--user", f"--map-user={self.uid}", f"--map-group={self.gid}", "--", *args
        ]  # fmt: skip

    def run_kwargs(self) -> dict[str, object]:
        if self.uid is None or self.namespace:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None and not self.namespace:
            os.chown(path, self.uid, self.gid)

    @property
    def file_owner(self) -> int:
        """The uid that owns the server's files and socket directory."""
        return self.uid if self.uid is not None and not self.namespace else os.geteuid()


def _client_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        raise EmbeddedDatabaseError(
            "(MDQ_HOME)", f"the OS user id {os.geteuid()} has no name (no passwd entry)"
        ) from None


@functools.cache
def _userns_available() -> bool:
    """True when ``unshare --user`` works here (not in every container: seccomp may deny it)."""
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--", "true"],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _server_user(home: Path, user_namespace: bool = True) -> _ServerUser:
    """How to run the server of ``home`` (see :class:`_ServerUser`).

    Not root: as this user. Root: PostgreSQL refuses to run as root; a home whose data belongs
    to the OS user ``pgserver`` (made by pgserver or by this fallback) runs as that user; any
    other home runs in a user namespace where root is mapped to ``pgserver``'s uid, or, where
    user namespaces are denied or ``user_namespace`` is False (``MDQ_EMBEDDED_USER_NAMESPACE``),
    as ``pgserver`` (which then must be able to reach MDQ_HOME).
    """
    if os.geteuid() != 0:
        return _ServerUser(_client_user())
    try:
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", ROOT_SERVER_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode not in (0, 9):  # 9: exists (a concurrent start made it)
            raise EmbeddedDatabaseError(
                "(MDQ_HOME)",
                f"running as root needs an OS user {ROOT_SERVER_USER!r} for PostgreSQL; "
                f"useradd failed: {(done.stderr or '').strip()[:200]}",
            ) from None
        entry = pwd.getpwnam(ROOT_SERVER_USER)
    pgdata = pgdata_dir(home)
    try:
        owner: int | None = pgdata.stat().st_uid
    except OSError:
        owner = None
    if owner == entry.pw_uid or (owner is None and not (user_namespace and _userns_available())):
        return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, namespace=True)


# -- locks ---------------------------------------------------------------------------------------


def _open_lock(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "r+b")


def _flock(handle: IO[bytes], mode: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() > deadline:
            raise EmbeddedDatabaseError(
                what, f"another mdq command held the server lock for over {timeout:.0f} s"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    handle = _open_lock(home / ".server.lock")
    try:
        _flock(handle, fcntl.LOCK_EX, str(pgdata_dir(home)), LOCK_TIMEOUT_SECONDS)
        yield
    finally:
        handle.close()


# -- the running server --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path | None
    status: str


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    """The live postmaster of ``pgdata`` per ``postmaster.pid``, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    socket = lines[4].strip() if len(lines) > 4 else ""
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid, Path(socket) if socket else None, status)


def _socket_ok(postmaster: _Postmaster | None, user: _ServerUser) -> bool:
    """True when the server is ready and its socket directory is private (0700, its user's)."""
    if postmaster is None or postmaster.status != "ready" or postmaster.socket_dir is None:
        return False
    try:
        info = postmaster.socket_dir.stat()
    except OSError:
        return False
    return (
        info.st_mode & 0o077 == 0
        and info.st_uid == user.file_owner
        and (postmaster.socket_dir / ".s.PGSQL.5432").exists()
    )


def is_running(home: Path) -> bool:
    """True when the embedded server of ``home`` is running."""
    pgdata = pgdata_dir(home)
    postmaster = _read_postmaster(pgdata) if pgdata.exists() else None
    return postmaster is not None and postmaster.status == "ready"


# -- start ---------------------------------------------------------------------------------------


def _make_home(home: Path, user: _ServerUser) -> None:
    """Create MDQ_HOME (only its missing parts; existing parents are never changed)."""
    if not home.exists():
        home.mkdir(parents=True, exist_ok=True)
        # the owner only; as root the server's user must also traverse it to reach pgdata
        home.chmod(0o711 if user.uid is not None and not user.namespace else 0o700)


def _write_auth(pgdata: Path, user: _ServerUser) -> bool:
    """Write pg_hba.conf and pg_ident.conf; True when they changed."""
    owners = sorted({_client_user(), user.name})
    ident = (
        "# Written by mdq (mdq/embedded.py): OS users allowed to log in as postgres.\n"
        + "".join(f"mdq {name} postgres\n" for name in owners)
    )
    changed = False
    for name, text in (("pg_hba.conf", _HBA), ("pg_ident.conf", ident)):
        path = pgdata / name
        try:
            current = path.read_text()
        except OSError:
            current = None
        if current != text:
            path.write_text(text)
            path.chmod(0o600)
            user.chown(path)
            changed = True
    return changed


def _initdb(pgdata: Path, user: _ServerUser) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    pgdata.chmod(0o700)
    user.chown(pgdata)
    done = subprocess.run(
        user.command([_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--encoding=UTF8",
                      "--auth-local=peer", "--auth-host=reject", "--no-instructions"]),
        capture_output=True, text=True, cwd="/", check=False, **user.run_kwargs(),  # type: ignore[call-overload]
    )  # fmt: skip
    if done.returncode != 0:
        raise EmbeddedDatabaseError(str(pgdata), "initdb failed: " + _why(done.stderr, user))


def _why(output: str, user: _ServerUser) -> str:
    """The telling line of initdb/postgres output, plus the root hint when it is a permission."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    telling = [ln for ln in lines if any(w in ln for w in ("FATAL", "error", "denied"))]
    line = (telling or lines or ["no output"])[-1][:300]
    if user.uid is not None and not user.namespace and "ermission denied" in line:
        line += (
            f" (as root the server runs as OS user {user.name!r}, which must be able to reach "
            "MDQ_HOME and the pgserver binaries; mdq does not change the permissions of "
            "MDQ_HOME's parents: use an MDQ_HOME under a directory others may traverse, e.g. "
            "/var/lib/mdq, or set MDQ_DATABASE_URL)"
        )
    return line


def _launch(pgdata: Path, user: _ServerUser) -> Path:
    """Start the postmaster on a fresh private socket directory; return that directory."""
    SOCKET_PARENT.mkdir(exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="mdq-", dir=SOCKET_PARENT))  # 0700
    user.chown(socket_dir)
    log_path = pgdata / "log"
    with open(log_path, "ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            user.command([_bin("postgres"), "-D", str(pgdata),
                          "-c", "listen_addresses=",
                          "-c", f"unix_socket_directories={socket_dir}",
                          "-c", "unix_socket_permissions=0700"]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/",
            start_new_session=True, **user.run_kwargs(),  # type: ignore[call-overload]
        )  # fmt: skip
    # reap it when it exits while this process lives (else a zombie looks alive)
    threading.Thread(target=process.wait, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        postmaster = _read_postmaster(pgdata)
        if (
            postmaster is not None
            and postmaster.pid == process.pid
            and postmaster.status == "ready"
            and (socket_dir / ".s.PGSQL.5432").exists()
        ):
            return socket_dir
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        socket_dir.rmdir()
    try:
        with open(log_path, "rb") as log:
            log.seek(log_start)
            output = log.read().decode(errors="replace")
    except OSError:
        output = ""
    if process.poll() is None:
        process.kill()
    raise EmbeddedDatabaseError(str(pgdata), "PostgreSQL did not start: " + _why(output, user))


def start(home: Path, *, user_namespace: bool = True) -> tuple[str, bool]:
    """Start (or reuse) the embedded server of ``home`` and make sure database ``mdq`` exists.

    Serialised across processes by ``<home>/.server.lock``: concurrent calls on a stopped home
    start it once. This call does not register a user (see :func:`session`): a server started
    here is stopped by the next last user leaving, by :func:`stop`, or never.

    Args:
        home: MDQ_HOME; created if missing (its existing parents are never modified).
        user_namespace: as root, whether a new home's server may run in a user namespace
            (the default); False runs it as the OS user ``pgserver`` (setting
            ``MDQ_EMBEDDED_USER_NAMESPACE``). Ignored for an existing home and when not root.

    Returns:
        (socket directory to use as libpq ``host``, True if this call started the server).

    Raises:
        EmbeddedDatabaseError: the server could not be initialised or started (one line).
    """
    home = home.expanduser().resolve()
    pgdata = pgdata_dir(home)
    user = _server_user(home, user_namespace)
    try:
        _make_home(home, user)
        with _start_lock(home):
            postmaster = _read_postmaster(pgdata) if pgdata.exists() else None
            if _socket_ok(postmaster, user):
                assert postmaster is not None and postmaster.socket_dir is not None
                if _write_auth(pgdata, user):  # a home made by an older version: reload
                    os.kill(postmaster.pid, signal.SIGHUP)
                    time.sleep(0.2)
                socket_dir, started = postmaster.socket_dir, False
            else:
                if postmaster is not None:
                    # running on a socket that is not private (an older version): restart it
                    logger.warning("restarting embedded PostgreSQL on a private socket")
                    _stop_postmaster(pgdata, postmaster)
                if not (pgdata / "PG_VERSION").exists():
                    _initdb(pgdata, user)
                _write_auth(pgdata, user)
                socket_dir, started = _launch(pgdata, user), True
            _ensure_database(str(socket_dir))
    except OSError as exc:
        raise EmbeddedDatabaseError(str(pgdata), f"{exc.strerror or exc}") from None
    if started:
        logger.info("started embedded PostgreSQL in %s", pgdata)
    return str(socket_dir), started


def _ensure_database(socket_dir: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(
            host=socket_dir, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (EMBEDDED_DBNAME,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(EMBEDDED_DBNAME)))
    except psycopg.errors.DuplicateDatabase:
        pass  # another process created it meanwhile
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise EmbeddedDatabaseError(socket_dir, f"cannot create database mdq: {first}") from None


# -- users and stop ------------------------------------------------------------------------------


@contextlib.contextmanager
def session(
    home: Path, *, keep_running: bool = False, user_namespace: bool = True
) -> Iterator[str]:
    """Use the embedded server of ``home`` for the duration: start it if needed, and stop it
    on exit when this was its last user and nobody pinned it.

    Args:
        home: MDQ_HOME.
        keep_running: pin the server (``mdq db start``): no user's exit stops it.
        user_namespace: as :func:`start`.

    Yields:
        The socket directory (libpq ``host``).

    Raises:
        EmbeddedDatabaseError: the server could not start, or a lock was held too long.
    """
    home = home.expanduser().resolve()
    _make_home(home, _server_user(home, user_namespace))
    handle = _open_lock(home / ".server.users")
    try:
        # shared: many users at once; blocks only while a last user is stopping the server
        _flock(handle, fcntl.LOCK_SH, str(pgdata_dir(home)), LOCK_TIMEOUT_SECONDS)
        socket_dir, _ = start(home, user_namespace=user_namespace)
        if keep_running:
            (home / ".server.keep").touch()
        yield socket_dir
    finally:
        try:
            fcntl.flock(handle, fcntl.LOCK_UN)
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            last = True
        except OSError:
            last = False  # another user holds it
        try:
            if last and not (home / ".server.keep").exists():
                stop(home, unpin=False)
        finally:
            handle.close()


def _stop_postmaster(pgdata: Path, postmaster: _Postmaster) -> None:
    """Fast shutdown (SIGINT; open sessions are disconnected), SIGQUIT after the timeout."""
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_SECONDS), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _read_postmaster(pgdata) is None:
                if postmaster.socket_dir is not None and postmaster.socket_dir.name.startswith(
                    "mdq-"
                ):
                    with contextlib.suppress(OSError):
                        postmaster.socket_dir.rmdir()
                return
            time.sleep(0.05)
    raise EmbeddedDatabaseError(str(pgdata), f"server pid {postmaster.pid} did not stop")


def stop(home: Path, *, unpin: bool = True) -> bool:
    """Stop the embedded server of ``home`` (fast shutdown: open sessions are disconnected).

    Args:
        home: MDQ_HOME.
        unpin: also remove the pin of ``mdq db start`` (the explicit ``mdq db stop``).

    Returns:
        True if a running server was stopped, False if none was running.

    Raises:
        EmbeddedDatabaseError: it did not stop.
    """
    home = home.expanduser().resolve()
    pgdata = pgdata_dir(home)
    if unpin:
        with contextlib.suppress(FileNotFoundError):
            (home / ".server.keep").unlink()
    if not pgdata.exists():
        return False
    with _start_lock(home):
        postmaster = _read_postmaster(pgdata)
        if postmaster is None:
            return False
        _stop_postmaster(pgdata, postmaster)
    logger.info("stopped embedded PostgreSQL in %s", pgdata)
    return True
