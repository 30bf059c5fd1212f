"""A small programmable vendor API over real HTTP, for behaviours the simulator's /v1 API lacks.

`VendorStub()` serves on an ephemeral port from a thread of the test process; a test registers a
handler per (method, path) that sees the decoded request and returns (status, body[, headers]).
Every request is recorded (method, path, the raw query string, decoded query, headers, body), so
a test asserts what went over the wire: how a placeholder was encoded, which header carried a
token, how many calls were made.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[[StubRequest], Reply]


@dataclass
class VendorStub:
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[StubRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def calls(self, path: str) -> list[StubRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> VendorStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = StubRequest(
                    self.command,
                    unquote(url.path),
                    url.query,
                    {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with stub._lock:
                    stub.requests.append(request)
                handler = stub.routes.get((self.command, request.path))
                reply: Reply = handler(request) if handler else (404, {"error": f"no route {url.path}"})
                status, body = reply[0], reply[1]
                headers = reply[2] if len(reply) > 2 else {}
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
