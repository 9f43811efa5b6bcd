"""Replay recorded HTTP responses at the transport, so vendor libraries run unchanged offline.

A recording (``tests/fixtures/http/<vendor>/<name>.json``) is a list of interactions::

    {"interactions": [
        {"request": {"method": "GET", "url": "https://api.binance.com/api/v3/klines",
                     "params": {"symbol": "BTCUSDT", "startTime": "1714521600000"}},
         "response": {"status": 200, "headers": {"Date": "..."}, "json": [[...], ...]}}]}

``url`` is matched without its query string; every recorded ``params`` entry must equal the
request's (other request parameters are free). Matching interactions are served in file order,
each once, except the last one, which is served again to any later request (a re-run sees the
same answer; "429 then 200" is two interactions). ``json`` bodies are the vendor's JSON exactly
as it answered; ``text`` bodies are sent as they are. A request nothing matches gets a 404 and
is listed in :attr:`Replay.unmatched`, so a test can assert that no request went unanswered.

Two fronts serve the same recordings: :meth:`Replay.session` is a ``requests.Session`` whose
transport adapter answers (ccxt's transport; yfinance accepts it too), and :meth:`Replay.patch_curl`
replaces ``curl_cffi.requests.Session.request`` (yfinance's default transport).
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "http"


@dataclass
class Served:
    """One request the replay answered: method, URL without query, its params, the status."""

    method: str
    url: str
    params: dict[str, str]
    status: int


@dataclass
class Replay:
    """Recorded interactions and what was asked of them."""

    interactions: list[dict[str, Any]] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    _used: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, *names: str) -> Replay:
        """Load recordings by name (``"ccxt/binance_markets"``), in order."""
        replay = cls()
        for name in names:
            data = json.loads((FIXTURES / f"{name}.json").read_text())
            replay.interactions.extend(data["interactions"])
        return replay

    def answer(self, method: str, url: str) -> tuple[int, dict[str, str], bytes, str]:
        """The recorded (status, headers, body, full url) for a request."""
        parts = urlsplit(url)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            matches = [
                i
                for i, item in enumerate(self.interactions)
                if item["request"].get("method", "GET") == method
                and item["request"]["url"] == base
                and all(
                    params.get(k) == str(v) for k, v in item["request"].get("params", {}).items()
                )
            ]
            if not matches:
                self.unmatched.append(f"{method} {url}")
                self.served.append(Served(method, base, params, 404))
                return 404, {"Content-Type": "text/plain"}, b"no recording", url
            consumable = [i for i in matches[:-1] if i not in self._used]
            index = consumable[0] if consumable else matches[-1]
            self._used.add(index)
            response = self.interactions[index]["response"]
            status = int(response.get("status", 200))
            self.served.append(Served(method, base, params, status))
        headers = {"Content-Type": "application/json;charset=utf-8", **response.get("headers", {})}
        if "json" in response:
            body = json.dumps(response["json"], separators=(",", ":")).encode()
        else:
            body = response.get("text", "").encode()
        return status, headers, body, url

    def requests_to(self, url: str) -> list[Served]:
        """The served requests whose URL (without query) is ``url``, in order."""
        return [s for s in self.served if s.url == url]

    # -- fronts ----------------------------------------------------------------------------

    def session(self) -> requests.Session:
        """A ``requests.Session`` answered by this replay (no socket is opened)."""
        session = requests.Session()
        adapter = _ReplayAdapter(self)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def patch_requests(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Answer every ``requests`` HTTP(S) request in the process from this replay."""
        adapter = _ReplayAdapter(self)
        monkeypatch.setattr(
            requests.adapters.HTTPAdapter, "send", lambda _self, req, **kw: adapter.send(req)
        )

    def patch_curl(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Answer every ``curl_cffi`` request in the process from this replay."""
        from curl_cffi.requests import Response as CurlResponse
        from curl_cffi.requests import Session as CurlSession
        from curl_cffi.requests.headers import Headers

        replay = self

        def request(_self: Any, method: str, url: str, params: Any = None, **_kw: Any) -> Any:
            if params:
                query = urlencode({k: v for k, v in dict(params).items() if v is not None})
                url = f"{url}{'&' if '?' in url else '?'}{query}"
            status, headers, body, full = replay.answer(method.upper(), url)
            response = CurlResponse()
            response.status_code = status
            response.reason = http.client.responses.get(status, "")
            response.ok = status < 400
            response.headers = Headers(headers)
            response.content = body
            response.url = full
            return response

        monkeypatch.setattr(CurlSession, "request", request)


class _ReplayAdapter(BaseAdapter):
    """A ``requests`` transport adapter answering from a :class:`Replay`."""

    def __init__(self, replay: Replay) -> None:
        super().__init__()
        self.replay = replay

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        status, headers, body, url = self.replay.answer(request.method or "GET", request.url or "")
        response = requests.Response()
        response.status_code = status
        response.reason = http.client.responses.get(status, "")
        response.headers = CaseInsensitiveDict(headers)
        response._content = body
        response.url = url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        """Nothing to close."""
