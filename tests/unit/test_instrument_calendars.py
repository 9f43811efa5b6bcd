"""Which calendar an instrument gets, and why (mdq.instrument_calendars)."""

from __future__ import annotations

import pandas as pd
import pytest

from mdq.instrument_calendars import CalendarDecision, decide_calendar, suffix_calendar


def stamps(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True))


# 2024-03-11..15 Mon-Fri; 16/17 the weekend
NY_MIDNIGHT_WEEKDAYS = stamps(
    "2024-03-11T04:00Z", "2024-03-12T04:00Z", "2024-03-13T04:00Z", "2024-03-14T04:00Z"
)
LONDON_MIDNIGHT_WEEKDAYS = stamps("2024-03-11T00:00Z", "2024-03-12T00:00Z")
EVERY_DAY = stamps(*[f"2024-03-{d:02d}T00:00Z" for d in range(11, 25)])
TOKYO_OPEN_1H = stamps(
    "2024-03-11T00:00Z", "2024-03-11T01:00Z", "2024-03-12T00:00Z", "2024-03-12T01:00Z"
)


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        pytest.param("VOD.L", "XLON", id="london"),
        pytest.param("SHOP.TO", "XTSE", id="toronto"),
        pytest.param("SAP.DE", "XETR", id="xetra"),
        pytest.param("MC.PA", "XPAR", id="paris"),
        pytest.param("7203.T", "XTKS", id="tokyo"),
        pytest.param("0700.HK", "XHKG", id="hong-kong"),
        pytest.param("BHP.AX", "XASX", id="sydney"),
        pytest.param("BRK.B", None, id="share-class-not-a-suffix"),
        pytest.param("AAPL", None, id="no-suffix"),
    ],
)
def test_suffix_calendar(symbol: str, expected: str | None) -> None:
    assert suffix_calendar(symbol) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"symbol": "VOD.L", "asset_class": "stock", "mapping": "XNYS"},
            CalendarDecision("XNYS", "mapping"),
            id="mapping-wins",
        ),
        pytest.param(
            {"symbol": "VOD.L", "asset_class": "stock", "known": "XLON"},
            CalendarDecision("XLON", "instruments"),
            id="instruments-row-next",
        ),
        pytest.param(
            {"symbol": "VOD.L", "asset_class": "stock", "ts": EVERY_DAY},
            CalendarDecision("XLON", "suffix"),
            id="suffix-before-data",
        ),
        pytest.param(
            {"symbol": "SPX", "asset_class": "index", "ts": NY_MIDNIGHT_WEEKDAYS},
            CalendarDecision("XNYS", "inferred"),
            id="index-daily-at-new-york-midnight",
        ),
        pytest.param(
            {"symbol": "FTSE", "asset_class": "index", "ts": LONDON_MIDNIGHT_WEEKDAYS},
            CalendarDecision("XLON", "inferred"),
            id="index-daily-at-london-midnight",
        ),
        pytest.param(
            {"symbol": "N225", "asset_class": "index", "timeframe": "1h", "ts": TOKYO_OPEN_1H},
            CalendarDecision("XTKS", "inferred"),
            id="intraday-first-bar-at-tokyo-open",
        ),
        pytest.param(
            {"symbol": "GOLDX", "asset_class": "commodity", "ts": EVERY_DAY},
            CalendarDecision("24/7", "inferred"),
            id="weekend-trading-is-24-7",
        ),
        pytest.param(
            {"symbol": "VFIAX", "asset_class": "fund"},
            CalendarDecision("XNYS", "asset_class"),
            id="fund-default",
        ),
        pytest.param(
            {"symbol": "WHEAT", "asset_class": "commodity"},
            CalendarDecision("XNYS", "asset_class"),
            id="unknown-class-weekday-never-24-7",
        ),
        pytest.param(
            {"symbol": "BTCUSD", "asset_class": "crypto"},
            CalendarDecision("24/7", "asset_class"),
            id="crypto-default",
        ),
    ],
)
def test_decide_calendar_precedence(kwargs: dict[str, object], expected: CalendarDecision) -> None:
    args = {"timeframe": "1d", **kwargs}
    assert decide_calendar(**args) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("7:1", 7.0, id="seven-for-one"),
        pytest.param("1:10", 0.1, id="reverse-one-for-ten"),
        pytest.param("3:2", 1.5, id="three-for-two"),
        pytest.param("0.5", 0.5, id="decimal"),
        pytest.param(" 2 ", 2.0, id="spaces"),
    ],
)
def test_parse_split_ratio(text: str, expected: float) -> None:
    from mdq.cli_corporate_actions import parse_split_ratio

    assert parse_split_ratio(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "7/1",
            "split ratio '7/1' not understood; expected NEW:OLD such as 7:1 or 1:10, or a "
            "decimal such as 0.5",
            id="slash",
        ),
        pytest.param(
            "1:0",
            "split ratio '1:0' not understood; expected NEW:OLD such as 7:1 "
            "or 1:10, or a decimal such as 0.5",
            id="zero-old",
        ),
        pytest.param(
            "1:1",
            "split ratio '1:1' not usable; expected a positive ratio other than 1",
            id="no-split",
        ),
        pytest.param(
            "-2",
            "split ratio '-2' not usable; expected a positive ratio other than 1",
            id="negative",
        ),
        pytest.param(
            "nan", "split ratio 'nan' not usable; expected a positive ratio other than 1", id="nan"
        ),
    ],
)
def test_parse_split_ratio_refuses(text: str, message: str) -> None:
    from mdq.cli_corporate_actions import parse_split_ratio
    from mdq.exceptions import TerminalError

    with pytest.raises(TerminalError) as raised:
        parse_split_ratio(text)
    assert str(raised.value) == message
