"""Keep-alive HTTP/1.1 connections to the vendor on the standard library's `http.client`.

Why not `requests` or urllib3 for the hot path: measured side by side (bench/http_clients_bench.py,
each client in its own process, 32 requests in flight against the vendor simulator), the CPU per
request was requests 2.16 ms, urllib3 0.85 ms, aiohttp 0.53 ms and `http.client` on kept-alive
connections 0.34 ms. The worker's lanes are threads, so the blocking client that costs least wins
without moving the cycle onto an event loop.

What urllib3 did for `requests` that matters here is done here too: a bounded pool per
(scheme, host, port) that blocks rather than opening throwaway connections; a connection the
server closed while idle is noticed before reuse; separate connect and read timeouts; TLS verified
against the CA bundle `requests` uses; gzip/deflate bodies decoded; redirects followed as
`requests` follows them (303, and 301/302 after a POST, become a GET; credentials and cookies are
dropped when the host changes). Failures are raised as `requests`' own exceptions (ConnectTimeout,
ReadTimeout, ConnectionError, TooManyRedirects) so the transport classifies them as before.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH

#: As `requests` allows (Session.max_redirects).
MAX_REDIRECTS = 30
#: What the pool can decode; `requests` advertises the same without brotli/zstd installed.
ACCEPT_ENCODING = "gzip, deflate"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


@dataclass
class Answer:
    """One final HTTP answer, its body read and decoded."""

    status: int
    reason: str
    headers: CaseInsensitiveDict[str]
    content: bytes
    url: str
    #: The raw header block (every Set-Cookie line), for `requests`' cookie extraction.
    msg: http.client.HTTPMessage


class _OriginalResponse:
    """What `requests.cookies.extract_cookies_to_jar` reads from a response: `._original_response.msg`."""

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self._original_response = self
        self.msg = msg


def cookie_source(answer: Answer) -> object:
    return _OriginalResponse(answer.msg)


class _HostPool:
    """At most `size` connections to one origin; idle ones reused most recent first."""

    def __init__(
        self, scheme: str, host: str, port: int | None, size: int, timeouts: tuple[float, float], tls: ssl.SSLContext
    ) -> None:
        self._scheme, self._host, self._port = scheme, host, port
        self._size, self._timeouts, self._tls = size, timeouts, tls
        self._idle: list[http.client.HTTPConnection] = []
        self._open = 0
        self._cond = threading.Condition()

    def acquire(self) -> http.client.HTTPConnection:
        with self._cond:
            while True:
                while self._idle:
                    conn = self._idle.pop()
                    if not _dropped(conn):
                        return conn
                    conn.close()
                    self._open -= 1
                if self._open < self._size:
                    self._open += 1
                    break
                self._cond.wait()
        try:
            return self._connect()
        except BaseException:
            self._discard()
            raise

    def _connect(self) -> http.client.HTTPConnection:
        connect_s, read_s = self._timeouts
        conn: http.client.HTTPConnection
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=connect_s, context=self._tls)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_s)
        try:
            conn.connect()
        except TimeoutError as exc:
            raise requests.ConnectTimeout(f"connect to {self._host} timed out after {connect_s}s") from exc
        except OSError as exc:
            raise requests.ConnectionError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        if conn.sock is not None:
            conn.sock.settimeout(read_s)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if not reusable:
            conn.close()
            self._discard()
            return
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def _discard(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            for conn in self._idle:
                conn.close()
            self._open -= len(self._idle)
            self._idle.clear()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server closed (readable at once: EOF) is not reused."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _decode(content: bytes, encoding: str | None) -> bytes:
    if not encoding or not content:
        return content
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return zlib.decompress(content, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    return content


class KeepAlivePool:
    """Connections per origin, each origin's pool bounded by `size`."""

    def __init__(self, *, size: int, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._size = max(1, size)
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._tls = ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)
        self._pools: dict[tuple[str, str, int | None], _HostPool] = {}
        self._lock = threading.Lock()

    def _pool(self, scheme: str, host: str, port: int | None) -> _HostPool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = _HostPool(scheme, host, port, self._size, self._timeouts, self._tls)
                    self._pools[key] = pool
        return pool

    def send(self, method: str, url: str, body: bytes | str | None, headers: dict[str, str]) -> Answer:
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._once(method, url, body, headers)
            location = answer.headers.get("Location") if answer.status in _REDIRECTS else None
            if not location:
                return answer
            nxt = urljoin(url, location)
            if (answer.status == 303 and method != "HEAD") or (answer.status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
            if urlsplit(nxt).netloc != urlsplit(url).netloc:
                drop = {h.lower() for h in _CREDENTIAL_HEADERS}
                headers = {k: v for k, v in headers.items() if k.lower() not in drop}
            url = nxt
        raise requests.TooManyRedirects(f"exceeded {MAX_REDIRECTS} redirects")

    def _once(self, method: str, url: str, body: bytes | str | None, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise requests.ConnectionError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
        pool = self._pool(parts.scheme, parts.hostname, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = pool.acquire()
        reusable = False
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            content = resp.read()
            reusable = not resp.will_close
        except TimeoutError as exc:
            raise requests.ReadTimeout(f"no answer from {parts.hostname} within {self._timeouts[1]}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise requests.ConnectionError(f"{exc.__class__.__name__}: {exc}") from exc
        finally:
            pool.release(conn, reusable)
        merged: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in resp.getheaders():
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        try:
            content = _decode(content, merged.get("Content-Encoding"))
        except zlib.error as exc:
            raise requests.ConnectionError(f"undecodable {merged.get('Content-Encoding')} body: {exc}") from exc
        return Answer(resp.status, resp.reason or "", merged, content, url, resp.msg)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
