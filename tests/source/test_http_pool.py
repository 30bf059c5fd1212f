"""The vendor transport's kept-alive `http.client` pool does what urllib3 did under `requests`:
bounded connections, idle connections the server closed are not reused, compressed bodies decoded,
redirects followed with credentials dropped on a change of host, failures raised as `requests`'
exceptions. Against real HTTP servers on ephemeral ports (threads of this process)."""

from __future__ import annotations

import gzip
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from functions.sync_worker.source.http_message import Headers
from functions.sync_worker.source.http_pool import KeepAlivePool
from tests.support.tls import TestCA

pytestmark = pytest.mark.integration


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    seen: list[tuple[str, str, dict[str, str], bytes]]


@contextmanager
def serve(
    handle: Callable[[BaseHTTPRequestHandler, _Server], None], tls: ssl.SSLContext | None = None
) -> Iterator[_Server]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            server.connections += 1

        def do_GET(self) -> None:
            self._record()
            handle(self, server)

        do_POST = do_GET

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.seen.append((self.command, self.path, dict(self.headers), body))

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _json(handler: BaseHTTPRequestHandler, payload: object, *, close: bool = False, gzipped: bool = False) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if gzipped:
        body = gzip.compress(body)
        handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    if close:
        handler.wfile.flush()
        handler.close_connection = True


def url(server: _Server, path: str = "/", scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}{path}"


def test_keeps_connections_alive_and_replaces_one_the_server_closed_while_idle():
    pool = KeepAlivePool(size=4, connect_timeout_s=2, read_timeout_s=2)
    # The second answer says keep-alive but the server closes the socket behind it.
    with serve(lambda h, s: _json(h, {"n": len(s.seen)}, close=len(s.seen) == 2)) as server:
        answers = [json.loads(pool.send("GET", url(server, f"/r{i}"), None, Headers()).content) for i in range(4)]
        time.sleep(0.1)
    assert [a["n"] for a in answers] == [1, 2, 3, 4]
    assert server.connections == 2, "one connection reused, one fresh after the server closed the first"
    pool.close()


def test_bounds_connections_per_origin_and_blocks_instead_of_opening_more():
    pool = KeepAlivePool(size=2, connect_timeout_s=2, read_timeout_s=2)

    def slow(handler: BaseHTTPRequestHandler, server: _Server) -> None:
        time.sleep(0.05)
        _json(handler, {})

    with serve(slow) as server, ThreadPoolExecutor(8) as lanes:
        statuses = list(
            lanes.map(lambda i: pool.send("GET", url(server, f"/{i}"), None, Headers()).status_code, range(8))
        )
    assert statuses == [200] * 8
    assert server.connections == 2
    pool.close()


def test_decodes_gzip_bodies():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    with serve(lambda h, s: _json(h, {"soc": 55.5}, gzipped=True)) as server:
        answer = pool.send("GET", url(server), None, Headers({"Accept-Encoding": "gzip, deflate"}))
    assert json.loads(answer.content) == {"soc": 55.5}
    pool.close()


def test_follows_a_redirect_after_post_as_get_and_drops_credentials_on_another_host():
    pool = KeepAlivePool(size=2, connect_timeout_s=2, read_timeout_s=2)
    with serve(lambda h, s: _json(h, {"final": True})) as other:

        def redirect(handler: BaseHTTPRequestHandler, server: _Server) -> None:
            handler.send_response(302)
            handler.send_header("Location", url(other, "/landed?x=1"))
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with serve(redirect) as first:
            headers = {"Authorization": "Bearer s3cret", "X-Trace": "t1", "Content-Type": "application/json"}
            answer = pool.send("POST", url(first, "/start"), b'{"a": 1}', Headers(headers))
    assert answer.status_code == 200 and answer.url == url(other, "/landed?x=1")
    assert first.seen[0][0] == "POST" and first.seen[0][2]["Authorization"] == "Bearer s3cret"
    method, path, sent, body = other.seen[0]
    assert (method, path, body) == ("GET", "/landed?x=1", b"")
    assert "Authorization" not in sent and sent["X-Trace"] == "t1"
    pool.close()


def test_failures_are_requests_exceptions():
    pool = KeepAlivePool(size=1, connect_timeout_s=1, read_timeout_s=0.3)

    def late(handler: BaseHTTPRequestHandler, server: _Server) -> None:
        time.sleep(1)
        _json(handler, {})

    with serve(late) as server, pytest.raises(requests.ReadTimeout):
        pool.send("GET", url(server), None, Headers())
    closed_port = server.server_address[1]
    with pytest.raises(requests.ConnectionError):
        pool.send("GET", f"http://127.0.0.1:{closed_port}/", None, Headers())
    pool.close()


def _raw(answer: bytes, *, close: bool = False) -> Callable[[BaseHTTPRequestHandler, _Server], None]:
    """A handler that writes `answer` as it is: framing and header lines the test spells out."""

    def handle(handler: BaseHTTPRequestHandler, server: _Server) -> None:
        handler.wfile.write(answer)
        handler.wfile.flush()
        handler.close_connection = close

    return handle


