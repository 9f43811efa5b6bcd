"""The visual quality report (``mdq report``): a self-contained static HTML folder.

What it writes under ``out_dir`` (one folder: zip it or publish it as it is; no CDN, works from
``file://``)::

    index.html            overview, trend of open findings per run, coverage heatmap, findings
    series/<slug>.html    one page per (symbol, timeframe): candlesticks + volume, findings marked
    series/<slug>.full.js the series' every candle, loaded by its page only when zoomed in
    assets/plotly.min.js  plotly.js, from the ``plotly`` package (offline bundle)
    assets/report.js      the pages' own script; assets/report.css their style

Charts are plotly.js: a maintained library with candlestick and heatmap traces, shipped inside
the ``plotly`` wheel on PyPI so the report works offline; pages are written directly (JSON data
+ one script), not through plotly's Python figure objects, which cost ~50 ms a figure.

Coverage cells are per series and session date (the calendar checks' rule: the date of
``ts`` in the calendar's zone plus its day roll-over): ``complete`` (candles, no open gap
finding), ``partial`` (an open ``candle_gaps`` finding overlaps the session: missing candles),
``closed`` (the calendar has no session that day), ``not loaded`` (before the first or after
the last candle of the series), or ``empty`` (a session with no candle and no finding: the gap
check did not run over it yet). Past :data:`MAX_HEATMAP_COLUMNS` days, a column is a week and
shows its worst day.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdq.calendars import DEFAULT_CALENDAR_BY_ASSET_CLASS
from mdq.db import Database, connect
from mdq.db import report as report_db

#: A series page draws at most this many candles at once; longer series are shown merged into
#: buckets (OHLC of each bucket) until the zoomed-in range holds fewer candles than this.
MAX_VIEW_CANDLES = 2_000

#: More days than this in the heatmap and each column becomes a week.
MAX_HEATMAP_COLUMNS = 400

#: Connections that read candles at once (the reference machine has 2 cores).
READ_CONNECTIONS = 2

#: Points in the trend of open findings (the last quality runs).
TREND_RUNS = 60

#: The check whose findings mark coverage cells as partial (missing candles).
GAP_CHECK = "candle_gaps"

#: Heatmap cell states, in the order of their codes (worst last) and their colours.
CELL_STATES: tuple[str, ...] = ("not loaded", "closed", "complete", "empty", "partial")

_TIMEFRAME_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class SeriesSummary:
    """One (symbol, timeframe) series in the report.

    Attributes:
        index: its position in the report (and in :class:`Candles`).
        symbol: the instrument.
        timeframe: ``1m``, ``1h``, ``1d``…
        asset_class: the newest candle's.
        calendar: the calendar its sessions follow (``instruments``, else the asset class's
            default; None when neither knows).
        candles: candles in scope.
        first_ts: oldest candle open time, UTC.
        last_ts: newest candle open time, UTC.
    """

    index: int
    symbol: str
    timeframe: str
    asset_class: str
    calendar: str | None
    candles: int
    first_ts: datetime
    last_ts: datetime


#: One candle in a block of :func:`mdq.db.report.read_candle_blocks` (big-endian).
CANDLE_BLOCK = np.dtype(
    [("t", ">i8"), ("o", ">f8"), ("h", ">f8"), ("l", ">f8"), ("c", ">f8"), ("v", ">f8")]
)


@dataclass(frozen=True)
class Candles:
    """Every candle in scope as columns, sorted by series then time.

    Attributes:
        t: open times, milliseconds since the epoch (UTC), int64.
        o: opens; h: highs; l: lows; c: closes (float64, quote currency).
        v: volumes as stored (float64, NaN when null).
        starts: ``starts[i]:starts[i + 1]`` are series ``i``'s rows (length: series + 1).
    """

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 (the field's name: low)
    c: np.ndarray
    v: np.ndarray
    starts: np.ndarray

    def series(self, i: int) -> slice:
        """The rows of series ``i``."""
        return slice(int(self.starts[i]), int(self.starts[i + 1]))


def parse_candles(blocks: Sequence[tuple[int, bytes]], series: int) -> Candles:
    """Read :func:`mdq.db.report.read_candle_blocks`' blocks into columns.

    Args:
        blocks: ``(series index, block)`` pairs; a series without a block has no candles.
        series: how many series were asked for.

    Raises:
        ValueError: a block is not a whole number of 48-byte candles.
    """
    ordered: list[np.ndarray] = [np.empty(0, dtype=CANDLE_BLOCK)] * series
    for index, block in blocks:
        if len(block) % CANDLE_BLOCK.itemsize:
            raise ValueError(f"candle block of series {index} is not whole 48-byte candles")
        ordered[index] = np.frombuffer(block, dtype=CANDLE_BLOCK)
    rows = np.concatenate(ordered) if ordered else np.empty(0, dtype=CANDLE_BLOCK)
    lengths = np.array([len(block) for block in ordered], dtype=np.int64)
    return Candles(
        t=rows["t"].astype(np.int64),
        o=rows["o"].astype(np.float64),
        h=rows["h"].astype(np.float64),
        l=rows["l"].astype(np.float64),
        c=rows["c"].astype(np.float64),
        v=rows["v"].astype(np.float64),
        starts=np.concatenate(([0], np.cumsum(lengths))),
    )


def session_days(t_ms: np.ndarray, zone: str, rollover_hours: int) -> np.ndarray:
    """Session date of each open time, as days since 1970-01-01 (int64).

    The calendar checks' rule (migration 020): the date of ``ts`` in the calendar's zone plus
    its day roll-over (7 h for FX, whose trading day rolls at 17:00 New York).
    """
    if zone == "UTC" and rollover_hours == 0:
        return np.floor_divide(t_ms, 86_400_000)
    local = pd.DatetimeIndex(t_ms.astype("datetime64[ms]"), tz="UTC").tz_convert(zone).tz_localize(
        None
    ) + pd.Timedelta(hours=rollover_hours)
    return local.values.astype("datetime64[D]").astype(np.int64)


def downsample(candles: Candles, rows: slice, per_bar: int) -> dict[str, np.ndarray]:
    """Merge each run of ``per_bar`` consecutive candles into one bar: first open, highest
    high, lowest low, last close, summed volume, stamped with the first candle's time."""
    t = candles.t[rows]
    first = np.arange(0, len(t), per_bar)
    last = np.minimum(first + per_bar, len(t)) - 1
    return {
        "t": t[first],
        "o": candles.o[rows][first],
        "h": np.maximum.reduceat(candles.h[rows], first),
        "l": np.minimum.reduceat(candles.l[rows], first),
        "c": candles.c[rows][last],
        "v": np.add.reduceat(np.nan_to_num(candles.v[rows]), first),
    }


