"""The session's cookie jar on the direct path: the Cookie header a request carries, and the
cookies an answer sets, with the standard library's cookie policy (domain, path, expiry, secure).

A vendor that logs in with a session cookie gets it from the login answer (the `requests` session)
and must send it on every call; an answer may renew it. The jar is the session's own, so both
paths share one set of cookies. Only consulted when the jar holds a cookie or an answer sets one.
"""

from __future__ import annotations

import urllib.request
from http.client import HTTPResponse
from http.cookiejar import CookieJar
from typing import cast

from functions.sync_worker.source.http_message import Headers


def _request(url: str, headers: Headers) -> urllib.request.Request:
    # unverifiable as `requests` marks its requests for the jar: the vendor's own calls.
    request = urllib.request.Request(url, unverifiable=True)
    host = headers.get("Host")
    if host:
        request.add_header("Host", host)
    return request


def cookie_header(jar: CookieJar, url: str, headers: Headers) -> str | None:
    """The Cookie header the jar gives a request to `url`, None when no cookie applies."""
    request = _request(url, headers)
    jar.add_cookie_header(request)
    return request.unredirected_hdrs.get("Cookie")


class _SetCookieLines:
    """What `CookieJar.extract_cookies` reads of an answer: `info().get_all(name, default)`."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def info(self) -> _SetCookieLines:
        return self

    def get_all(self, name: str, default: list[str]) -> list[str]:
        return list(self._lines) if name.lower() == "set-cookie" else default


def extract_cookies(jar: CookieJar, url: str, set_cookies: list[str]) -> None:
    """The cookies of an answer's Set-Cookie lines into the jar, as the jar's policy allows."""
    answer = cast(HTTPResponse, _SetCookieLines(set_cookies))  # the jar reads nothing else of it
    jar.extract_cookies(answer, _request(url, Headers()))
