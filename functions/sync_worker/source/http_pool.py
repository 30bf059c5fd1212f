"""Keep-alive HTTP/1.1 connections to the vendor: requests written and answers parsed here.

Why not `requests` or urllib3 for the hot path: measured side by side (bench/http_clients_bench.py,
each client in its own process, 32 requests in flight against the vendor simulator), the CPU per
request was requests 2.16 ms, urllib3 0.85 ms, aiohttp 0.53 ms and `http.client` on kept-alive
connections 0.34 ms. The worker's lanes are threads, so the blocking client that costs least wins
without moving the cycle onto an event loop. And why not `http.client` itself any more: its
answer's headers go through the email package's feed parser (a third of the pool's CPU in a
profile of a 2,000-station cycle) and each request header through a validating `putheader`. Here
a request is one formatted block and one `sendall`; an answer is a status line and header lines
read from the socket's buffered reader and split on the first colon, the body by Content-Length,
chunked transfer coding, or up to the close.

What urllib3 did for `requests` that matters here is done here too: a bounded pool per
(scheme, host, port) that blocks rather than opening throwaway connections; a connection the
server closed while idle is noticed before reuse; separate connect and read timeouts; TLS verified
against the CA bundle `requests` uses; gzip/deflate bodies decoded; header values that would split
the request (CR, LF) refused; redirects followed as `requests` follows them (303, and 301/302
after a POST, become a GET; credentials and cookies are dropped when the host changes). Failures
are raised as `requests`' own exceptions (ConnectTimeout, ReadTimeout, ConnectionError,
InvalidHeader, TooManyRedirects) so the transport classifies them as before.
"""

from __future__ import annotations

import collections
import functools
import io
import re
import select
import socket
import ssl
import threading
import zlib
from urllib.parse import urljoin, urlsplit

import requests
from requests.exceptions import InvalidHeader, InvalidURL
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from functions.sync_worker.source.http_message import Headers, VendorResponse

#: As `requests` allows (Session.max_redirects).
MAX_REDIRECTS = 30
#: What the pool can decode; `requests` advertises the same without brotli/zstd installed.
ACCEPT_ENCODING = "gzip, deflate"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: As `http.client` bounds them: a longer line or more header lines is not a vendor's answer.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)")
#: Control characters and spaces cannot be in a request target (`http.client` refuses them too).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")
_NO_BODY = frozenset({204, 304})


class _Origin:
    """Scheme, host and port of a URL's authority, parsed once per distinct authority."""

    __slots__ = ("host", "host_header", "key", "port", "scheme")

    def __init__(self, scheme: str, netloc: str) -> None:
        parts = urlsplit(f"{scheme}://{netloc}")
        self.scheme = scheme
        self.host = parts.hostname or ""
        try:
            self.port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise InvalidURL(f"bad port in {scheme}://{parts.hostname}: {exc}") from exc
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = shown if self.port == _DEFAULT_PORTS[scheme] else f"{shown}:{self.port}"
        self.key = (scheme, self.host, self.port)


@functools.lru_cache(maxsize=256)
def _origin(scheme: str, netloc: str) -> _Origin:
    return _Origin(scheme, netloc)


def _split(url: str) -> tuple[_Origin, str]:
    """The origin and the request target (path and query; the fragment is not sent)."""
    match = _URL.match(url)
    scheme = match.group(1).lower() if match else ""
    if match is None or scheme not in _DEFAULT_PORTS or not match.group(2):
        parts = urlsplit(url)  # scheme and host only: a path, query or userinfo may carry a secret
        raise requests.ConnectionError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    origin = _origin(scheme, match.group(2))
    if not origin.host:
        raise requests.ConnectionError(f"not an http(s) URL: no host in {scheme}://")
    rest = match.group(3)
    target = rest if rest.startswith("/") else "/" + rest
    if _BAD_TARGET.search(target):
        raise InvalidURL("the URL has control characters or spaces in its path or query")
    return origin, target


@functools.lru_cache(maxsize=256)
def _legal_name(name: str) -> bool:
    return _HEADER_NAME.fullmatch(name) is not None