def encode_columns(columns: dict[str, np.ndarray]) -> dict[str, str]:
    """Columns as base64 of little-endian float64 (times as milliseconds), for the pages'
    ``Float64Array``s: 8 bytes a value, no number formatting on either side."""
    return {
        name: base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode()
        for name, values in columns.items()
    }


def columns_json(columns: dict[str, np.ndarray]) -> str:
    """:func:`encode_columns` as a JSON object, written directly: base64 needs no escaping,
    and ``json.dumps`` would scan every character of megabytes of it."""
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in encode_columns(columns).items()) + "}"


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote.

    Attributes:
        out_dir: the report folder.
        index: its ``index.html``.
        series_pages: one page per series, in series order.
        series: series in the report.
        open_errors: open error-severity findings in scope.
        open_warnings: open warn-severity findings in scope.
    """

    out_dir: Path
    index: Path
    series_pages: tuple[Path, ...]
    series: int
    open_errors: int
    open_warnings: int


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in one candle of ``timeframe`` (``1m`` → 60, ``4h`` → 14400, ``1d`` → 86400).

    Raises:
        ValueError: not ``<n><m|h|d|w>``.
    """
    match = re.fullmatch(r"(\d+)([mhdw])", timeframe)
    if not match:
        raise ValueError(f"timeframe '{timeframe}' not understood; expected e.g. 1m, 1h, 1d")
    return int(match.group(1)) * _TIMEFRAME_SECONDS[match.group(2)]


def series_slug(symbol: str, timeframe: str) -> str:
    """A file name for a series page: safe characters plus a short hash (``BTC/USD`` and
    ``BTC_USD`` must not collide)."""
    digest = hashlib.sha256(f"{symbol}\x00{timeframe}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{symbol}_{timeframe}")[:60]
    return f"{safe}-{digest}"


def run_instants(findings: Sequence[dict[str, Any]]) -> list[datetime]:
    """The quality runs that touched ``data_anomalies``, oldest first: the fallback when
    ``quality_runs`` has no rows (databases from before it was kept).

    A run stamps every finding it records or resolves with its own time (``first_seen_at`` for
    new ones, ``last_seen_at`` for re-seen, ``resolved_at`` for resolved), so the distinct
    stamps are the runs.
    """
    stamps = {f[key] for f in findings for key in ("first_seen_at", "last_seen_at", "resolved_at")}
    return sorted(s for s in stamps if s is not None)


