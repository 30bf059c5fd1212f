"""What both vendor mocks share: a clock the test drives, call budgets, refusal counters, an HTTP server.

A mock is a `VendorApp` (one `handle(request) -> Response` per vendor) served by `MockServer`, a
threaded HTTP/1.1 server on an ephemeral port in the test's own process (keep-alive, like the
vendors' load balancers), so a test reads the mock's state directly through Python while the worker
under test talks to it over real HTTP. The same server answers an admin API under `/_mock/` for a
worker or demo in another process: `GET /_mock/stats`, `POST /_mock/clock` (`{"advance_s": N}` or
`{"set": "<ISO UTC>"}`), `POST /_mock/lag` (`{"site": id, "lag_s": N}`).

Every refusal a vendor would give for a broken rule (budget, concurrency, token, window, paging) is
counted in `MockStats.refusals` by reason, so an end-to-end test can assert that a worker never
exceeded a budget: `mock.stats.refused_total() == 0`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit


def parse_utc(text: str) -> datetime:
    """ISO 8601 to an aware UTC datetime; a naive value is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MockClock:
    """The mock's "now" (epoch seconds): `start`, moved by the test (`advance`, `set`) and, when
    `speed` > 0, running at `speed` x wall time (for a demo).

    Vendor data, token expiry and call budgets all read this clock, so a test moves a whole day
    (or past a token's idle expiry, or into the next budget window) in microseconds.
    """

    def __init__(self, start: datetime | str, speed: float = 0.0) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        self._lock = threading.Lock()
        self._base = (parse_utc(start) if isinstance(start, str) else start.astimezone(UTC)).timestamp()
        self._speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        with self._lock:
            return self._base + (time.monotonic() - self._t0) * self._speed

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the mock clock only moves forward, got {seconds}")
        with self._lock:
            self._base += seconds

    def set(self, when: datetime | str) -> None:
        target = (parse_utc(when) if isinstance(when, str) else when.astimezone(UTC)).timestamp()
        now = self.now()
        if target < now:
            raise ValueError("the mock clock only moves forward")
        self.advance(target - now)


class SlidingWindowBudget:
    """At most `limit` accepted calls per key within any `period_s` of the mock clock.

    Sliding rather than fixed windows: a client that stays within a sliding budget stays within the
    vendor's fixed windows too, so the mock is never more lenient than the vendor. Refused calls do
    not consume the budget.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: dict[str, deque[float]] = {}

    def try_acquire(self, key: str, limit: int, period_s: float, now: float) -> bool:
        return self.try_acquire_all([key], limit, period_s, now)

    def try_acquire_all(self, keys: list[str], limit: int, period_s: float, now: float) -> bool:
        """One call charged to every key (a bulk call), or to none when any key is spent."""
        with self._lock:
            windows = [self._accepted.setdefault(key, deque()) for key in keys]
            for times in windows:
                while times and times[0] <= now - period_s:
                    times.popleft()
            if any(len(times) >= limit for times in windows):
                return False
            for times in windows:
                times.append(now)
            return True


@dataclass
class MockStats:
    """Calls per endpoint, refusals per reason, and the highest concurrency seen."""

    calls: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def call(self, endpoint: str) -> None:
        with self._lock:
            self.calls[endpoint] += 1

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1

    def saw_in_flight(self, count: int) -> None:
        with self._lock:
            self.max_in_flight = max(self.max_in_flight, count)

    def refused_total(self) -> int:
        with self._lock:
            return sum(self.refusals.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "refusals": dict(self.refusals),
                "refused_total": sum(self.refusals.values()),
                "max_in_flight": self.max_in_flight,
            }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]  # the last value of each parameter
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json_body(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


class VendorApp(Protocol):
    clock: MockClock
    stats: MockStats

    def handle(self, request: Request) -> Response: ...

    def set_report_lag(self, site: str, lag_s: float) -> None: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=split.path,
            query={k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        app = self.server.app
        response = _admin(app, request) if request.path.startswith("/_mock/") else app.handle(request)
        head = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        head += [f"Content-Length: {len(response.body)}", "", ""]
        # One write (header and body together) so the client's delayed ACK never stalls the answer.
        self.wfile.write("\r\n".join(head).encode("latin-1") + response.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the mock's counters, not its access log."""


def _admin(app: VendorApp, request: Request) -> Response:
    if request.path == "/_mock/stats":
        return Response.json(200, {**app.stats.snapshot(), "now": app.clock.now_dt().isoformat()})
    if request.path == "/_mock/clock" and request.method == "POST":
        body = request.json_body()
        if "advance_s" in body:
            app.clock.advance(float(body["advance_s"]))
        if "set" in body:
            app.clock.set(str(body["set"]))
        return Response.json(200, {"now": app.clock.now_dt().isoformat()})
    if request.path == "/_mock/lag" and request.method == "POST":
        body = request.json_body()
        app.set_report_lag(str(body["site"]), float(body["lag_s"]))
        return Response.json(200, {"ok": True})
    return Response.json(404, {"error": f"no admin route {request.method} {request.path}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: VendorApp) -> None:
        super().__init__(address, _Handler)
        self.app = app

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MockServer:
    """Serves a VendorApp over real HTTP on 127.0.0.1 and an ephemeral port, in a background thread."""

    def __init__(self, app: VendorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="vendor-mock", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