def _head(method: str, target: str, origin: _Origin, headers: Headers) -> bytes:
    """The request line and header block, refusing what would split it into more lines."""
    # A Host the vendor config sets replaces the URL's, as `http.client` and urllib3 let it.
    host = "" if "Host" in headers else f"Host: {origin.host_header}\r\n"
    lines = [f"{method} {target} HTTP/1.1\r\n{host}"]
    for name, value in headers.pairs():
        if not _legal_name(name):
            raise InvalidHeader(f"invalid header name {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    block = "".join(lines)
    # Exactly the line breaks written above (the first item holds two with a Host): any other came
    # from a value.
    expected = len(lines) + (1 if host else 0)
    if block.count("\n") != expected or block.count("\r") != expected:
        bad = [name for name, value in headers.pairs() if "\r" in value or "\n" in value]
        raise InvalidHeader(f"a line break in {f'header {bad[0]!r}' if bad else 'the request line'}")
    try:
        return block.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InvalidHeader(f"a header is not Latin-1 text: {exc.reason}") from exc


class _Connection:
    """One socket and its buffered reader, kept across requests."""

    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def dropped(self) -> bool:
        """An idle keep-alive connection the server closed (readable at once: EOF) is not reused."""
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class _ProtocolError(Exception):
    """The answer is not HTTP/1.x as written by the standard."""


class _Parsed:
    __slots__ = ("content", "headers", "keep_alive", "reason", "set_cookies", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers = Headers()
        self.set_cookies: list[str] = []
        self.content = b""
        self.keep_alive = False


def _line(reader: io.BufferedReader) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise _ProtocolError("answer line too long")
    return line


def _status_line(reader: io.BufferedReader) -> tuple[str, int, str]:
    line = _line(reader)
    if not line:
        raise _ProtocolError("the vendor closed the connection without answering")
    parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise _ProtocolError(f"not an HTTP/1.x status line: {line[:60]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


def _header_lines(reader: io.BufferedReader, parsed: _Parsed) -> None:
    """Header lines up to the blank one: repeated headers joined with ", " (Set-Cookie lines also
    kept one by one), a folded line (leading space or tab) joined to the one before it by a space."""
    store = parsed.headers
    last: str | None = None
    for _ in range(_MAX_HEADERS + 1):
        raw = _line(reader)
        if raw in (b"\r\n", b"\n"):
            return
        if not raw:
            raise _ProtocolError("the answer ended inside its headers")
        text = raw.decode("latin-1")
        if text[0] in " \t":
            if last is None:
                raise _ProtocolError("the answer's first header line is a continuation")
            store[last] = f"{store[last]} {text.strip()}"
            if last == "set-cookie":
                parsed.set_cookies[-1] = f"{parsed.set_cookies[-1]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise _ProtocolError(f"not a header line: {raw[:60]!r}")
        value = value.strip()
        last = store.add(name.rstrip(), value)
        if last == "set-cookie":
            parsed.set_cookies.append(value)
    raise _ProtocolError(f"more than {_MAX_HEADERS} header lines")


def _exactly(reader: io.BufferedReader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise _ProtocolError(f"the answer's body ended after {len(data)} of {size} bytes")
    return data


def _chunked(reader: io.BufferedReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _line(reader)
        try:
            size = int(size_line.split(b";", 1)[0], 16)
        except ValueError:
            raise _ProtocolError(f"bad chunk size line {size_line[:40]!r}") from None
        if size < 0:
            raise _ProtocolError("negative chunk size")
        if size == 0:
            break
        parts.append(_exactly(reader, size))
        if _line(reader) not in (b"\r\n", b"\n"):
            raise _ProtocolError("a chunk did not end with a line break")
    while _line(reader) not in (b"\r\n", b"\n", b""):  # trailer fields: not used
        pass
    return b"".join(parts)


def _read_answer(reader: io.BufferedReader, method: str) -> _Parsed:
    """One answer from the connection; `keep_alive` says whether the connection can carry another."""
    parsed = _Parsed()
    version, status, reason = _status_line(reader)
    while 100 <= status < 200 and status != 101:  # interim answers (103 Early Hints): the real one follows
        _header_lines(reader, _Parsed())
        version, status, reason = _status_line(reader)
    parsed.status, parsed.reason = status, reason
    _header_lines(reader, parsed)
    headers = parsed.headers
    tokens = headers.get("Connection", "").lower()
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    if method == "HEAD" or status in _NO_BODY or status < 200:
        parsed.keep_alive = keep_alive
        return parsed
    coding = headers.get("Transfer-Encoding")
    length = headers.get("Content-Length")
    if coding is not None and coding.lower().rsplit(",", 1)[-1].strip() == "chunked":
        parsed.content = _chunked(reader)
    elif coding is None and length is not None:
        sizes = {part.strip() for part in length.split(",")}
        if len(sizes) != 1 or not (size_text := sizes.pop()).isdigit():
            raise _ProtocolError(f"bad Content-Length {length!r}")
        parsed.content = _exactly(reader, int(size_text))
    else:
        parsed.content = reader.read()  # delimited by the close
        keep_alive = False
    parsed.keep_alive = keep_alive
    return parsed


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


class _HostPool:
    """At most `size` connections to one origin; idle ones reused most recent first.

    Taking and giving back an idle connection touches no lock (a deque's pop and append are atomic):
    with 32 lanes, the lock around every call was where they queued. The lock guards the count of
    open connections and the waiting; a lane that gives one back wakes a waiter only if one is
    registered, and a waiter registers before it looks at the idle ones, so none sleeps past one.
    """

    def __init__(self, origin: _Origin, size: int, timeouts: tuple[float, float], tls: ssl.SSLContext) -> None:
        self._origin, self._size, self._timeouts, self._tls = origin, size, timeouts, tls
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0
        self._waiting = 0
        self._cond = threading.Condition(threading.Lock())

    def acquire(self) -> _Connection:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                break
            if not conn.dropped():
                return conn
            conn.close()
            self._discard()
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    if self._idle:
                        conn = self._idle.pop()
                        if not conn.dropped():
                            return conn
                        conn.close()
                        self._open -= 1
                        continue
                    if self._open < self._size:
                        self._open += 1
                        break
                    self._cond.wait()
            finally:
                self._waiting -= 1
        try:
            return self._connect()
        except BaseException:
            self._discard()
            raise

    def _connect(self) -> _Connection:
        connect_s, read_s = self._timeouts
        host, port = self._origin.host, self._origin.port
        try:
            sock = socket.create_connection((host, port), timeout=connect_s)
        except TimeoutError as exc:
            raise requests.ConnectTimeout(f"connect to {host} timed out after {connect_s}s") from exc
        except OSError as exc:
            raise requests.ConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._origin.scheme == "https":
                sock = self._tls.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise requests.ConnectTimeout(f"TLS handshake with {host} timed out after {connect_s}s") from exc
        except OSError as exc:  # ssl.SSLError included: a certificate that does not verify
            sock.close()
            raise requests.ConnectionError(f"TLS with {host}:{port} failed: {exc}") from exc
        sock.settimeout(read_s)
        return _Connection(sock)

    def release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable:
            conn.close()
            self._discard()
            return
        self._idle.append(conn)
        if self._waiting:
            with self._cond:
                self._cond.notify()

    def _discard(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            while self._idle:
                self._idle.pop().close()
                self._open -= 1


class KeepAlivePool:
    """Connections per origin, each origin's pool bounded by `size`."""

    def __init__(
        self, *, size: int, connect_timeout_s: float, read_timeout_s: float, ca_bundle: str | None = None
    ) -> None:
        self._size = max(1, size)
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._tls = ssl.create_default_context(cafile=ca_bundle or DEFAULT_CA_BUNDLE_PATH)
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._lock = threading.Lock()

    def _pool(self, origin: _Origin) -> _HostPool:
        pool = self._pools.get(origin.key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(origin.key)
                if pool is None:
                    pool = _HostPool(origin, self._size, self._timeouts, self._tls)
                    self._pools[origin.key] = pool
        return pool

    def send(self, method: str, url: str, body: bytes | None, headers: Headers) -> VendorResponse:
        """The final answer to a request, redirects followed."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._once(method, url, body, headers)
            location = answer.headers.get("Location") if answer.status_code in _REDIRECTS else None
            if not location:
                return answer
            nxt = urljoin(url, location)
            status = answer.status_code
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = headers.copy()
                headers.pop("Content-Length", None)
                headers.pop("Content-Type", None)
            if urlsplit(nxt).netloc != urlsplit(url).netloc:
                headers = Headers((k, v) for k, v in headers.pairs() if k.lower() not in _CREDENTIAL_HEADERS)
            url = nxt
        raise requests.TooManyRedirects(f"exceeded {MAX_REDIRECTS} redirects")

    def _once(self, method: str, url: str, body: bytes | None, headers: Headers) -> VendorResponse:
        origin, target = _split(url)
        head = _head(method, target, origin, headers)
        pool = self._pool(origin)
        conn = pool.acquire()
        reusable = False
        try:
            conn.sock.sendall(head + body if body else head)
            parsed = _read_answer(conn.reader, method)
            reusable = parsed.keep_alive
        except TimeoutError as exc:
            raise requests.ReadTimeout(f"no answer from {origin.host} within {self._timeouts[1]}s") from exc
        except OSError as exc:
            raise requests.ConnectionError(f"{exc.__class__.__name__}: {exc}") from exc
        except _ProtocolError as exc:
            raise requests.ConnectionError(f"bad answer from {origin.host}: {exc}") from exc
        finally:
            pool.release(conn, reusable)
        encoding = parsed.headers.get("Content-Encoding")
        try:
            content = _decode(parsed.content, encoding)
        except zlib.error as exc:
            raise requests.ConnectionError(f"undecodable {encoding} body: {exc}") from exc
        return VendorResponse(parsed.status, parsed.reason, parsed.headers, content, url, parsed.set_cookies)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
