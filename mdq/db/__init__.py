"""Database access: connections, and (in submodules) all of the project's SQL.

Values always travel as ``%s`` parameters and identifiers through ``psycopg.sql.Identifier``;
no SQL is built by pasting input strings. Driver errors are translated here into
:mod:`mdq.exceptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from mdq.config import Settings
from mdq.exceptions import DatabaseUnreachable, SettingsError


@dataclass(frozen=True)
class Database:
    """Where the project's PostgreSQL is, in libpq terms.

    Attributes:
        host: host name, IP address, or a Unix socket directory (starts with ``/``).
        port: TCP port (also names the socket file).
        user: role name.
        password: password, or "" for none.
        dbname: database name.
        embedded_home: MDQ_HOME of the embedded server, or None for an external one.
    """

    host: str
    port: int
    user: str
    password: str
    dbname: str
    embedded_home: Path | None = None

    @property
    def target(self) -> str:
        """``host:port/dbname``, safe to print (no password)."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def conninfo(self) -> dict[str, str | int]:
        """Keyword arguments for :func:`psycopg.connect` (without a timeout)."""
        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
        }
        if self.password:
            params["password"] = self.password
        return params

    def url(self) -> str:
        """A ``postgresql://`` URL for this database (the socket directory as ``host=``)."""
        from urllib.parse import quote

        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{self.dbname}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    def dbt_env(self, schema: str) -> dict[str, str]:
        """The environment variables that ``profiles.yml`` reads, for this database.

        Args:
            schema: the schema dbt builds into (``MDQ_DBT_SCHEMA``).
        """
        return {
            "MDQ_PGHOST": self.host,
            "MDQ_PGPORT": str(self.port),
            "MDQ_PGUSER": self.user,
            "MDQ_PGPASSWORD": self.password,
            "MDQ_PGDATABASE": self.dbname,
            "MDQ_DBT_SCHEMA": schema,
        }

    def with_dbname(self, dbname: str) -> Database:
        """The same server, another database."""
        return Database(self.host, self.port, self.user, self.password, dbname, self.embedded_home)


def parse_url(url: str) -> Database:
    """Parse a PostgreSQL URL into a :class:`Database`.

    Raises:
        SettingsError: the URL cannot be parsed or names no database.
    """
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise SettingsError("MDQ_DATABASE_URL", "is not a valid PostgreSQL URL") from None
    if not parts.get("dbname"):
        raise SettingsError(
            "MDQ_DATABASE_URL", "names no database (expected postgresql://user@host:port/dbname)"
        )
    try:
        port = int(parts.get("port") or 5432)
    except ValueError:
        raise SettingsError("MDQ_DATABASE_URL", "has a port that is not a number") from None
    return Database(
        host=str(parts.get("host") or "localhost"),
        port=port,
        user=str(parts.get("user") or "postgres"),
        password=str(parts.get("password") or ""),
        dbname=str(parts["dbname"]),
    )


@contextlib.contextmanager
def open_database(settings: Settings, *, keep_running: bool = False) -> Iterator[Database]:
    """Resolve the project's database: ``MDQ_DATABASE_URL``, else the embedded server.

    The embedded server is shared (:func:`mdq.embedded.session`): started if needed, and
    stopped on exit only when this was its last user and nobody pinned it (``keep_running``,
    as ``mdq db start`` does).

    Args:
        settings: the project settings.
        keep_running: leave an embedded server running on exit.

    Yields:
        The database to connect to; it has been checked to accept a connection.

    Raises:
        SettingsError: MDQ_DATABASE_URL is malformed.
        DatabaseUnreachable: the server does not accept connections.
        EmbeddedDatabaseError: the embedded server could not start.
    """
    from mdq import embedded

    if settings.database_url is not None:
        database = parse_url(settings.database_url.get_secret_value())
        check_connection(database, settings.connect_timeout)
        yield database
        return
    with embedded.session(settings.home, keep_running=keep_running) as socket_dir:
        yield Database(
            host=socket_dir,
            port=5432,
            user="postgres",
            password="",
            dbname=embedded.EMBEDDED_DBNAME,
            embedded_home=settings.home,
        )


def connect(
    database: Database, *, timeout: int = 10, autocommit: bool = False
) -> psycopg.Connection:
    """Open a connection (use it as a context manager: commits or rolls back, then closes).

    Raises:
        DatabaseUnreachable: the server refused or did not answer within ``timeout`` seconds.
    """
    try:
        return psycopg.connect(
            **database.conninfo(), connect_timeout=timeout, autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        # libpq: 'connection failed: connection to server at "h", port p failed: <cause>'
        # then a tab-indented hint line; the cause is what the user needs.
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        reason = first.rsplit("failed: ", 1)[-1].strip() or first
        raise DatabaseUnreachable(database.target, reason) from None


#: Oldest PostgreSQL major version the project supports (server_version_num).
MIN_SERVER_VERSION = 140000


def check_connection(database: Database, timeout: int = 10) -> None:
    """Open and close one connection, and check the server is PostgreSQL >= 14.

    Raises:
        DatabaseUnreachable: as :func:`connect`.
        SettingsError: the server is older than PostgreSQL 14.
    """
    with connect(database, timeout=timeout, autocommit=True) as conn:
        version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise SettingsError(
            "MDQ_DATABASE_URL",
            f"PostgreSQL {version // 10000} at {database.target} is too old (14 or newer needed)",
        )
