"""Settings: the one place the environment is read (prefix ``MDQ_``).

Only entrypoints (the CLI, flows) build a :class:`Settings`; everything else receives what it
needs as arguments. Never log a Settings object or a raw validation error: they can echo secrets.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mdq.exceptions import SettingsError

_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"


def default_home() -> Path:
    """The default MDQ_HOME: the per-user data directory of platformdirs.

    ``~/.local/share/mdq`` on Linux (``$XDG_DATA_HOME/mdq`` when set),
    ``~/Library/Application Support/mdq`` on macOS, ``%LOCALAPPDATA%\\mdq`` on Windows. The same
    for every working directory, so ``mdq`` run from anywhere finds the same database.
    """
    return Path(user_data_dir("mdq", appauthor=False))


class Settings(BaseSettings):
    """Project settings, read from ``MDQ_*`` environment variables (and a ``.env`` file)."""

    model_config = SettingsConfigDict(
        env_prefix="MDQ_", env_file=".env", extra="ignore", validate_default=True
    )

    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL (>= 14) URL, e.g. postgresql://user:pass@host:5432/dbname. "
            "Unset: an embedded PostgreSQL (pgserver) is started with its data under MDQ_HOME."
        ),
    )
    home: Path = Field(
        default_factory=default_home,
        description=(
            "Directory for the embedded database (<home>/pgdata) and local state. Default: the "
            "per-user data directory (platformdirs; ~/.local/share/mdq on Linux). A relative "
            "path is taken from the current directory and made absolute."
        ),
    )
    embedded_user_namespace: bool = Field(
        default=True,
        description=(
            "As root only: run a new MDQ_HOME's embedded PostgreSQL in a user namespace "
            "(unshare --user) with root mapped to the OS user pgserver, so its files stay "
            "root's. false: run it as the OS user pgserver itself (as where namespaces are "
            "denied); that user must then be able to traverse MDQ_HOME's parents. A home keeps "
            "the mode it was made with."
        ),
    )
    dbt_schema: str = Field(
        default="mdq",
        pattern=_IDENTIFIER,
        description="Schema dbt builds its models into (test failures go to <schema>_audit).",
    )
    connect_timeout: int = Field(
        default=10, ge=1, le=300, description="Seconds to wait for a PostgreSQL connection."
    )
    report_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of the HTML quality report (mdq report; the quality flow rewrites it after "
            "each recorded run and links it in its markdown artifact). Unset: <home>/report."
        ),
    )
    report_after_checks: bool = Field(
        default=True,
        description=(
            "Whether the quality flow rewrites the HTML report after each recorded run "
            "(about 20 s at 1,000 symbols x 1 year of 1h candles; bench/bench_report.py)."
        ),
    )

    backfill_max_concurrency: int = Field(
        default=4,
        ge=1,
        le=32,
        description=(
            "Backfill: (symbol, timeframe) tasks running at once (each holds one connection)."
        ),
    )
    backfill_lease_seconds: int = Field(
        default=30,
        ge=1,
        le=86_400,
        description=(
            "Backfill: seconds an in_progress state row stays claimed without renewal (a "
            "heartbeat renews it every third of this while the worker lives); after it the "
            "worker is presumed dead and another backfill may take the series over."
        ),
    )
    backfill_chunk_rows: int = Field(
        default=200_000,
        ge=100,
        le=10_000_000,
        description=(
            "Backfill: candles written per transaction (the watermark advances per chunk)."
        ),
    )
    backfill_lookback_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 366,
        description=(
            "Backfill, scheduled mode: hours re-loaded before the watermark (late candles, "
            "vendor corrections); the window runs from watermark minus this up to now."
        ),
    )
    backfill_initial_days: float = Field(
        default=30.0,
        gt=0,
        le=366 * 50,
        description=(
            "Backfill, scheduled mode: days of history loaded for a series without watermark."
        ),
    )
    backfill_provider: str | None = Field(
        default=None,
        pattern=r"^(csv|synthetic)$",
        description=(
            "Provider of scheduled backfills (the `backfill/daily` deployment, `mdq serve`): "
            "csv (with MDQ_BACKFILL_PATH, e.g. a vendor's daily drop file) or synthetic. "
            "Unset: a scheduled backfill fails at once, naming this variable."
        ),
    )
    backfill_path: str | None = Field(
        default=None,
        description="csv provider of scheduled backfills: the file (.csv, .csv.gz, .parquet).",
    )
    failure_alert_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Consecutive failed backfills of one series before an alert (sent once per streak)."
        ),
    )
    alert_min_severity: str = Field(
        default="error",
        pattern=r"^(warn|error)$",
        description=(
            "Health alerts: the least severe problem that pages (warn or error). With error, "
            "warn-level problems (likely real moves, warn gaps) are in the snapshot only."
        ),
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def report_folder(self) -> Path:
        """Where the HTML quality report goes: ``report_dir``, else ``<home>/report``."""
        return (self.report_dir or self.home / "report").expanduser().absolute()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        if not raw.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or postgres://)")
        return SecretStr(raw)


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, plus explicit overrides (used by the CLI).

    Args:
        **overrides: field values that win over the environment.

    Returns:
        The validated settings.

    Raises:
        SettingsError: one line naming the variable and the reason, never its value.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "settings"
        reason = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"MDQ_{field.upper()}", reason) from None
