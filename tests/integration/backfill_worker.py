"""A backfill in its own process, for the concurrency and crash tests (not a test module).

Usage: python -m tests.integration.backfill_worker URL SYMBOL START END CHUNK_ROWS LEASE_S
       [--go-file PATH] [--pause S]

Prints ``ready`` once imported and, with ``--go-file``, waits until that file exists (so two
workers start together). Loads synthetic 1m candles of SYMBOL for [START, END) with
``load_series``; sleeps ``--pause``
seconds after each written chunk (so a test can observe or kill it mid-way); prints the result
as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime

from mdq.backfill_core import BackfillOptions, SeriesRequest, load_series
from mdq.db import parse_url
from mdq.notify import RecordingNotifier
from mdq.providers.synthetic import SyntheticProvider
from mdq.windows import Window


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "symbol", "start", "end"):
        parser.add_argument(name)
    parser.add_argument("chunk_rows", type=int)
    parser.add_argument("lease", type=int)
    parser.add_argument("--go-file", default=None)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    database = parse_url(args.url)
    window = Window(datetime.fromisoformat(args.start), datetime.fromisoformat(args.end))
    provider = SyntheticProvider(
        [args.symbol], ["1m"], seed=11, now=datetime(2030, 1, 1, tzinfo=UTC)
    )
    options = BackfillOptions(lease_seconds=args.lease, chunk_rows=args.chunk_rows)
    print("ready", flush=True)
    if args.go_file:
        deadline = time.time() + 120
        while not os.path.exists(args.go_file) and time.time() < deadline:
            time.sleep(0.01)
    result = load_series(
        database,
        provider,
        SeriesRequest(args.symbol, "1m", window),
        options,
        notifier=RecordingNotifier(),
        on_chunk=lambda n: time.sleep(args.pause),
    )
    print(
        json.dumps({"status": result.status, "inserted": result.inserted, "error": result.error}),
        flush=True,
    )


if __name__ == "__main__":
    main()