def open_trend(
    findings: Sequence[dict[str, Any]], runs: Sequence[datetime]
) -> list[dict[str, Any]]:
    """Open findings per run, by severity: ``[{"run": iso, "error": n, "warn": n}]``.

    A finding counts as open at run ``t`` when first seen at or before ``t`` and not resolved
    by then. A finding that was resolved and later reopened counts as open in between (its
    history is not kept), so older points can overstate.
    """
    trend = []
    for run in runs:
        counts = {"error": 0, "warn": 0}
        for f in findings:
            if f["first_seen_at"] <= run and (f["resolved_at"] is None or f["resolved_at"] > run):
                counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        trend.append({"run": run.isoformat(), **counts})
    return trend


def coverage_cells(
    first: date,
    last: date,
    *,
    series_first: date,
    series_last: date,
    counts: dict[date, int],
    sessions: set[date] | None,
    gap_days: set[date],
) -> list[int]:
    """One series' heatmap row: a state code (index in :data:`CELL_STATES`) per day.

    Args:
        first: first day of the heatmap.
        last: last day of the heatmap (included).
        series_first: session date of the series' first candle.
        series_last: session date of its last candle.
        counts: candles per session date.
        sessions: the calendar's session dates, or None when the calendar was never refreshed
            (then a day without candles and without a finding counts as closed).
        gap_days: session dates overlapped by an open gap finding.
    """
    row = []
    day = first
    while day <= last:
        if day < series_first or day > series_last:
            state = "not loaded"
        elif day in gap_days:
            state = "partial"
        elif counts.get(day, 0) > 0:
            state = "complete"
        elif sessions is None or day not in sessions:
            state = "closed"
        else:
            state = "empty"
        row.append(CELL_STATES.index(state))
        day += timedelta(days=1)
    return row


def to_weeks(first: date, row: Sequence[int]) -> tuple[date, list[int]]:
    """Merge a daily row into ISO weeks (Monday first), each the worst state of its days.

    Returns:
        (the Monday of the first week, one code per week).
    """
    start = first - timedelta(days=first.weekday())
    pad = (first - start).days
    merged: list[int] = []
    for i in range(0, pad + len(row), 7):
        days = [row[j - pad] for j in range(i, i + 7) if 0 <= j - pad < len(row)]
        merged.append(max(days))
    return start, merged


