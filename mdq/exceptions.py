"""The project's error hierarchy.

Every error is either transient (worth retrying: network, timeouts, a busy server) or terminal
(bad configuration, bad data). Retry policies test :attr:`MdqError.transient`, never the message.
Subclasses keep their inputs as attributes so callers can act on them.
"""

from __future__ import annotations

from typing import Any


class MdqError(Exception):
    """Base class of every error this project raises on purpose.

    Attributes:
        transient: True when retrying the same call may succeed.
    """

    transient: bool = False


def is_transient(exc: BaseException) -> bool:
    """True when retrying the call that raised ``exc`` may succeed.

    The project's errors say so themselves (:attr:`MdqError.transient`); of the others, only a
    connection reset or refused (``ConnectionError``) and a timeout (``TimeoutError``) are
    transient. Retry policies (the backfill task's ``retry_condition_fn``) call this, never
    the message text.
    """
    if isinstance(exc, MdqError):
        return exc.transient
    return isinstance(exc, ConnectionError | TimeoutError)


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


class UnsupportedTimeframe(TerminalError):
    """A timeframe string the project does not know.

    Attributes:
        value: the rejected string.
        accepted: the timeframes that are accepted.
    """

    def __init__(self, value: str, accepted: tuple[str, ...]) -> None:
        self.value = value
        self.accepted = accepted
        super().__init__(
            f"timeframe {value!r} not supported; expected one of {', '.join(accepted)}"
        )


class InvalidWindow(TerminalError):
    """A backfill window that cannot be used (naive bounds, end not after start, ...).

    Attributes:
        reason: what is wrong with it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid backfill window: {reason}")


class ProviderError(TransientError):
    """A provider could not answer (I/O failure, timeout); retrying may succeed.

    Attributes:
        provider: the provider name.
        reason: what went wrong.
    """

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"provider {provider}: {reason}")


class SeriesFailed(MdqError):
    """One (symbol, timeframe) backfill ended ``failed``; raised by the flow's task so that
    Prefect marks the task Failed (and retries it when the cause is transient).

    The failure is already recorded (state row, quarantine, failure streak) when this is raised.

    Attributes:
        symbol: the symbol.
        timeframe: the timeframe.
        reason: why it failed (the state row's ``error_message``).
        transient: True when the cause was transient (retrying may succeed).
        result: the :class:`mdq.backfill_core.SeriesResult` of the failed attempt.
    """

    def __init__(self, result: Any) -> None:
        self.symbol = result.symbol
        self.timeframe = result.timeframe
        self.reason = result.error or "failed"
        self.transient = bool(result.transient)
        self.result = result
        super().__init__(f"{self.symbol}/{self.timeframe}: {self.reason}")


class ProviderConfigError(TerminalError):
    """A provider is misconfigured (missing file, bad column mapping, unknown option).

    Attributes:
        provider: the provider name.
        reason: what is wrong, naming the bad value and the accepted ones.
    """

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"provider {provider}: {reason}")


class LeaseLost(TerminalError):
    """A backfill's claim on its (symbol, timeframe) was taken over (its lease had expired), so
    it must stop writing.

    Attributes:
        execution_id: the execution that lost its claim.
    """

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"backfill {execution_id} lost its lease (taken over by another backfill); stopped"
        )


class DbtExpectationsUnavailable(TerminalError):
    """``MDQ_DBT_EXPECTATIONS`` is on but the dbt package ``metaplane/dbt_expectations`` is
    not installed and could not be (no access to the dbt hub), or cannot be declared.

    Attributes:
        reason: what is missing and what to do.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            "the dbt-expectations tests are enabled (MDQ_DBT_EXPECTATIONS=1) but the package "
            f"metaplane/dbt_expectations is not installed: {reason}"
        )


class DbtRunError(TerminalError):
    """dbt could not run at all (project does not parse, profile invalid, ...); no check ran.

    Failing data tests are *not* this error: they are results.

    Attributes:
        command: the dbt command line that was invoked.
        reason: dbt's message (first lines).
    """

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"dbt {command} could not run: {reason}")


class CleanupNotFound(TerminalError):
    """``mdq dedupe --restore ID`` names a cleanup with no unrestored rows in the log.

    Attributes:
        cleanup_id: the id that was asked for.
    """

    def __init__(self, cleanup_id: str) -> None:
        self.cleanup_id = cleanup_id
        super().__init__(
            f"cleanup {cleanup_id} has no rows left to restore in duplicate_records_log "
            "(unknown id, or restored already)"
        )


