"""The ``csv`` provider: CSV (plain or compressed) and parquet files, read as they are.

Without a mapping a file must have the canonical columns
``symbol,asset_class,timeframe,ts,open,high,low,close,volume`` with ``ts`` in ISO 8601 carrying an
offset (``Z`` or ``±hh:mm``). Any other layout is described by a declarative mapping (TOML) that
names the columns, the timestamp format and zone, the banner lines to skip, which column is the
volume, and constants for what the file does not hold. A mapping is found next to the file as
``<file name>.mapping.toml`` or given explicitly. Example (Coinbase export)::

    skip_rows = 1                    # banner line before the header
    order = "descending"             # informational: rows are sorted by ts anyway
    [columns]                        # canonical name = column in the file
    ts = "date"
    symbol = "symbol"
    open = "open"
    high = "high"
    low = "low"
    close = "close"
    volume = "volume_btc"            # base volume; "volume" in this file is USD
    [constants]                      # canonical values the file does not hold
    asset_class = "crypto"
    timeframe = "1h"
    [timestamps]
    format = "%Y-%m-%d %I-%p"        # strptime format, or "ISO8601" (the default)
    timezone = "UTC"                 # zone of timestamps without an offset
    [instrument]                     # metadata for the instruments table
    calendar = "24/7"
    exchange = "COINBASE"
    quote_currency = "USD"
    [labels]                         # optional: override the detected label convention
    intraday_label = "open"          # auto | open | close (also daily, intraday_grid)
    [actions]                        # optional: corporate-action columns of the file
    split_ratio = "Split Ratio"      # new shares per old share; empty, 0 or 1 = none
    dividend = "Ex-Dividend"         # cash per share; 0 = none

Timestamps without an offset are read in ``timezone`` (DST handled: a wall time that is
ambiguous or does not exist in that zone is rejected, never guessed); without ``timezone`` they
are rejected as naive. Date-only values of daily candles become 00:00 exchange-local time of that
date, in UTC (see :mod:`mdq.validation`).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdq.exceptions import ProviderConfigError, ProviderError, UnsupportedTimeframe
from mdq.providers.base import (
    CANDLE_FRAME_COLUMNS,
    CorporateAction,
    FetchResult,
    Instrument,
    Series,
    empty_candles,
)
from mdq.validation import (
    CANONICAL_COLUMNS,
    MAX_TS,
    MIN_TS,
    NUMBER_COLUMNS,
    Rejected,
    parse_timeframe,
    safe_text,
    symbol_problem,
)
from mdq.windows import Window

PROVIDER = "csv"
MAPPING_SUFFIX = ".mapping.toml"
_ISO = "ISO8601"
_OFFSET = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"
#: Accepted values of a mapping's ``[labels]`` table (see :mod:`mdq.labels`).
LABEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "daily": ("auto", "session_midnight", "utc_midnight", "close"),
    "intraday_grid": ("auto", "session", "clock"),
    "intraday_label": ("auto", "open", "close"),
}


@dataclass(frozen=True)
class CsvMapping:
    """How a file's layout maps onto the canonical candle columns.

    Attributes:
        columns: canonical column → column name in the file.
        constants: canonical column → fixed value (for columns the file lacks).
        skip_rows: lines before the header (banners).
        ts_format: ``ISO8601`` or a strptime format.
        timezone: IANA zone of timestamps without an offset, or None to reject them.
        order: ``ascending``/``descending``/``any``, informational.
        instrument: defaults for the instruments table (``calendar``, ``exchange``,
            ``quote_currency``, ``asset_class``).
        labels: the label convention, overriding detection (:data:`LABEL_OPTIONS`):
            ``daily`` = ``auto``/``session_midnight``/``utc_midnight``/``close``;
            ``intraday_grid`` = ``auto``/``session``/``clock``; ``intraday_label`` =
            ``auto``/``open``/``close``.
        actions: corporate-action columns of the file: ``split_ratio`` (new shares per old
            share on the row's session, 1 = none) and ``dividend`` (cash per share, 0 = none).
    """

    columns: dict[str, str] = field(default_factory=lambda: {c: c for c in CANONICAL_COLUMNS})
    constants: dict[str, str] = field(default_factory=dict)
    skip_rows: int = 0
    ts_format: str = _ISO
    timezone: str | None = None
    order: str = "any"
    instrument: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "mapping") -> CsvMapping:
        """Build and check a mapping from parsed TOML.

        Raises:
            ProviderConfigError: unknown keys, a value of the wrong type (``skip_rows = 'abc'``,
                ``columns = 'x'``), a key that is not a canonical column, a bad timeframe
                constant, a bad zone or a bad label convention. (A canonical column the mapping
                does not name is read from the file column of the same name.)
        """
        known = {
            "columns",
            "constants",
            "skip_rows",
            "order",
            "timestamps",
            "instrument",
            "labels",
            "actions",
        }
        extra = set(data) - known
        if extra:
            raise ProviderConfigError(
                PROVIDER, f"{where}: unknown keys {sorted(extra)}; expected {sorted(known)}"
            )
        for key in ("columns", "constants", "timestamps", "instrument", "labels", "actions"):
            if not isinstance(data.get(key, {}), dict):
                raise ProviderConfigError(
                    PROVIDER,
                    f"{where}: {key} must be a table ([{key}] with name = value lines), "
                    f"not {type(data[key]).__name__}",
                )
        skip_rows = data.get("skip_rows", 0)
        if isinstance(skip_rows, bool) or not isinstance(skip_rows, int) or skip_rows < 0:
            raise ProviderConfigError(
                PROVIDER, f"{where}: skip_rows must be a whole number >= 0, not {skip_rows!r}"
            )
        constants = {str(k): str(v) for k, v in data.get("constants", {}).items()}
        # a canonical column neither mapped nor constant keeps its own name in the file
        columns = {c: c for c in CANONICAL_COLUMNS if c not in constants}
        columns.update({str(k): str(v) for k, v in data.get("columns", {}).items()})
        for key in (*columns, *constants):
            if key not in CANONICAL_COLUMNS:
                raise ProviderConfigError(
                    PROVIDER,
                    f"{where}: {key!r} is not a canonical column; expected one of "
                    f"{', '.join(CANONICAL_COLUMNS)}",
                )
        if "timeframe" in constants:
            try:
                constants["timeframe"] = parse_timeframe(constants["timeframe"])
            except UnsupportedTimeframe as exc:
                raise ProviderConfigError(PROVIDER, f"{where}: constants: {exc}") from None
        stamps = data.get("timestamps", {})
        zone = stamps.get("timezone")
        if zone is not None:
            try:
                pd.Timestamp("2000-01-01").tz_localize(str(zone))
            except Exception:  # pytz/zoneinfo raise different types for an unknown zone
                raise ProviderConfigError(
                    PROVIDER, f"{where}: unknown time zone {safe_text(zone)!r}"
                ) from None
        fmt = str(stamps.get("format", _ISO))
        order = str(data.get("order", "any"))
        if order not in ("ascending", "descending", "any"):
            raise ProviderConfigError(
                PROVIDER, f"{where}: order {order!r}; expected ascending, descending or any"
            )
        labels = {str(k): str(v) for k, v in data.get("labels", {}).items()}
        for key, value in labels.items():
            accepted = LABEL_OPTIONS.get(key)
            if accepted is None:
                raise ProviderConfigError(
                    PROVIDER,
                    f"{where}: labels.{key} unknown; expected one of {', '.join(LABEL_OPTIONS)}",
                )
            if value not in accepted:
                raise ProviderConfigError(
                    PROVIDER,
                    f"{where}: labels.{key} = {value!r}; expected one of {', '.join(accepted)}",
                )
        actions = {str(k): str(v) for k, v in data.get("actions", {}).items()}
        unknown_actions = set(actions) - {"split_ratio", "dividend"}
        if unknown_actions:
            raise ProviderConfigError(
                PROVIDER,
                f"{where}: actions {sorted(unknown_actions)} unknown; expected split_ratio, "
                "dividend (each naming a column of the file)",
            )
        return cls(
            columns=columns,
            constants=constants,
            skip_rows=skip_rows,
            ts_format=fmt,
            timezone=None if zone is None else str(zone),
            order=order,
            instrument={str(k): str(v) for k, v in data.get("instrument", {}).items()},
            labels=labels,
            actions=actions,
        )

    @classmethod
    def load(cls, path: Path) -> CsvMapping:
        """Read a mapping TOML file.

        Raises:
            ProviderConfigError: unreadable file or invalid mapping.
        """
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ProviderConfigError(PROVIDER, f"mapping {path}: {exc}") from None
        return cls.from_dict(data, where=f"mapping {path.name}")


def find_mapping(path: Path) -> Path | None:
    """The mapping file beside a data file (``<name>.mapping.toml``), if there is one."""
    candidate = path.with_name(path.name + MAPPING_SUFFIX)
    return candidate if candidate.exists() else None


#: Series key of rows whose symbol cannot be stored (empty, control characters, too long).
INVALID_SYMBOL = "(invalid symbol)"


def _quote(value: object) -> str:
    return repr(safe_text(value))


def _per_value(values: pd.Series, fn: Any) -> pd.Series:
    """``values.map(fn)`` computed once per distinct value (a file holds few symbols and
    timeframes but millions of rows)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    looked_up = np.array([fn(u) for u in uniques] + [None], dtype=object)
    looked_up = looked_up[:-1] if len(uniques) else looked_up[:0]
    return pd.Series(looked_up[codes] if len(codes) else [], index=values.index, dtype=object)


def _to_float(text: pd.Series) -> pd.Series:
    """Text to float64 like ``pd.to_numeric(errors="coerce")``; a column whose every value
    parses goes through pyarrow's vectorised cast, any other through pandas (which marks the
    values it cannot parse)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pc.cast(pa.array(text), pa.float64())
        return pd.Series(values.to_numpy(zero_copy_only=False), index=text.index)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return pd.to_numeric(text, errors="coerce")


def series_keys(symbols: pd.Series, timeframes: pd.Series) -> pd.Series:
    """The (symbol, timeframe) key of each row, as the file gives them; a symbol that cannot be
    stored is keyed :data:`INVALID_SYMBOL`, a timeframe is cut by :func:`safe_text`."""
    shown, cut = _key_parts(symbols, timeframes)
    return pd.Series(list(zip(shown, cut, strict=True)), index=symbols.index, dtype=object)


def _key_parts(symbols: pd.Series, timeframes: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The two halves of :func:`series_keys`, as columns (vectorised per distinct value)."""
    symbols = symbols.astype(str)
    problems = _per_value(symbols, symbol_problem)
    shown = symbols.where(problems.isna(), INVALID_SYMBOL)
    cut = _per_value(timeframes.astype(str), safe_text)
    return shown, cut


@dataclass
class _Parsed:
    candles: pd.DataFrame
    raw: pd.DataFrame
    rejected: dict[tuple[str, str], list[Rejected]]
    series: list[Series]
    input_counts: dict[tuple[str, str], int]
    actions: pd.DataFrame
    #: positions in ``candles`` of each (symbol, timeframe), in file order
    positions: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: each (symbol, timeframe)'s :class:`Series`
    by_key: dict[tuple[str, str], Series] = field(default_factory=dict)


class CsvFileProvider:
    """Candles from one CSV/parquet file (read once, then served from memory).

    Args:
        path: the file (``.csv``, ``.csv.gz`` and other pandas compressions, ``.parquet``).
        mapping: the layout; default: the mapping beside the file, else canonical columns.

    Raises:
        ProviderConfigError: the file does not exist.
    """

    name = PROVIDER

    def __init__(self, path: Path | str, mapping: CsvMapping | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ProviderConfigError(PROVIDER, f"file not found: {self.path}")
        if mapping is None:
            found = find_mapping(self.path)
            mapping = CsvMapping.load(found) if found else CsvMapping()
        self.mapping = mapping
        self._lock = threading.Lock()
        self._parsed: _Parsed | None = None
        self._digest_lock = threading.Lock()
        self._digest: str | None = None

    def content_digest(self) -> str:
        """sha256 (hex) of what decides this provider's answers: the loader's code
        (:data:`DIGESTED_MODULES`), the mapping and the file's bytes. Two runs with the same
        digest parse, validate and relabel the file identically (the instruments' calendars,
        the other input, are compared by the backfill itself); computed once per object.

        Raises:
            ProviderError: the file could not be read.
        """
        with self._digest_lock:
            if self._digest is None:
                digest = hashlib.sha256()
                digest.update(_code_digest().encode())
                digest.update(repr(self.mapping).encode())
                try:
                    with open(self.path, "rb") as f:
                        while block := f.read(1 << 22):
                            digest.update(block)
                except OSError as exc:
                    raise ProviderError(PROVIDER, f"cannot read {self.path}: {exc}") from None
                self._digest = digest.hexdigest()
            return self._digest

    # -- reading -------------------------------------------------------------------------------

    def _read_raw(self) -> pd.DataFrame:
        try:
            if self.path.name.endswith(".parquet"):
                frame = pd.read_parquet(self.path)
            elif (fast := self._read_arrow()) is not None:
                frame = fast
            else:
                frame = pd.read_csv(
                    self.path,
                    skiprows=self.mapping.skip_rows,
                    dtype=str,
                    keep_default_na=False,
                    skip_blank_lines=False,
                    compression="infer",
                )
        except OSError as exc:
            raise ProviderError(PROVIDER, f"cannot read {self.path}: {exc}") from None
        except (ValueError, pd.errors.ParserError) as exc:
            raise ProviderConfigError(
                PROVIDER, f"cannot parse {self.path.name}: {safe_text(exc)}"
            ) from None
        frame.columns = [str(c).strip() for c in frame.columns]
        wanted = set(self.mapping.columns.values()) | set(self.mapping.actions.values())
        absent = sorted(wanted - set(frame.columns))
        if absent:
            has = [safe_text(c) for c in frame.columns[:30]]
            raise ProviderConfigError(
                PROVIDER,
                f"{self.path.name}: columns {absent} not in the file; it has {has}"
                + (f" and {len(frame.columns) - 30} more" if len(frame.columns) > 30 else ""),
            )
        # 1-based line numbers: banner lines, then the header, then the records
        frame.index = pd.RangeIndex(len(frame)) + self.mapping.skip_rows + 2
        return frame

    def _read_arrow(self) -> pd.DataFrame | None:
        """The file read by pyarrow's multithreaded CSV reader, every cell as text, exactly as
        the pandas read below would give it; None (the pandas read decides) when the file is
        anything but a plain rectangle of UTF-8 text with distinct column names: a ragged
        row, invalid UTF-8, a duplicate header."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        try:
            names = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(skip_rows=self.mapping.skip_rows),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
            ).schema.names
            if len(set(names)) != len(names) or any(not n.strip() for n in names):
                return None
            table = pacsv.read_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    skip_rows=self.mapping.skip_rows, block_size=1 << 24
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    null_values=[],
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowException, OSError, ValueError):
            return None
        text = pd.StringDtype("pyarrow", na_value=np.nan)
        return table.to_pandas(types_mapper=lambda t: text if t == pa.string() else None)

    def _parse_ts(self, text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
        """Parse timestamps to UTC.

        Returns:
            (ts as ``datetime64[ns, UTC]``, NaT where unparsed; the reason per row or None;
            the reason code per row or None).
        """
        reasons = pd.Series(None, index=text.index, dtype=object)
        codes = pd.Series(None, index=text.index, dtype=object)
        zone = self.mapping.timezone
        out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        if pd.api.types.is_datetime64_any_dtype(text):
            parsed = text
            if parsed.dt.tz is None:
                if zone is None:
                    reasons[:] = "naive timestamp (no UTC offset) and the mapping gives no timezone"
                    codes[:] = "naive_timestamp"
                    return out, reasons, codes
                parsed = parsed.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
            return self._bounded(parsed.dt.tz_convert("UTC"), text.astype(str), reasons, codes)
        if not (
            pd.api.types.is_object_dtype(text) or pd.api.types.is_string_dtype(text)
        ):  # a parquet column of numbers or booleans
            reasons[:] = f"ts: a {text.dtype} column, not timestamps"
            codes[:] = "unparseable_ts"
            return out, reasons, codes
        text = text.astype(str).str.strip()
        if self.mapping.ts_format == _ISO:
            has_offset = text.str.contains(_OFFSET, regex=True)
            aware = pd.to_datetime(text[has_offset], format="ISO8601", utc=True, errors="coerce")
            aware_bad = aware.isna()
            reasons[aware_bad[aware_bad].index] = (
                "ts: cannot parse " + text[has_offset][aware_bad].map(_quote) + " as ISO8601"
            )
            codes[aware_bad[aware_bad].index] = "unparseable_ts"
            aware_ok = aware[~aware_bad]
            naive_text = text[~has_offset]
            naive = pd.to_datetime(naive_text, format="ISO8601", errors="coerce")
        else:
            aware_ok = pd.Series(dtype="datetime64[ns, UTC]")
            naive_text = text
            parsed = pd.to_datetime(text, format=self.mapping.ts_format, errors="coerce")
            if getattr(parsed.dt, "tz", None) is not None:
                bad = parsed.isna()
                reasons[bad[bad].index] = (
                    "ts: cannot parse "
                    + text[bad].map(_quote)
                    + f" with format {self.mapping.ts_format!r}"
                )
                codes[bad[bad].index] = "unparseable_ts"
                return self._bounded(parsed.dt.tz_convert("UTC"), text, reasons, codes)
            naive = parsed
        local_ok = pd.Series(dtype="datetime64[ns, UTC]")
        if len(naive_text):
            unparsed = naive.isna()
            reasons[unparsed[unparsed].index] = (
                "ts: cannot parse "
                + naive_text[unparsed].map(_quote)
                + f" as {self.mapping.ts_format}"
            )
            codes[unparsed[unparsed].index] = "unparseable_ts"
            ok = naive.notna()
            if zone is None:
                reasons[ok[ok].index] = (
                    "naive timestamp "
                    + naive_text[ok].map(_quote)
                    + " (no UTC offset) and the mapping gives no timezone"
                )
                codes[ok[ok].index] = "naive_timestamp"
            elif ok.any():
                inside = naive[ok]
                low, high = MIN_TS.tz_localize(None), MAX_TS.tz_localize(None)
                inside = inside[(inside >= low) & (inside < high)]
                local = inside.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
                bad_local = local.isna()
                reasons[bad_local[bad_local].index] = (
                    "ts "
                    + naive_text[bad_local[bad_local].index].map(_quote)
                    + f" is ambiguous or does not exist in {zone} (DST change)"
                )
                codes[bad_local[bad_local].index] = "ambiguous_local_time"
                local_ok = local[~bad_local].dt.tz_convert("UTC")
                outside = ok & ~ok.index.isin(inside.index)
                out_idx = outside[outside].index
                reasons[out_idx] = (
                    "ts "
                    + naive_text[out_idx].map(_quote)
                    + f" outside [{MIN_TS.date()}, {MAX_TS.date()})"
                )
                codes[out_idx] = "out_of_bounds"
        both = pd.concat([aware_ok, local_ok]) if len(local_ok) else aware_ok
        return self._bounded(both, text, reasons, codes, out)

    @staticmethod
    def _bounded(
        parsed: pd.Series,
        text: pd.Series,
        reasons: pd.Series,
        codes: pd.Series,
        out: pd.Series | None = None,
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """Keep parsed instants inside ``[MIN_TS, MAX_TS)`` (pandas' ns range is 1677-2262;
        a year 9999 would overflow it), the others become NaT with reason ``out_of_bounds``."""
        if out is None:
            out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        parsed = parsed.dropna()
        inside = (parsed >= MIN_TS) & (parsed < MAX_TS)
        outside = inside[~inside].index
        reasons[outside] = (
            "ts " + text[outside].map(_quote) + f" outside [{MIN_TS.date()}, {MAX_TS.date()})"
        )
        codes[outside] = "out_of_bounds"
        good = parsed[inside]
        if len(good):
            out[good.index] = good.dt.as_unit("ns")
        return out, reasons, codes

    def _parse(self) -> _Parsed:
        raw = self._read_raw()
        m = self.mapping
        typed = pd.DataFrame(index=raw.index)
        reasons: list[tuple[pd.Series, pd.Series]] = []
        for col in CANONICAL_COLUMNS:
            if col in m.columns:
                typed[col] = raw[m.columns[col]]
            else:
                typed[col] = m.constants[col]
        for col in ("symbol", "asset_class", "timeframe"):
            typed[col] = typed[col].astype(str).str.strip()
        symbol_why = _per_value(typed["symbol"], symbol_problem)
        reasons.append((symbol_why, symbol_why.where(symbol_why.isna(), "invalid_symbol")))
        ts, ts_reason, ts_code = self._parse_ts(typed["ts"])
        missing = ts.isna() & ts_reason.isna()  # a null in a timestamp column
        ts_reason[missing] = "ts is missing"
        ts_code[missing] = "missing_ts"
        typed["ts"] = ts
        reasons.append((ts_reason, ts_code))
        for col in NUMBER_COLUMNS:
            source = typed[col]
            why = pd.Series(None, index=raw.index, dtype=object)
            if pd.api.types.is_bool_dtype(source) or not (
                pd.api.types.is_numeric_dtype(source)
                or pd.api.types.is_object_dtype(source)
                or pd.api.types.is_string_dtype(source)
            ):
                why[:] = f"{col}: a {source.dtype} column, not numbers"
                numbers = pd.Series(float("nan"), index=raw.index)
            else:
                numbers = (
                    pd.to_numeric(source, errors="coerce")
                    if pd.api.types.is_numeric_dtype(source)
                    else _to_float(source.astype(str).str.strip())
                )
                if not pd.api.types.is_numeric_dtype(source):
                    text = source.astype(str).str.strip()
                    literal_nan = text.str.lower().isin(["nan", "inf", "-inf", "+inf", "infinity"])
                    failed = numbers.isna() & ~literal_nan
                    why[failed] = (
                        f"{col}: cannot parse " + text[failed].map(_quote) + " as a number"
                    )
            reasons.append((why, why.where(why.isna(), "unparseable_number")))
            typed[col] = numbers.astype("float64")
        bad_tf = ~typed["timeframe"].isin(list(_timeframes()))
        why_tf = pd.Series(None, index=raw.index, dtype=object)
        why_tf[bad_tf] = (
            "timeframe "
            + typed["timeframe"][bad_tf].map(_quote)
            + f" not supported; expected one of {', '.join(_timeframes())}"
        )
        reasons.append((why_tf, why_tf.where(why_tf.isna(), "unsupported_timeframe")))
        typed["source_row"] = raw.index.to_numpy(dtype="int64")
        combined = pd.concat([r for r, _ in reasons], axis=1)
        combined_codes = pd.concat([c for _, c in reasons], axis=1)
        has_reason = combined.notna().any(axis=1).to_numpy()
        shown, cut = _key_parts(typed["symbol"], typed["timeframe"])
        rejected: dict[tuple[str, str], list[Rejected]] = {}
        if has_reason.any():
            keys = series_keys(typed["symbol"][has_reason], typed["timeframe"][has_reason])
            for label in raw.index[has_reason]:
                why = "; ".join(str(r) for r in combined.loc[label] if isinstance(r, str))
                code = next(str(c) for c in combined_codes.loc[label] if isinstance(c, str))
                rejected.setdefault(keys[label], []).append(
                    Rejected(
                        int(label),
                        why,
                        {safe_text(k): safe_text(v) for k, v in raw.loc[label].items()},
                        code,
                    )
                )
        good = typed[~has_reason][list(CANDLE_FRAME_COLUMNS)]
        series = []
        inst = m.instrument
        for (symbol, timeframe), group in good.groupby(["symbol", "timeframe"], sort=True):
            asset_class = str(group["asset_class"].iloc[0])
            series.append(
                Series(
                    Instrument(
                        symbol=str(symbol),
                        asset_class=inst.get("asset_class", asset_class),
                        calendar=inst.get("calendar"),
                        exchange=inst.get("exchange"),
                        quote_currency=inst.get("quote_currency"),
                    ),
                    str(timeframe),
                    group["ts"].min().to_pydatetime(),
                    group["ts"].max().to_pydatetime(),
                )
            )
        counts = pd.DataFrame({"s": shown, "t": cut}).groupby(["s", "t"], sort=False).size()
        input_counts = {(str(k[0]), str(k[1])): int(n) for k, n in counts.items()}
        positions = {
            (str(k[0]), str(k[1])): v
            for k, v in good.groupby(["symbol", "timeframe"], sort=False).indices.items()
        }
        by_key = {(s.instrument.symbol, s.timeframe): s for s in series}
        return _Parsed(
            good,
            raw,
            rejected,
            series,
            input_counts,
            self._actions(raw, good),
            positions,
            by_key,
        )

    def _actions(self, raw: pd.DataFrame, good: pd.DataFrame) -> pd.DataFrame:
        """Splits and dividends named by the mapping's ``[actions]`` columns, for valid rows:
        a split ratio other than 1 (empty, 0 and 1 mean none), a dividend above 0. The
        effective date is the row's date in the instrument calendar's zone (else the mapping's
        timezone, else UTC). Columns: symbol, timeframe, ts, action."""
        m = self.mapping
        rows: list[dict[str, object]] = []
        if not m.actions or len(good) == 0:
            return pd.DataFrame(rows, columns=["symbol", "timeframe", "ts", "action"])
        from mdq.validation import calendar_zone

        calendar = m.instrument.get("calendar")
        zone = calendar_zone(calendar)[0] if calendar else (m.timezone or "UTC")
        dates = good["ts"].dt.tz_convert(zone).dt.date
        for kind, column in (
            ("split", m.actions.get("split_ratio")),
            ("dividend", m.actions.get("dividend")),
        ):
            if column is None:
                continue
            values = pd.to_numeric(raw.loc[good.index, column], errors="coerce")
            if kind == "split":
                chosen = values[values.notna() & (values > 0) & (values != 1)]
            else:
                chosen = values[values.notna() & (values > 0)]
            for label, value in chosen.items():
                symbol = str(good.at[label, "symbol"])
                rows.append(
                    {
                        "symbol": symbol,
                        "timeframe": good.at[label, "timeframe"],
                        "ts": good.at[label, "ts"],
                        "action": CorporateAction(
                            symbol,
                            kind,
                            dates[label],
                            ratio=float(value) if kind == "split" else None,
                            cash_amount=float(value) if kind == "dividend" else None,
                            currency=m.instrument.get("quote_currency")
                            if kind == "dividend"
                            else None,
                        ),
                    }
                )
        return pd.DataFrame(rows, columns=["symbol", "timeframe", "ts", "action"])

    def _data(self) -> _Parsed:
        with self._lock:
            if self._parsed is None:
                self._parsed = self._parse()
            return self._parsed

    # -- the Provider interface ------------------------------------------------------------------

    def list_series(self) -> list[Series]:
        """The (symbol, timeframe) series in the file, with their first and last ``ts``.

        Raises:
            ProviderError: the file could not be read.
            ProviderConfigError: the mapping does not fit the file.
        """
        return list(self._data().series)

    def input_counts(self) -> dict[tuple[str, str], int]:
        """Rows of the file per (symbol, timeframe) as written in it (valid and rejected;
        unstorable symbols keyed ``(invalid symbol)``), for the backfill's accounting.

        Raises:
            ProviderError: the file could not be read.
            ProviderConfigError: the mapping does not fit the file.
        """
        return dict(self._data().input_counts)

    def series_timestamps(self, symbol: str, timeframe: str) -> pd.Series:
        """The valid candle open times of one series (UTC-aware, file order), for inferring
        its calendar and label convention.

        Raises:
            ProviderError: the file could not be read.
            ProviderConfigError: the mapping does not fit the file.
        """
        data = self._data()
        where = data.positions.get((symbol, timeframe))
        if where is None:
            return data.candles["ts"].iloc[:0]
        return data.candles["ts"].iloc[where]

    def rejected_series(self) -> dict[tuple[str, str], list[Rejected]]:
        """Rows that could not be parsed, per (symbol, timeframe) as written in the file,
        including series none of whose rows is valid (they appear in no :meth:`list_series`).

        Raises:
            ProviderError: the file could not be read.
            ProviderConfigError: the mapping does not fit the file.
        """
        return {key: list(rows) for key, rows in self._data().rejected.items()}

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """The file's candles of one series inside ``[window.start, window.end)``.

        Rows that could not be parsed are returned as ``rejected`` on every fetch of their
        series (their position in time is unknown). An empty answer is confirmed (BH-07) when
        the file holds the series and the window overlaps its time range: the file is the whole
        source, so a hole inside it is a true hole.

        Raises:
            ProviderError: the file could not be read.
            ProviderConfigError: the mapping does not fit the file.
        """
        data = self._data()
        start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
        where = data.positions.get((symbol, timeframe))
        of_series_rows = data.candles.iloc[where] if where is not None else data.candles.iloc[:0]
        ts = of_series_rows["ts"]
        mask = ((ts >= start) & (ts < end)).to_numpy()
        candles = of_series_rows[mask] if mask.any() else empty_candles()
        of_series = len(of_series_rows)
        known = data.by_key.get((symbol, timeframe))
        confirms = bool(
            known is not None
            and known.first_ts is not None
            and known.last_ts is not None
            and window.start <= known.last_ts
            and window.end > known.first_ts
        )
        return FetchResult(
            candles=candles,
            rejected=list(data.rejected.get((symbol, timeframe), [])),
            fetched_at=datetime.now(UTC),
            source=self.path.name,
            source_confirms_empty=confirms,
            raw=data.raw,
            outside_window=of_series - len(candles),
            corporate_actions=self._actions_in(data.actions, symbol, timeframe, start, end),
        )

    @staticmethod
    def _actions_in(
        actions: pd.DataFrame, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[CorporateAction, ...]:
        if len(actions) == 0:
            return ()
        mask = (
            (actions["symbol"] == symbol)
            & (actions["timeframe"] == timeframe)
            & (actions["ts"] >= start)
            & (actions["ts"] < end)
        )
        return tuple(actions.loc[mask, "action"])


#: The modules whose code decides what a file's rows become (parsing, validation, labels,
#: windows, the write): part of :meth:`CsvFileProvider.content_digest`.
DIGESTED_MODULES: tuple[str, ...] = (
    "mdq.providers.csv_file",
    "mdq.providers.base",
    "mdq.validation",
    "mdq.labels",
    "mdq.windows",
    "mdq.instrument_calendars",
    "mdq.backfill_core",
    "mdq.db.backfill",
)


@functools.cache
def _code_digest() -> str:
    """sha256 (hex) of the source of :data:`DIGESTED_MODULES` (read once per process)."""
    import importlib

    digest = hashlib.sha256()
    for name in DIGESTED_MODULES:
        module = importlib.import_module(name)
        digest.update(name.encode())
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def sample_files() -> list[Path]:
    """The real data files shipped in ``mdq/sample_data``, sorted by name (each has its
    mapping beside it; see ``mdq/sample_data/README.md`` for origin and licence)."""
    from importlib import resources

    folder = Path(str(resources.files("mdq") / "sample_data"))
    return sorted(p for p in folder.iterdir() if find_mapping(p) is not None)


def _timeframes() -> tuple[str, ...]:
    from mdq.validation import TIMEFRAMES

    return TIMEFRAMES


__all__ = ["MAPPING_SUFFIX", "CsvFileProvider", "CsvMapping", "find_mapping", "sample_files"]