def write_report(
    database: Database,
    out_dir: Path,
    *,
    symbols: Sequence[str] | None = None,
    since: datetime | None = None,
) -> ReportSummary:
    """Write the report folder (see the module docstring) and return what it holds.

    Reads ``market_data``, ``data_anomalies`` (with its triage status), ``quality_runs``,
    ``instruments``, ``trading_calendars``, ``trading_sessions``, ``corporate_actions`` and
    ``quarantined_candles``; writes nothing to the database. The candles are read once, as a
    block of bytes per series packed by PostgreSQL, into columns (48 bytes a candle in
    memory). An existing folder's
    generated files are replaced.

    Args:
        database: the project's database.
        out_dir: the folder to write (created).
        symbols: only these symbols (None: all).
        since: only candles and findings at or after this instant (UTC-aware; None: all).

    Returns:
        The summary.

    Raises:
        ValueError: a naive ``since``.
        DatabaseUnreachable: PostgreSQL is down.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware (UTC), got naive {since.isoformat()}")
    out_dir = Path(out_dir)
    (out_dir / "series").mkdir(parents=True, exist_ok=True)
    (out_dir / "assets").mkdir(parents=True, exist_ok=True)
    generated_at = datetime.now(UTC)
    with connect(database) as conn:
        listed = report_db.list_series(conn, symbols)
        candles = parse_candles(_read_blocks(database, listed, since), len(listed))
        series = _summaries(listed, candles)
        findings = report_db.read_findings(conn, symbols, since)
        quarantined = report_db.read_quarantined_count(conn, symbols)
        actions = report_db.read_corporate_actions(conn, sorted({s.symbol for s in series}))
        runs = report_db.read_runs(conn, TREND_RUNS) or run_instants(findings)[-TREND_RUNS:]
        zones = report_db.read_calendars(conn, sorted({s.calendar for s in series if s.calendar}))
        heatmap = _heatmap(conn, series, candles, findings, zones)
    pages = [_write_series_page(out_dir, s, candles, findings, actions) for s in series]
    _write_assets(out_dir)
    overview = _overview(series, findings, quarantined, runs, generated_at)
    _write_index(out_dir, overview, heatmap, findings, generated_at, since)
    return ReportSummary(
        out_dir=out_dir,
        index=out_dir / "index.html",
        series_pages=tuple(pages),
        series=len(series),
        open_errors=overview["open_errors"],
        open_warnings=overview["open_warnings"],
    )


# ---------------------------------------------------------------------------------------------
# data


def _read_blocks(
    database: Database,
    listed: Sequence[tuple[str, str, str, str | None]],
    since: datetime | None,
) -> list[tuple[int, bytes]]:
    """:func:`mdq.db.report.read_candle_blocks` over :data:`READ_CONNECTIONS` connections at
    once (each packs its share of the series on its own server process and core)."""
    wanted = [(symbol, timeframe) for symbol, timeframe, _, _ in listed]
    shares = [list(range(i, len(wanted), READ_CONNECTIONS)) for i in range(READ_CONNECTIONS)]

    def read(share: list[int]) -> list[tuple[int, bytes]]:
        if not share:
            return []
        with connect(database) as conn:
            blocks = report_db.read_candle_blocks(conn, [wanted[i] for i in share], since)
        return [(share[i], block) for i, block in blocks]

    with ThreadPoolExecutor(max_workers=READ_CONNECTIONS) as pool:
        return [block for part in pool.map(read, shares) for block in part]


def _summaries(
    listed: Sequence[tuple[str, str, str, str | None]], candles: Candles
) -> list[SeriesSummary]:
    """The series that have candles in scope, in ``listed`` order."""
    series = []
    for i, (symbol, timeframe, asset_class, calendar) in enumerate(listed):
        rows = candles.series(i)
        if rows.stop == rows.start:
            continue
        series.append(
            SeriesSummary(
                index=i,
                symbol=symbol,
                timeframe=timeframe,
                asset_class=asset_class,
                calendar=calendar or DEFAULT_CALENDAR_BY_ASSET_CLASS.get(asset_class),
                candles=rows.stop - rows.start,
                first_ts=datetime.fromtimestamp(candles.t[rows.start] / 1000, UTC),
                last_ts=datetime.fromtimestamp(candles.t[rows.stop - 1] / 1000, UTC),
            )
        )
    return series


def _overview(
    series: Sequence[SeriesSummary],
    findings: Sequence[dict[str, Any]],
    quarantined: int,
    runs: Sequence[datetime],
    generated_at: datetime,
) -> dict[str, Any]:
    latest = runs[-1] if runs else None
    previous = runs[-2] if len(runs) > 1 else None
    open_ = [f for f in findings if f["status"] == "open"]
    stale = {(f["symbol"], f["timeframe"]) for f in open_ if f["anomaly_type"] == "stale"}
    return {
        "generated_at": generated_at.isoformat(),
        "series": len(series),
        "candles": sum(s.candles for s in series),
        "open_errors": sum(1 for f in open_ if f["severity"] == "error"),
        "open_warnings": sum(1 for f in open_ if f["severity"] == "warn"),
        "new_since_previous": sum(
            1 for f in findings if previous is None or f["first_seen_at"] > previous
        ),
        "resolved_since_previous": sum(
            1
            for f in findings
            if f["resolved_at"] is not None and (previous is None or f["resolved_at"] > previous)
        ),
        "stale_series": len(stale),
        "quarantined_rows": quarantined,
        "acknowledged": sum(1 for f in findings if f["status"] in ("acknowledged", "muted")),
        "last_run": latest.isoformat() if latest else None,
        "trend": open_trend(findings, runs),
    }


def _heatmap(
    conn: Any,
    series: Sequence[SeriesSummary],
    candles: Candles,
    findings: Sequence[dict[str, Any]],
    zones: dict[str, tuple[str, int]],
) -> dict[str, Any]:
    if not series:
        return {"x": [], "y": [], "z": [], "links": [], "unit": "day"}
    epoch = date(1970, 1, 1)
    days: dict[int, dict[date, int]] = {}
    spans: dict[int, tuple[date, date]] = {}
    for s in series:
        rows = candles.series(s.index)
        zone, rollover = zones.get(s.calendar or "", ("UTC", 0))
        numbers = session_days(candles.t[rows], zone, rollover)
        # the rows are sorted by time, so their session days are too: count runs, not sort
        change = np.flatnonzero(np.diff(numbers)) + 1
        run_starts = np.concatenate(([0], change))
        counts = np.diff(np.concatenate((run_starts, [len(numbers)])))
        days[s.index] = {
            epoch + timedelta(days=int(d)): int(n)
            for d, n in zip(numbers[run_starts], counts, strict=True)
        }
        spans[s.index] = (
            epoch + timedelta(days=int(numbers[0])),
            epoch + timedelta(days=int(numbers[-1])),
        )
    first = min(span[0] for span in spans.values())
    last = max(span[1] for span in spans.values())
    sessions = {c: report_db.read_session_dates(conn, c, first, last) for c in zones}
    by_key = {(s.symbol, s.timeframe): s for s in series}
    gaps: dict[int, set[date]] = {}
    for f in findings:
        key = (f["symbol"], f["timeframe"])
        if f["check_name"] != GAP_CHECK or f["status"] != "open" or key not in by_key:
            continue
        s = by_key[key]
        zone, rollover = zones.get(s.calendar or "", ("UTC", 0))
        ends = np.array(
            [
                int(f["ts_start"].timestamp() * 1000),
                int((f["ts_end"] or f["ts_start"]).timestamp() * 1000),
            ]
        )
        day_first, day_last = session_days(ends, zone, rollover)
        gaps.setdefault(s.index, set()).update(
            epoch + timedelta(days=int(d)) for d in range(int(day_first), int(day_last) + 1)
        )
    rows_out, labels, links = [], [], []
    for s in series:
        known = sessions.get(s.calendar or "")
        rows_out.append(
            coverage_cells(
                first,
                last,
                series_first=spans[s.index][0],
                series_last=spans[s.index][1],
                counts=days[s.index],
                sessions=known if known else None,
                gap_days=gaps.get(s.index, set()),
            )
        )
        labels.append(f"{s.symbol} {s.timeframe}")
        links.append(f"series/{series_slug(s.symbol, s.timeframe)}.html")
    unit = "day"
    x0 = first
    if (last - first).days + 1 > MAX_HEATMAP_COLUMNS:
        unit = "week"
        merged = [to_weeks(first, row) for row in rows_out]
        x0, rows_out = merged[0][0], [m[1] for m in merged]
    step = 7 if unit == "week" else 1
    x = [(x0 + timedelta(days=i * step)).isoformat() for i in range(len(rows_out[0]))]
    # Columns where no series has data (years between two files) are left out.
    not_loaded = CELL_STATES.index("not loaded")
    keep = [i for i in range(len(x)) if any(row[i] != not_loaded for row in rows_out)]
    return {
        "x": [x[i] for i in keep],
        "y": labels,
        "z": [[row[i] for i in keep] for row in rows_out],
        "links": links,
        "unit": unit,
    }


def _finding_json(f: dict[str, Any]) -> dict[str, Any]:
    def num(value: Any) -> float | None:
        return value if isinstance(value, float) and math.isfinite(value) else None

    return {
        "id": f["anomaly_id"],
        "check": f["check_name"],
        "type": f["anomaly_type"],
        "severity": f["severity"],
        "status": f["status"],
        "symbol": f["symbol"],
        "timeframe": f["timeframe"],
        "ts_start": f["ts_start"].isoformat() if f["ts_start"] else None,
        "ts_end": f["ts_end"].isoformat() if f["ts_end"] else None,
        "observed": num(f["observed_value"]),
        "expected": num(f["expected_value"]),
        "reason": f["reason"],
        "first_seen": f["first_seen_at"].isoformat(),
        "last_seen": f["last_seen_at"].isoformat(),
        "page": (
            f"series/{series_slug(f['symbol'], f['timeframe'])}.html"
            if f["symbol"] and f["timeframe"]
            else None
        ),
    }


# ---------------------------------------------------------------------------------------------
# pages


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _write_series_page(
    out_dir: Path,
    s: SeriesSummary,
    candles: Candles,
    findings: Sequence[dict[str, Any]],
    actions: Sequence[dict[str, Any]],
) -> Path:
    slug = series_slug(s.symbol, s.timeframe)
    rows = candles.series(s.index)
    full = {
        "t": candles.t[rows],
        "o": candles.o[rows],
        "h": candles.h[rows],
        "l": candles.l[rows],
        "c": candles.c[rows],
        "v": candles.v[rows],
    }
    per_bar = math.ceil(s.candles / MAX_VIEW_CANDLES) if s.candles > MAX_VIEW_CANDLES else None
    view = downsample(candles, rows, per_bar) if per_bar else full
    full_name = f"{slug}.full.js"
    (out_dir / "series" / full_name).write_text(
        "window.MDQ_FULL = window.MDQ_FULL || {};\n"
        f"window.MDQ_FULL[{_script_json(slug)}] = {columns_json(full)};\n"
    )
    own = [
        _finding_json(f)
        for f in findings
        if f["symbol"] == s.symbol and f["timeframe"] == s.timeframe
    ]
    own_actions = [
        {
            "date": a["effective_date"].isoformat(),
            "type": a["action_type"],
            "ratio": float(a["ratio"]) if a["ratio"] is not None else None,
            "amount": float(a["cash_amount"]) if a["cash_amount"] is not None else None,
            "source": a["source"],
        }
        for a in actions
        if a["symbol"] == s.symbol
    ]
    meta = {
        "slug": slug,
        "symbol": s.symbol,
        "timeframe": s.timeframe,
        "asset_class": s.asset_class,
        "candles": s.candles,
        "step_seconds": timeframe_seconds(s.timeframe),
        "bucket_candles": per_bar,
        "max_view": MAX_VIEW_CANDLES,
        "full_src": full_name,
        "findings": own,
        "actions": own_actions,
    }
    title = f"{s.symbol} {s.timeframe}"
    body = f"""
