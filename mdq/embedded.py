"""The embedded PostgreSQL: a real server from the ``pgserver`` wheel, no system install.

Its data directory is ``<MDQ_HOME>/pgdata``; each MDQ_HOME is its own server, so two homes never
share data. The server listens on a Unix socket only (no TCP port), in the data directory or,
when that path is too long for a socket, in a short directory under the XDG runtime dir.
As root, pgserver runs the server as an OS user ``pgserver`` that it creates.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from mdq.exceptions import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

#: Name of the database the project uses inside the embedded server.
EMBEDDED_DBNAME = "mdq"


def pgdata_dir(home: Path) -> Path:
    """Return the embedded server's data directory for a given MDQ_HOME (absolute path)."""
    return (home / "pgdata").expanduser().resolve()


def _running_socket(pgdata: Path) -> Path | None:
    """Return the socket directory of a server running on ``pgdata``, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return Path(info.socket_dir)


def is_running(home: Path) -> bool:
    """True when the embedded server of ``home`` is running."""
    pgdata = pgdata_dir(home)
    return pgdata.exists() and _running_socket(pgdata) is not None


def start(home: Path) -> tuple[str, bool]:
    """Start (or reuse) the embedded server of ``home`` and make sure database ``mdq`` exists.

    Args:
        home: MDQ_HOME; created if missing.

    Returns:
        (socket directory to use as libpq ``host``, True if this call started the server).

    Raises:
        EmbeddedDatabaseError: the server could not be initialised or started.
    """
    pgdata = pgdata_dir(home)
    already = pgdata.exists() and _running_socket(pgdata) is not None
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver.postgres_server import PostgresServer

            if not already:
                # pgserver caches one handle per pgdata per process, even after the server
                # stopped; drop a stale one so that the server is really started again.
                PostgresServer._instances.pop(pgdata, None)
            # cleanup_mode=None: pgserver must not stop it at interpreter exit; we decide.
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        socket_dir = server.get_postmaster_info().socket_dir
    except Exception as exc:  # pgserver raises bare subprocess/OS errors; translate them here
        raise EmbeddedDatabaseError(str(pgdata), f"{type(exc).__name__}: {exc}") from exc
    if socket_dir is None:
        raise EmbeddedDatabaseError(str(pgdata), "server started without a socket directory")
    _ensure_database(str(socket_dir))
    if not already:
        logger.info("started embedded PostgreSQL in %s", pgdata)
    return str(socket_dir), not already


def _ensure_database(socket_dir: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (EMBEDDED_DBNAME,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(EMBEDDED_DBNAME)))


def stop(home: Path) -> bool:
    """Stop the embedded server of ``home`` (fast shutdown: open sessions are disconnected).

    Returns:
        True if a running server was stopped, False if none was running.

    Raises:
        EmbeddedDatabaseError: pg_ctl failed to stop it.
    """
    pgdata = pgdata_dir(home)
    if not pgdata.exists() or _running_socket(pgdata) is None:
        return False
    import os

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    except Exception as exc:
        raise EmbeddedDatabaseError(str(pgdata), f"could not stop: {exc}") from exc
    logger.info("stopped embedded PostgreSQL in %s", pgdata)
    return True
