"""Database access: connections, and (in submodules) all of the project's SQL.

Values always travel as ``%s`` parameters and identifiers through ``psycopg.sql.Identifier``;
no SQL is built by pasting input strings. Driver errors are translated here into
:mod:`mdq.exceptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from mdq.config import Settings
from mdq.exceptions import DatabaseUnreachable, SettingsError

#: libpq connection parameters a URL may carry besides host, port, user, password and dbname,
#: and the libpq environment variable that hands each on to dbt's profile (dbt-postgres passes
#: only a few parameters itself; libpq reads the rest from these variables). A parameter with
#: no such variable is refused rather than silently dropped.
LIBPQ_ENV: dict[str, str] = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcertmode": "PGSSLCERTMODE",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "krbsrvname": "PGKRBSRVNAME",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "hostaddr": "PGHOSTADDR",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


@dataclass(frozen=True)
class Database:
    """Where the project's PostgreSQL is, in libpq terms.

    The password is a :class:`pydantic.SecretStr`: its ``repr``, and the JSON Prefect stores
    for a flow run's parameters, show ``**********`` (a plain ``str`` given here is wrapped).

    Attributes:
        host: host name, IP address, or a Unix socket directory (starts with ``/``).
        port: TCP port (also names the socket file).
        user: role name.
        password: password (SecretStr; empty for none).
        dbname: database name.
        embedded_home: MDQ_HOME of the embedded server, or None for an external one.
        params: every other libpq parameter of the URL (``sslmode``, ``sslrootcert``,
            ``options``, ...; keys of :data:`LIBPQ_ENV`), as sorted (name, value) pairs.
    """

    host: str
    port: int
    user: str
    password: SecretStr
    dbname: str
    embedded_home: Path | None = None
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.password, SecretStr):
            object.__setattr__(self, "password", SecretStr(str(self.password or "")))

    @property
    def secret(self) -> str:
        """The password in clear (for libpq only; never log it)."""
        return self.password.get_secret_value()

    @property
    def target(self) -> str:
        """``host:port/dbname``, safe to print (no password)."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def conninfo(self) -> dict[str, str | int]:
        """Keyword arguments for :func:`psycopg.connect` (without a timeout): every parameter
        of the URL, ``sslmode`` and the others included."""
        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            **dict(self.params),
        }
        if self.secret:
            params["password"] = self.secret
        return params

    def url(self) -> str:
        """A ``postgresql://`` URL for this database, with its password and parameters."""
        from urllib.parse import quote, urlencode

        auth = quote(self.user, safe="")
        if self.secret:
            auth += ":" + quote(self.secret, safe="")
        query = dict(self.params)
        if self.host.startswith("/"):
            query = {"host": self.host, "port": str(self.port), **query}
            return f"postgresql://{auth}@/{self.dbname}?{urlencode(query, quote_via=quote)}"
        tail = f"?{urlencode(query, quote_via=quote)}" if query else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}{tail}"

    def dbt_env(self, schema: str) -> dict[str, str]:
        """The environment variables that ``profiles.yml`` reads, for this database, plus the
        libpq variables (:data:`LIBPQ_ENV`) of the URL's other parameters.

        Args:
            schema: the schema dbt builds into (``MDQ_DBT_SCHEMA``).
        """
        env = {
            "MDQ_PGHOST": self.host,
            "MDQ_PGPORT": str(self.port),
            "MDQ_PGUSER": self.user,
            "MDQ_PGPASSWORD": self.secret,
            "MDQ_PGDATABASE": self.dbname,
            "MDQ_DBT_SCHEMA": schema,
        }
        env.update({LIBPQ_ENV[name]: value for name, value in self.params})
        return env

    def with_dbname(self, dbname: str) -> Database:
        """The same server, another database."""
        return replace(self, dbname=dbname)


def _authority(url: str) -> str:
    """The ``user:password@host:port`` part of a URL (between ``://`` and the path)."""
    rest = url.split("://", 1)[-1]
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    return rest


def parse_url(url: str) -> Database:
    """Parse a PostgreSQL URL into a :class:`Database`, keeping every libpq parameter.

    Error messages never quote the URL or any part of it (it may hold a password).

    Raises:
        SettingsError: the URL cannot be parsed, names no database, has an unencoded ``@``
            (or ``/``, ``?``, ``#``) in its password, or a parameter mdq cannot pass on to
            dbt (not in :data:`LIBPQ_ENV`).
    """
    if url.split("://", 1)[-1].count("@") > 1 and _authority(url).count("@") != 1:
        raise SettingsError(
            "MDQ_DATABASE_URL",
            "has more than one '@' before the host; percent-encode '@' in the user or "
            "password as %40 (and '/' as %2F, '?' as %3F, '#' as %23)",
        )
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise SettingsError(
            "MDQ_DATABASE_URL",
            "is not a valid PostgreSQL URL (percent-encode special characters of the "
            "password: @ as %40, / as %2F, ? as %3F, # as %23)",
        ) from None
    if not parts.get("dbname"):
        raise SettingsError(
            "MDQ_DATABASE_URL", "names no database (expected postgresql://user@host:port/dbname)"
        )
    try:
        port = int(parts.get("port") or 5432)
    except ValueError:
        raise SettingsError("MDQ_DATABASE_URL", "has a port that is not a number") from None
    core = {"host", "port", "user", "password", "dbname"}
    extra = {str(k): str(v) for k, v in parts.items() if k not in core and v is not None}
    unknown = sorted(set(extra) - set(LIBPQ_ENV))
    if unknown:
        raise SettingsError(
            "MDQ_DATABASE_URL",
            f"parameter(s) {', '.join(unknown)} cannot be handed on to dbt (no libpq "
            "environment variable); remove them, or put them in a libpq service file and "
            "use service=NAME",
        )
    return Database(
        host=str(parts.get("host") or "localhost"),
        port=port,
        user=str(parts.get("user") or "postgres"),
        password=SecretStr(str(parts.get("password") or "")),
        dbname=str(parts["dbname"]),
        params=tuple(sorted(extra.items())),
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
    with embedded.session(
        settings.home,
        keep_running=keep_running,
        user_namespace=settings.embedded_user_namespace,
    ) as socket_dir:
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

#: Every (symbol, timeframe) of ``market_data`` by a loose index scan of its unique key
#: (symbol, timeframe, ts): one index descent per series instead of reading every candle
#: (PostgreSQL has no skip scan). The body of a recursive CTE that must be named ``series``:
#: ``"with recursive series as (" + SERIES_LOOSE_SCAN + "), ..."``. Rows (symbol, timeframe).
SERIES_LOOSE_SCAN = """
    (
        select m.symbol, m.timeframe
        from market_data as m
        order by m.symbol, m.timeframe
        limit 1
    )
    union all
    select following.symbol, following.timeframe
    from series
    cross join lateral (
        select m.symbol, m.timeframe
        from market_data as m
        where (m.symbol, m.timeframe) > (series.symbol, series.timeframe)
        order by m.symbol, m.timeframe
        limit 1
    ) as following
"""

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
