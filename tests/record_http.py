"""Re-record a vendor's answers for the offline tests (needs network access).

Runs the real provider against the real API with a recording transport and writes every
request and answer in the format :mod:`tests.http_replay` replays::

    python -m tests.record_http ccxt --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --start 2024-05-06T00:00:00Z --end 2024-05-06T06:00:00Z \\
        --out tests/fixtures/http/ccxt/binance_klines_btcusdt_1h.json
    python -m tests.record_http yfinance --symbol AAPL --timeframe 1d \\
        --start 2020-08-06T00:00:00Z --end 2020-09-05T00:00:00Z \\
        --out tests/fixtures/http/yfinance/aapl_1d_split.json

ccxt is recorded through its ``requests`` session, yfinance through its default ``curl_cffi``
session (the production transport). Each interaction is matched on replay by URL and the
query parameters recorded in ``params``; yfinance's ``crumb`` parameter is dropped (it changes
per session). Review a new recording before committing it: trim what the test does not need
(a long ``exchangeInfo``), and keep the vendor's JSON otherwise exactly as answered.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: Headers kept in a recording (the rest is transport noise).
KEEP_HEADERS = ("content-type", "date", "retry-after", "x-mbx-used-weight", "x-mbx-used-weight-1m")


def _interaction(method: str, url: str, status: int, headers: Any, body: bytes) -> dict[str, Any]:
    parts = urlsplit(url)
    params = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "crumb"}
    response: dict[str, Any] = {
        "status": status,
        "headers": {k: v for k, v in dict(headers).items() if k.lower() in KEEP_HEADERS},
    }
    try:
        response["json"] = json.loads(body)
    except ValueError:
        response["text"] = body.decode("utf-8", "replace")
    return {
        "request": {
            "method": method,
            "url": urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
            "params": params,
        },
        "response": response,
    }


def record_ccxt(args: argparse.Namespace, window: Any, log: list[dict[str, Any]]) -> None:
    """Run the ccxt provider with a requests session that records each exchange."""
    import requests
    from requests.adapters import HTTPAdapter

    from mdq.providers.ccxt_provider import CcxtProvider

    class Recording(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            response = super().send(request, **kwargs)
            log.append(
                _interaction(
                    request.method, request.url, response.status_code, response.headers,
                    response.content,
                )
            )  # fmt: skip
            return response

    session = requests.Session()
    session.mount("https://", Recording())
    provider = CcxtProvider(args.exchange, [args.symbol], [args.timeframe], session=session)
    [series] = provider.list_series()
    provider.fetch_candles(series.instrument.symbol, args.timeframe, window)


def record_yfinance(args: argparse.Namespace, window: Any, log: list[dict[str, Any]]) -> None:
    """Run the yfinance provider with curl_cffi's Session.request recording each exchange."""
    from curl_cffi.requests import Session

    from mdq.providers.yfinance_provider import YFinanceProvider

    real = Session.request

    def request(self: Any, method: str, url: str, *a: Any, **kw: Any) -> Any:
        response = real(self, method, url, *a, **kw)
        log.append(
            _interaction(
                method.upper(), response.url, response.status_code, response.headers,
                response.content,
            )
        )  # fmt: skip
        return response

    Session.request = request  # type: ignore[method-assign]
    try:
        provider = YFinanceProvider([args.symbol], [args.timeframe])
        provider.list_series()
        provider.fetch_candles(args.symbol, args.timeframe, window)
    finally:
        Session.request = real  # type: ignore[method-assign]


def main() -> None:
    """Command line: see the module docstring."""
    from mdq.windows import Window

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("provider", choices=["ccxt", "yfinance"])
    parser.add_argument("--exchange", default="binance")
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--timeframe", required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    window = Window(
        datetime.fromisoformat(args.start.replace("Z", "+00:00")),
        datetime.fromisoformat(args.end.replace("Z", "+00:00")),
    )
    log: list[dict[str, Any]] = []
    (record_ccxt if args.provider == "ccxt" else record_yfinance)(args, window, log)
    args.out.write_text(
        json.dumps({"comment": f"recorded {datetime.now().isoformat()}", "interactions": log},
                   indent=1)
    )  # fmt: skip
    print(f"{len(log)} interactions written to {args.out}")


if __name__ == "__main__":
    main()