def test_reads_a_chunked_answer_with_extensions_and_trailers_and_reuses_the_connection():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Checksum: abc\r\n\r\n'
    )
    with serve(_raw(chunked)) as server:
        first = pool.send("GET", url(server, "/one"), None, Headers())
        second = pool.send("GET", url(server, "/two"), None, Headers())
    assert json.loads(first.content) == {"a": 1} and second.content == first.content
    assert server.connections == 1, "the chunked body was read to its end: the connection carried the next call"
    pool.close()


def test_repeated_headers_are_joined_folded_ones_unfolded_and_each_set_cookie_kept():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Multi: a\r\nx-multi: b\r\nX-Folded: one\r\n\t two\r\n"
        b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Expires=Wed, 09 Jun 2038 10:18:14 GMT\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    with serve(_raw(answer)) as server:
        got = pool.send("GET", url(server), None, Headers())
    assert got.headers["X-MULTI"] == "a, b" and got.headers["x-folded"] == "one two"
    assert got.set_cookies == ["a=1; Path=/", "b=2; Expires=Wed, 09 Jun 2038 10:18:14 GMT"]
    pool.close()


def test_skips_an_interim_answer_and_reads_a_body_delimited_by_the_close():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    answer = b'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{"until": "close"}'
    with serve(_raw(answer, close=True)) as server:
        got = [pool.send("GET", url(server, f"/{i}"), None, Headers()) for i in range(2)]
    assert [(a.status_code, json.loads(a.content)) for a in got] == [(200, {"until": "close"})] * 2
    assert server.connections == 2, "an answer delimited by the close leaves no connection to reuse"
    pool.close()


def test_an_http_1_0_answer_without_keep_alive_is_not_reused():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    with serve(_raw(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")) as server:
        for i in range(2):
            pool.send("GET", url(server, f"/{i}"), None, Headers())
    assert server.connections == 2
    pool.close()


def test_a_body_shorter_than_its_content_length_is_a_connection_error():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut": '
    with serve(_raw(answer, close=True)) as server, pytest.raises(requests.ConnectionError, match="body ended"):
        pool.send("GET", url(server), None, Headers())
    pool.close()


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    smuggled = Headers({"X-Station": "S1\r\nX-Injected: 1"})
    with serve(lambda h, s: _json(h, {})) as server, pytest.raises(requests.exceptions.InvalidHeader):
        pool.send("GET", url(server), None, smuggled)
    assert server.seen == []
    pool.close()


def test_a_301_on_a_get_is_followed_with_the_credentials_on_the_same_host():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)

    def moved(handler: BaseHTTPRequestHandler, server: _Server) -> None:
        if handler.path.startswith("/old"):
            handler.send_response(301)
            handler.send_header("Location", "/new?page=2")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            _json(handler, {"moved": True})

    with serve(moved) as server:
        answer = pool.send("GET", url(server, "/old"), None, Headers({"Authorization": "Bearer s3cret"}))
    assert json.loads(answer.content) == {"moved": True} and answer.url == url(server, "/new?page=2")
    assert [(m, p, h.get("Authorization")) for m, p, h, _ in server.seen] == [
        ("GET", "/old", "Bearer s3cret"),
        ("GET", "/new?page=2", "Bearer s3cret"),
    ]
    pool.close()


def test_a_host_header_of_the_vendor_config_replaces_the_urls():
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    hosts: list[list[str]] = []

    def record(handler: BaseHTTPRequestHandler, server: _Server) -> None:
        hosts.append(handler.headers.get_all("Host") or [])
        _json(handler, {})

    with serve(record) as server:
        pool.send("GET", url(server), None, Headers({"host": "vendor.example"}))
        pool.send("GET", url(server), None, Headers())
    assert hosts == [["vendor.example"], [f"127.0.0.1:{server.server_address[1]}"]]
    pool.close()


def test_https_answers_are_read_over_one_verified_connection_and_an_unknown_ca_is_refused(tmp_path):
    ca = TestCA(tmp_path)
    issued = ca.server_certificate()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert_path, issued.key_path)
    trusting = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2, ca_bundle=str(ca.cert_path))
    default = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    with serve(lambda h, s: _json(h, {"path": h.path}, gzipped=True), tls=context) as server:
        answers = [trusting.send("GET", url(server, f"/{i}", "https"), None, Headers()) for i in range(3)]
        with pytest.raises(requests.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            default.send("GET", url(server, "/", "https"), None, Headers())
    assert [json.loads(a.content) for a in answers] == [{"path": f"/{i}"} for i in range(3)]
    # The refused handshake never reaches a handler: every handled connection is the trusting pool's.
    assert server.connections == 1, "one kept-alive TLS connection carried the three calls"
    trusting.close()
    default.close()
