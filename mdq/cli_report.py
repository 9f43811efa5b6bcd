"""``mdq report``: write the visual quality report (:mod:`mdq.report`), optionally serve it.

Exit statuses: 0 written (findings or not: the report shows them), 2 could not run.
"""

from __future__ import annotations

import functools
import http.server
import signal
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from mdq.config import load_settings
from mdq.exceptions import MdqError


def report(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write (default: MDQ_REPORT_DIR, else <home>/report)."
        ),
    ] = None,
    symbols: Annotated[
        list[str] | None,
        typer.Option("--symbols", help="Only these symbols (repeat or comma-separate)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only candles and findings from this instant (ISO 8601)."),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the report on 127.0.0.1 after writing it.")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port for --serve.")] = 8765,
) -> None:
    """Write a self-contained HTML quality report: overview, coverage heatmap, a candlestick
    page per series with every finding marked, and a findings table (works offline)."""
    from mdq.cli import console, err_console, project_database
    from mdq.cli_quality import _fail, parse_as_of
    from mdq.report import write_report

    when = parse_as_of(since)
    names = [n.strip() for item in symbols or [] for n in item.split(",") if n.strip()] or None
    try:
        settings = load_settings()
        folder = out or settings.report_folder
        with project_database(settings) as database:
            summary = write_report(database, folder, symbols=names, since=when)
    except (MdqError, psycopg.Error, OSError, ValueError) as exc:
        raise _fail(str(exc).strip().splitlines()[0]) from None
    console.print(
        f"report written: {summary.index.resolve()} ({summary.series} series, "
        f"{summary.open_errors} open errors, {summary.open_warnings} open warnings)",
        highlight=False,
    )
    if serve:
        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=str(summary.out_dir)
        )
        with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            host, bound = server.server_address[:2]
            err_console.print(f"serving on http://{host}:{bound}/ (Ctrl-C stops)")
            _stop_on_interrupt_or_term()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass


def _stop_on_interrupt_or_term() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM (``kill``, a service manager) stop the server cleanly.

    Python leaves SIGINT ignored when the process started with it ignored (a command started
    with ``&`` by a shell without job control): the server then ignored Ctrl-C sent to its
    process group. Main thread only (``signal.signal`` raises ValueError elsewhere).
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def register(app: typer.Typer) -> None:
    """Add ``report`` to the main app."""
    app.command("report")(report)