class RestoreConflict(TerminalError):
    """Restoring removed duplicates would violate market_data's unique key, which was added
    after the cleanup (migration 002): some logged rows differ from the row kept for their
    key. Nothing was restored; ``mdq dedupe --swap`` keeps them instead.

    Attributes:
        cleanup_id: the cleanup being restored.
        conflicting_rows: how many logged rows differ from the kept row of their key.
    """

    def __init__(self, cleanup_id: str, conflicting_rows: int) -> None:
        self.cleanup_id = cleanup_id
        self.conflicting_rows = conflicting_rows
        super().__init__(
            f"cannot restore cleanup {cleanup_id}: market_data now has its unique "
            f"(symbol, timeframe, ts) key and {conflicting_rows} logged row(s) differ from the "
            "row kept for their key, which can hold only one; nothing was restored. Keep the "
            f"removed versions instead with: mdq dedupe --swap {cleanup_id}"
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


class UnknownSymbols(TerminalError):
    """A backfill asked by name for symbols the source does not have (no row at all, valid or
    rejected). Nothing was loaded and no failure streak was opened.

    Attributes:
        symbols: the missing symbols, sorted.
        source: what was read (file name or provider).
        available: the symbols the source has, sorted.
    """

    def __init__(self, symbols: list[str], source: str, available: list[str]) -> None:
        self.symbols = symbols
        self.source = source
        self.available = available
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        super().__init__(
            f"symbol(s) {', '.join(symbols)} not in {source}; it has: {shown or 'no symbol'}"
        )


class AccountingMismatch(TerminalError):
    """The rows a backfill read do not add up: stored + quarantined + duplicates + refused
    differs from the input rows (a loader bug: some rows were lost).

    Attributes:
        detail: the counts.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"input rows not accounted for: {detail}")


class SymbolNotAvailable(TerminalError):
    """The source does not know the symbol: delisted, renamed or misspelt. Retrying will not
    help; fix or deactivate the instrument (``mdq instruments remove``).

    Attributes:
        provider: the provider name.
        symbol: the symbol as the source spells it.
        reason: what the source said.
    """

    def __init__(self, provider: str, symbol: str, reason: str) -> None:
        self.provider = provider
        self.symbol = symbol
        self.reason = reason
        super().__init__(f"provider {provider}: symbol {symbol!r} not available: {reason}")


class ProviderRefused(TerminalError):
    """The source answered with an error that retrying will not fix (a bad request, a window
    outside what it serves, an exchange-specific refusal).

    Attributes:
        provider: the provider name.
        reason: the source's answer.
    """

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"provider {provider}: {reason}")


class AnomalyNotFound(TerminalError):
    """No row of ``data_anomalies`` has this id.

    Attributes:
        anomaly_id: the id asked for.
    """

    def __init__(self, anomaly_id: int) -> None:
        self.anomaly_id = anomaly_id
        super().__init__(f"anomaly {anomaly_id} not found; list them with: mdq anomalies")


class MuteNotFound(TerminalError):
    """No active mute rule has this id.

    Attributes:
        mute_id: the id asked for.
    """

    def __init__(self, mute_id: int) -> None:
        self.mute_id = mute_id
        super().__init__(f"no active mute rule {mute_id}; list them with: mdq anomalies mutes")


class TriageError(TerminalError):
    """An acknowledgement or mute rule that cannot be recorded as asked.

    Attributes:
        reason: what is wrong, naming the bad value.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RecordBackwards(TerminalError):
    """A recorded quality run would move the recorded state back in time.

    Attributes:
        as_of: the run's reference time.
        latest_as_of: the reference time of the latest recorded run.
    """

    def __init__(self, as_of: str, latest_as_of: str) -> None:
        self.as_of = as_of
        self.latest_as_of = latest_as_of
        super().__init__(
            f"cannot record a check as of {as_of}: the recorded state is already as of "
            f"{latest_as_of} and only moves forward; run it without --record to see its findings"
        )


class SwapRefused(TerminalError):
    """``mdq dedupe --swap`` cannot choose or place the version to keep. Nothing was changed.

    Attributes:
        cleanup_id: the cleanup or swap asked for.
        reason: why, naming the key.
    """

    def __init__(self, cleanup_id: str, reason: str) -> None:
        self.cleanup_id = cleanup_id
        self.reason = reason
        super().__init__(f"cannot swap cleanup {cleanup_id}: {reason}; nothing was changed")


class CheckAlreadyRunning(TransientError):
    """Another ``mdq check`` (or quality flow, or health refresh) holds the database's check
    lock; two at once would race on dbt's tables and on ``data_anomalies`` counters.

    Attributes:
        target: ``host:port/dbname`` of the database.
        holder: who holds it (PostgreSQL backend pid and since when), when known.
        waited: seconds this call waited.
    """

    def __init__(self, target: str, holder: str, waited: float) -> None:
        self.target = target
        self.holder = holder
        self.waited = waited
        super().__init__(
            f"another mdq check is running on {target} ({holder}); waited {waited:.0f} s. "
            "Run it again when that one has finished"
        )


class RevisionNotFound(TerminalError):
    """``mdq revisions restore ID`` names no unrestored revision (unknown, or restored already).

    Attributes:
        revision_id: the id asked for.
    """

    def __init__(self, revision_id: int) -> None:
        self.revision_id = revision_id
        super().__init__(
            f"revision {revision_id} is not in candle_revisions or was restored already "
            "(see `mdq revisions list`)"
        )