<header><a href="../index.html">← overview</a><h1>{html.escape(title)}</h1>
<p class="meta">{s.candles:,} candles, {html.escape(s.first_ts.isoformat())} →
{html.escape(s.last_ts.isoformat())} (UTC); {len(own)} findings;
<span id="view-note"></span></p></header>
<div id="chart" class="chart"></div>
<h2>Findings</h2>
<div id="findings"></div>
<script>const MDQ_SERIES = {_script_json(meta)};
const MDQ_VIEW = {columns_json(view)};</script>
<script>MDQ.seriesPage(MDQ_SERIES, MDQ.decode(MDQ_VIEW));</script>
"""
    path = out_dir / "series" / f"{slug}.html"
    path.write_text(_page(title, body, prefix="../"))
    return path


def _write_index(
    out_dir: Path,
    overview: dict[str, Any],
    heatmap: dict[str, Any],
    findings: Sequence[dict[str, Any]],
    generated_at: datetime,
    since: datetime | None,
) -> None:
    scope = f" since {since.isoformat()}" if since else ""
    body = f"""
<header><h1>mdq quality report</h1>
<p class="meta">generated {html.escape(generated_at.isoformat(timespec="seconds"))}
{html.escape(scope)}</p>
</header>
<section id="overview" class="cards"></section>
<h2>Open findings per run</h2>
<div id="trend" class="chart small"></div>
<h2>Coverage</h2>
<p class="legend">Each cell is one series on one session {html.escape(heatmap["unit"])}:
<span class="c-complete">complete</span> <span class="c-partial">partial (missing candles)</span>
<span class="c-empty">session without candles, not checked yet</span>
<span class="c-closed">closed by the calendar</span> <span class="c-notloaded">not loaded</span>.
Click a row to open the series.</p>
<div id="heatmap" class="chart"></div>
<h2>Findings</h2>
<div id="findings"></div>
<script>const MDQ_OVERVIEW = {_script_json(overview)};
const MDQ_HEATMAP = {_script_json(heatmap)};
const MDQ_FINDINGS = {_script_json([_finding_json(f) for f in findings])};</script>
<script>MDQ.indexPage(MDQ_OVERVIEW, MDQ_HEATMAP, MDQ_FINDINGS);</script>
"""
    (out_dir / "index.html").write_text(_page("mdq quality report", body, prefix=""))


def _page(title: str, body: str, *, prefix: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}assets/report.css">
<script src="{prefix}assets/plotly.min.js"></script>
<script src="{prefix}assets/report.js"></script>
</head><body>
{body}
</body></html>
"""


def _write_assets(out_dir: Path) -> None:
    from plotly.offline import get_plotlyjs

    assets = out_dir / "assets"
    plotly_js = assets / "plotly.min.js"
    bundle = get_plotlyjs()
    if not plotly_js.is_file() or plotly_js.stat().st_size != len(bundle.encode()):
        plotly_js.write_text(bundle)
    source = resources.files("mdq") / "report_assets"
    for name in ("report.js", "report.css"):
        with resources.as_file(source / name) as path:
            shutil.copyfile(path, assets / name)
