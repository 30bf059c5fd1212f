"""The vendor call's request and answer as small typed objects of our own.

Why not `requests.PreparedRequest` and `requests.Response` on the hot path: building them was
measured at about a sixth of the worker's CPU per station (a `CaseInsensitiveDict` copied through
`MutableMapping.update`, URL re-quoting and re-parsing, body preparation, content-type parsing
through the email package), for fields the worker never reads. What the worker does read (headers
case-insensitively, the JSON body, the final URL, Link headers, the request that was sent for
its credential) is here, computed when asked for. The `requests` session path (`trust_env`)
still makes `requests` objects; `PreparedView` and `VendorResponse.of` make them look like these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, ValuesView
from typing import Any, Protocol

import orjson
import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, parse_header_links

#: Every digit byte written as "0": a body whose translation holds `_LONG_NUMBER` has a run of at
#: least 19 digits somewhere (in a number or a string; either way the stdlib decoder reads it).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
#: orjson reads integers exactly only in [-2**63, 2**64 - 1] and turns longer ones into floats
#: without an error (a 30-digit device id would change silently); every integer of at most 18
#: digits is inside that range, so a body without a run of 19 digits decodes the same either way.
_LONG_NUMBER = b"0" * 19


def decode_json(content: bytes) -> Any:
    """`json.loads(content)` as orjson computes it, in about a quarter of the time: orjson is used
    only where it gives the same value (no run of 19 digits, see above), and anything it refuses
    (NaN, a BOM, UTF-16, lone surrogates, numbers beyond a double, invalid UTF-8) goes to the stdlib,
    which then decides as it always did."""
    if _LONG_NUMBER not in content.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


class Headers(MutableMapping[str, str]):
    """Header names case-insensitive, each kept as last spelled; a copy is one dict copy, which is
    what a per-endpoint template of static headers costs per call."""

    __slots__ = ("_store",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self._store[name.lower()] = (name, value)

    def copy(self) -> Headers:
        clone = Headers.__new__(Headers)
        clone._store = self._store.copy()
        return clone

    def pairs(self) -> ValuesView[tuple[str, str]]:
        """(name as spelled, value) of every header, for the wire."""
        return self._store.values()

    def add(self, name: str, value: str) -> str:
        """A header line received: a repeated name's values joined with ", " (RFC 9110 5.3).
        Returns the lower-case name."""
        key = name.lower()
        found = self._store.get(key)
        self._store[key] = (name, value) if found is None else (found[0], f"{found[1]}, {value}")
        return key

    def __getitem__(self, name: str) -> str:
        return self._store[name.lower()][1]

    def get(self, name: str, default: Any = None) -> Any:  # MutableMapping's is a generic slow path
        found = self._store.get(name.lower())
        return default if found is None else found[1]

    def __setitem__(self, name: str, value: str) -> None:
        self._store[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._store[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"Headers({dict(self._store.values())!r})"


class VendorRequest(Protocol):
    """What an auth object reads and signs: the URL (a query-parameter key) and the headers."""

    url: str

    def header(self, name: str) -> str | None: ...

    def set_header(self, name: str, value: str) -> None: ...


class OutgoingRequest:
    """One vendor request as it goes on the wire."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: Headers, body: bytes | None) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body

    def header(self, name: str) -> str | None:
        value: str | None = self.headers.get(name)
        return value

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value


class PreparedView:
    """A `requests.PreparedRequest` (the session path) seen as a `VendorRequest`."""

    def __init__(self, request: requests.PreparedRequest) -> None:
        self._request = request

    @property
    def url(self) -> str:
        return self._request.url or ""

    @url.setter
    def url(self, value: str) -> None:
        self._request.url = value

    def header(self, name: str) -> str | None:
        value = self._request.headers.get(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value

    def set_header(self, name: str, value: str) -> None:
        self._request.headers[name] = value


class VendorResponse:
    """One final vendor answer, its body read and decoded (gzip/deflate), not yet parsed."""

    __slots__ = ("content", "headers", "reason", "request", "set_cookies", "status_code", "url")

    def __init__(
        self,
        status_code: int,
        reason: str,
        headers: Mapping[str, str],
        content: bytes,
        url: str,
        set_cookies: list[str] | None = None,
    ) -> None:
        self.status_code, self.reason, self.headers = status_code, reason, headers
        self.content, self.url = content, url
        #: Every Set-Cookie line as received (merged headers would lose the boundaries).
        self.set_cookies = set_cookies or []
        #: The request that was sent, for the auth object to name the credential it carried.
        self.request: VendorRequest | None = None

    @classmethod
    def of(cls, resp: requests.Response) -> VendorResponse:
        """A `requests.Response` of the session path as a `VendorResponse`."""
        answer = cls(resp.status_code, resp.reason or "", resp.headers, resp.content, resp.url)
        answer.request = PreparedView(resp.request)
        return answer

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not. Bytes go to the decoder directly
        (`json.loads` detects UTF-8/16/32); only a body that is not valid Unicode is decoded as `text` is, as
        `requests` did, with undecodable bytes replaced."""
        try:
            return decode_json(self.content)
        except UnicodeDecodeError:
            return json.loads(self.text)

    @property
    def text(self) -> str:
        """The body as text in its declared charset (UTF-8 when none), undecodable bytes replaced."""
        content_type = self.headers.get("Content-Type")
        declared = get_encoding_from_headers(CaseInsensitiveDict({"content-type": content_type or ""}))
        encoding = declared or "utf-8"
        try:
            return self.content.decode(encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The Link header by `rel` (or URL), as `requests.Response.links`."""
        header = self.headers.get("link")
        found: dict[str, dict[str, str]] = {}
        if header:
            for link in parse_header_links(header):
                key = link.get("rel") or link.get("url")
                if key:
                    found[key] = link
        return found
