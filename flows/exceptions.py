"""The project's error hierarchy.

Every error is either transient (worth retrying: network, timeouts, a busy server) or terminal
(bad configuration, bad data). Retry policies test :attr:`MdqError.transient`, never the message.
Subclasses keep their inputs as attributes so callers can act on them.
"""

from __future__ import annotations


class MdqError(Exception):
    """Base class of every error this project raises on purpose.

    Attributes:
        transient: True when retrying the same call may succeed.
    """

    transient: bool = False


class TransientError(MdqError):
    """An I/O failure that may succeed on retry (timeout, connection reset, rate limit)."""

    transient = True


class TerminalError(MdqError):
    """A failure that retrying will not fix (bad configuration, bad data, a bug)."""

    transient = False


class SettingsError(TerminalError):
    """A setting has a value the project cannot use.

    Attributes:
        name: the environment variable, e.g. ``MDQ_DATABASE_URL``.
        reason: why the value is unusable (never the value itself: it may hold a password).
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class DatabaseUnreachable(TransientError):
    """PostgreSQL could not be reached or refused the connection.

    Attributes:
        target: ``host:port/dbname`` (no password).
        reason: the first line of the driver's message.
    """

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot connect to PostgreSQL at {target}: {reason}")


class EmbeddedDatabaseError(TerminalError):
    """The embedded PostgreSQL (pgserver) could not be started or stopped.

    Attributes:
        pgdata: the data directory.
        reason: what went wrong.
    """

    def __init__(self, pgdata: str, reason: str) -> None:
        self.pgdata = pgdata
        self.reason = reason
        super().__init__(f"embedded PostgreSQL in {pgdata}: {reason}")


class MigrationError(TerminalError):
    """A schema migration failed; its transaction was rolled back.

    Attributes:
        version: the migration number, e.g. 2.
        name: the migration file name.
        reason: the database's message.
    """

    def __init__(self, version: int, name: str, reason: str) -> None:
        self.version = version
        self.name = name
        self.reason = reason
        super().__init__(f"migration {version:03d} ({name}) failed: {reason}")


class DuplicateKeysBlockMigration(MigrationError):
    """An adopted ``market_data`` has duplicate (symbol, timeframe, ts) keys, so its unique key
    cannot be created. Nothing was deleted.

    Attributes:
        duplicate_keys: how many keys occur more than once.
        excess_rows: how many rows would have to go for each key to occur once.
    """

    def __init__(self, version: int, name: str, duplicate_keys: int, excess_rows: int) -> None:
        self.duplicate_keys = duplicate_keys
        self.excess_rows = excess_rows
        super().__init__(
            version,
            name,
            f"market_data has {duplicate_keys} duplicated (symbol, timeframe, ts) keys "
            f"({excess_rows} extra rows), so the unique key cannot be created; nothing was "
            "deleted. Preview them with `mdq dedupe`, remove them with `mdq dedupe --apply` "
            "(every removed row is logged and can be restored), then run again.",
        )


class UnknownCalendar(TerminalError):
    """A trading calendar code that the project cannot build sessions for.

    Attributes:
        calendar: the code, e.g. ``XNYZ``.
    """

    def __init__(self, calendar: str) -> None:
        self.calendar = calendar
        super().__init__(
            f"calendar {calendar!r} not supported; expected '24/7', 'FX' or an "
            "exchange_calendars code such as XNYS, XLON, XTKS"
        )
