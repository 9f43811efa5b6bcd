"""Pytest fixtures for the vendor providers' tests: yfinance's process-wide state reset, so a
test's recorded transport is the only thing that answers it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

_CACHE_DIR: list[str] = []


@pytest.fixture()
def fresh_yfinance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """yfinance with a new session singleton (no cookie, crumb or session left by another
    test) and its time-zone/cookie caches in a temporary directory, not the user's (set once
    per process: yfinance opens its cache database on first use)."""
    import yfinance
    from yfinance.data import SingletonMeta

    if not _CACHE_DIR:
        _CACHE_DIR.append(tempfile.mkdtemp(prefix="mdq-yf-cache-"))
        yfinance.set_tz_cache_location(_CACHE_DIR[0])
    monkeypatch.setattr(SingletonMeta, "_instances", {})
    yield
