"""mdq: market-data quality checks (dbt) and flows (Prefect) for OHLCV candles in PostgreSQL.

The Python API (README "Python API"), plain functions that need no Prefect::

    import mdq

    mdq.backfill("csv", path="candles.csv")     # -> one result per (symbol, timeframe)
    report = mdq.check()                         # dbt checks -> data_anomalies
    rows = mdq.list_anomalies("open")
    snapshot = mdq.health_check()

plus the seed's functions :func:`detect_data_anomalies`, :func:`cleanup_duplicate_records`,
:func:`track_symbol_failure`, :func:`create_backfill_state`, :func:`update_backfill_state`,
:func:`get_active_backfill_states`, and :func:`open_database`/:func:`connect` for the ones that
take a connection. They live in :mod:`mdq.api` and are loaded on first use, so ``import mdq``
(which every submodule triggers) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API: every name is loaded from :mod:`mdq.api` on first access.
__all__ = [
    "acknowledge",
    "backfill",
    "check",
    "cleanup_duplicate_records",
    "connect",
    "create_backfill_state",
    "detect_data_anomalies",
    "get_active_backfill_states",
    "health_check",
    "list_anomalies",
    "list_mutes",
    "mute",
    "open_database",
    "track_symbol_failure",
    "unacknowledge",
    "unmute",
    "update_backfill_state",
]

if TYPE_CHECKING:
    from mdq.api import (
        acknowledge,
        backfill,
        check,
        cleanup_duplicate_records,
        connect,
        create_backfill_state,
        detect_data_anomalies,
        get_active_backfill_states,
        health_check,
        list_anomalies,
        list_mutes,
        mute,
        open_database,
        track_symbol_failure,
        unacknowledge,
        unmute,
        update_backfill_state,
    )


def __getattr__(name: str) -> Any:
    """Load an API function from :mod:`mdq.api` on first access (PEP 562).

    Raises:
        AttributeError: ``name`` is not part of the API (nor an imported submodule).
    """
    if name not in __all__:
        raise AttributeError(f"module 'mdq' has no attribute {name!r}")
    value = getattr(import_module("mdq.api"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
