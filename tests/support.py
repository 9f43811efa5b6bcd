"""Test helpers: load canonical CSV candles (as in shared/cases/field_cases.md) into market_data."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import psycopg

CANONICAL = ["symbol", "asset_class", "timeframe", "ts", "open", "high", "low", "close", "volume"]


def parse_candles(text: str) -> list[tuple[object, ...]]:
    """Parse canonical CSV (header optional, ``#`` comment lines skipped) into typed tuples.

    ``ts`` must carry an offset (``Z`` or ``±hh:mm``); it is returned timezone-aware.
    """
    lines = [
        line for line in text.strip().splitlines() if line.strip() and not line.startswith("#")
    ]
    if lines and lines[0].startswith("symbol,"):
        lines = lines[1:]
    rows = []
    for record in csv.reader(io.StringIO("\n".join(lines))):
        symbol, asset_class, timeframe, ts, *numbers = record
        stamp = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        assert stamp.tzinfo is not None, f"naive timestamp in test data: {ts}"
        rows.append((symbol, asset_class, timeframe, stamp, *(float(n) for n in numbers)))
    return rows


def insert_candles(conn: psycopg.Connection, text: str, *, source: str = "test") -> int:
    """Insert canonical CSV candles into market_data with COPY; returns the row count."""
    rows = parse_candles(text)
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy market_data (symbol, asset_class, timeframe, ts, open, high, low, close, volume,"
            " source) from stdin"
        ) as copy,
    ):
        for row in rows:
            copy.write_row((*row, source))
    return len(rows)
