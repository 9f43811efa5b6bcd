"""Which trading calendar an instrument trades on, and how that was decided.

Plain logic (no database, no Prefect). Order of precedence (first that answers wins):

1. ``mapping``: the source says so (a mapping's ``[instrument] calendar``);
2. ``instruments``: the instruments row already names one (set by hand or by an earlier
   decision of rank 1-3);
3. ``suffix``: the symbol's exchange suffix (``VOD.L`` → XLON, ``SHOP.TO`` → XTSE, ...;
   :data:`SUFFIX_CALENDARS`, Yahoo Finance's suffix convention);
4. ``inferred`` (not for crypto and forex, whose markets are not exchange calendars): the
   data: rows on Saturdays and Sundays (UTC) mean 24/7; weekday-only daily
   labels all at local midnight of one exchange's zone mean that exchange; weekday-only
   intraday rows whose first bar of the day sits at one exchange's regular open mean that
   exchange;
5. ``asset_class``: the asset class's default (stock/etf/fund/index/bond → XNYS, forex → FX,
   crypto → 24/7). An unknown asset class goes to 24/7 only when its data trade on weekends;
   a weekday instrument is never put on 24/7 silently (it gets XNYS, and the source says
   ``asset_class`` so ``mdq instruments list`` shows it was a default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from mdq.calendars import DEFAULT_CALENDAR_BY_ASSET_CLASS

TCalendarSource = Literal["mapping", "instruments", "suffix", "inferred", "asset_class"]

#: Exchange suffix of a symbol → exchange_calendars code (Yahoo Finance suffixes; the codes are
#: ISO 10383 MICs as exchange_calendars names them).
SUFFIX_CALENDARS: dict[str, str] = {
    "L": "XLON",
    "IL": "XLON",
    "TO": "XTSE",
    "V": "XTSE",
    "DE": "XETR",
    "F": "XFRA",
    "PA": "XPAR",
    "AS": "XAMS",
    "BR": "XBRU",
    "LS": "XLIS",
    "MI": "XMIL",
    "MC": "XMAD",
    "SW": "XSWX",
    "VI": "XWBO",
    "ST": "XSTO",
    "CO": "XCSE",
    "HE": "XHEL",
    "OL": "XOSL",
    "IR": "XDUB",
    "WA": "XWAR",
    "PR": "XPRA",
    "BD": "XBUD",
    "IS": "XIST",
    "TA": "XTAE",
    "AT": "ASEX",
    "T": "XTKS",
    "HK": "XHKG",
    "AX": "XASX",
    "NZ": "XNZE",
    "SS": "XSHG",
    "SZ": "XSHG",
    "KS": "XKRX",
    "KQ": "XKRX",
    "TW": "XTAI",
    "SI": "XSES",
    "BO": "XBOM",
    "NS": "XBOM",
    "JK": "XIDX",
    "BK": "XBKK",
    "KL": "XKLS",
    "SA": "BVMF",
    "MX": "XMEX",
    "SN": "XSGO",
    "BA": "XBUE",
    "JO": "XJSE",
    "SR": "XSAU",
}

#: Default calendar per asset class (mirrored by the dbt var ``calendar_by_asset_class``).
ASSET_CLASS_CALENDARS: dict[str, str] = DEFAULT_CALENDAR_BY_ASSET_CLASS

#: Exchanges tried when inferring a calendar from the data, one per zone (the zone's main
#: exchange); order = tie-break.
_INFER_CANDIDATES: tuple[str, ...] = (
    "XNYS",
    "XLON",
    "XETR",
    "XPAR",
    "XTKS",
    "XHKG",
    "XASX",
    "XTSE",
    "XSWX",
    "XSHG",
    "XKRX",
    "XBOM",
    "BVMF",
)

#: Share of rows on Saturday/Sunday (UTC) from which data count as trading at weekends.
WEEKEND_SHARE = 0.02


@dataclass(frozen=True)
class CalendarDecision:
    """A calendar and how it was chosen.

    Attributes:
        calendar: exchange_calendars code, ``24/7`` or ``FX``.
        source: which rule decided (:data:`TCalendarSource`).
    """

    calendar: str
    source: TCalendarSource


def suffix_calendar(symbol: str) -> str | None:
    """The calendar of a symbol's exchange suffix (``VOD.L`` → ``XLON``), or None.

    Only the part after the last dot counts, case-insensitively; ``BRK.B`` (a share class) has
    no known suffix and gives None.
    """
    if "." not in symbol:
        return None
    return SUFFIX_CALENDARS.get(symbol.rsplit(".", 1)[1].upper())


def trades_weekends(ts: pd.Series) -> bool:
    """True when at least :data:`WEEKEND_SHARE` of the UTC-aware ``ts`` fall on Saturday or
    Sunday (UTC) and some fall on each of them (a 24/7 market)."""
    if len(ts) == 0:
        return False
    days = ts.dt.tz_convert("UTC").dt.dayofweek
    weekend = days >= 5
    return bool(weekend.mean() >= WEEKEND_SHARE and (days == 5).any() and (days == 6).any())


def infer_calendar(ts: pd.Series, timeframe: str) -> str | None:
    """The calendar the data point to, or None when they do not tell.

    Args:
        ts: UTC-aware candle open times of one series.
        timeframe: the series' timeframe.

    Returns:
        ``24/7`` for weekend trading; for weekday data an exchange of
        :data:`_INFER_CANDIDATES` whose zone's local midnight (daily) or regular open (intraday:
        the first bar of each day, in at least 80 % of the days) the labels sit on; else None.
    """
    from mdq.validation import calendar_zone

    ts = ts.dropna()
    if len(ts) == 0:
        return None
    if trades_weekends(ts):
        return "24/7"
    for code in _INFER_CANDIDATES:
        zone, open_minute = calendar_zone(code)
        local = ts.dt.tz_convert(zone)
        minutes = local.dt.hour * 60 + local.dt.minute
        if timeframe == "1d":
            if bool((minutes == 0).all()):
                return code
            continue
        first = minutes.groupby(local.dt.date).min()
        if len(first) and float((first == open_minute).mean()) >= 0.8:
            return code
    return None


def decide_calendar(
    symbol: str,
    asset_class: str,
    timeframe: str,
    *,
    mapping: str | None = None,
    known: str | None = None,
    ts: pd.Series | None = None,
) -> CalendarDecision:
    """Choose an instrument's calendar by the precedence of the module docstring.

    Args:
        symbol: the symbol.
        asset_class: its asset class (any text).
        timeframe: the series' timeframe (for inference).
        mapping: the source's calendar, if it names one.
        known: the instruments row's calendar, if there is one.
        ts: the series' UTC-aware candle open times (for inference), if available.

    Returns:
        The calendar and the rule that chose it.
    """
    if mapping:
        return CalendarDecision(mapping, "mapping")
    if known:
        return CalendarDecision(known, "instruments")
    by_suffix = suffix_calendar(symbol)
    if by_suffix:
        return CalendarDecision(by_suffix, "suffix")
    default = ASSET_CLASS_CALENDARS.get(asset_class)
    if default in ("24/7", "FX"):  # markets off exchange calendars: nothing to infer
        return CalendarDecision(default, "asset_class")
    if ts is not None:
        inferred = infer_calendar(ts, timeframe)
        if inferred:
            return CalendarDecision(inferred, "inferred")
    if default is None:
        weekend = ts is not None and trades_weekends(ts.dropna())
        default = "24/7" if weekend else "XNYS"
    return CalendarDecision(default, "asset_class")
