"""The simulator's HTTP server: the vendor API plus admin endpoints for tests.

Vendor API (auth required):
  GET  /v1/sites?page=&page_size=                       paginated site list (page numbers + links.next)
  GET  /v1/sites/{id}                                   one site
  GET  /v1/sites/{id}/telemetry?since=&until=&limit=&cursor=
                                                        readings with since < ts <= until (clamped to the
                                                        simulator's now), oldest first, cursor-paginated
  POST /oauth/token                                     OAuth2 client-credentials (when --auth oauth2)
Admin (no auth, local only): GET /healthz, GET /_stats[?stations=a,b&arrivals=1], POST /_stats/reset,
  GET|POST /_faults, GET|POST /_clock, POST /_tokens/revoke.

One thread per connection (HTTP/1.1 keep-alive), so the injected latency is a sleep in that
thread and never holds up other clients. Each response goes out in a single write with
TCP_NODELAY: header and body in separate segments would meet the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from simulator import vendor_v2
from simulator.clock import SimClock, parse_utc
from simulator.faults import FaultInjector, FaultKind
from simulator.stats import Stats
from simulator.telemetry import format_ts, profile, reading, site, station_id

MAX_PAGE_SIZE = 500
MAX_TELEMETRY_LIMIT = 1000
DEFAULT_TELEMETRY_LIMIT = 100
DEFAULT_LOOKBACK_S = 3600

_TELEMETRY = re.compile(r"^/v1/sites/([^/]+)/telemetry$")
_SITE = re.compile(r"^/v1/sites/([^/]+)$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class SimulatorConfig:
    stations: int = 100
    seed: int = 1
    api_key: str = "sim-key"
    auth: str = "api_key"  # api_key | bearer | oauth2
    client_id: str = "c2c-sync"
    client_secret: str | None = None  # defaults to api_key
    token_ttl_s: float = 3600.0
    reading_interval_s: int = 60
    v2: vendor_v2.V2Settings = field(default_factory=vendor_v2.V2Settings)


@dataclass
class SimulatorState:
    config: SimulatorConfig
    clock: SimClock
    faults: FaultInjector
    stats: Stats = field(default_factory=Stats)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    tokens_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.station_ids = [station_id(i) for i in range(1, self.config.stations + 1)]
        self.station_set = frozenset(self.station_ids)
        self.v2 = vendor_v2.V2State(self.config.v2, self.config.seed, self.station_ids, self.config.api_key)


def _encode_cursor(after: int, until: int) -> str:
    return base64.urlsafe_b64encode(f"{after}:{until}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[int, int]:
    try:
        after, until = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        return int(after), int(until)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid cursor: {token!r}") from exc


def _int_param(query: dict, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name, [None])[0]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from exc
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _time_param(query: dict, name: str) -> float | None:
    raw = query.get(name, [None])[0]
    if raw is None or raw == "":
        return None
    try:
        return parse_utc(raw).timestamp()
    except ValueError as exc:
        raise ApiError(400, f"{name} must be ISO-8601, got {raw!r}") from exc


def _corrupt(item: dict, t: int, interval: int) -> dict:
    """The `bad_reading` fault: every 5th reading cannot be mapped (bad time, or a non-numeric SOC)."""
    slot = (t // interval) % 10
    if slot == 0:
        item["timestamp"] = "not-a-time"
    elif slot == 5:
        item["battery"]["soc_pct"] = "n/a"
    return item


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "c2c-vendor-sim/1"
    server: SimulatorServer  # the server that made this handler: its `state` is the simulator's

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.state.stats.connection()

    def log_message(self, format: str, *args) -> None:
        pass  # thousands of requests per second: access logs would cost more than the API

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        for key, value in (headers or {}).items():
            head.append(f"{key}: {value}")
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if self.path.startswith(("/v1/", "/v2/", "/oauth/")):
            self.server.state.stats.response(status)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path.startswith("/v2/") and method == "POST":
                self._v2(url.path)
            elif url.path.startswith("/v2/"):
                raise ApiError(405, "the /v2 API is POST only")
            elif url.path.startswith("/v1/") and method == "GET":
                self._api(url.path, query)
            elif url.path == "/oauth/token" and method == "POST":
                self._token()
            else:
                self._admin(method, url.path, query)
        except ApiError as err:
            self._json(err.status, {"error": err.message}, err.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    # -- vendor API -------------------------------------------------------------------------------
    def _v2(self, path: str) -> None:
        state = self.server.state
        state.stats.request(path.rsplit("/", 1)[-1], None)
        latency = state.faults.settings.latency_ms
        if latency > 0:
            time.sleep(latency / 1000.0)
        try:
            body = json.loads(self._body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(200, {"success": False, "failCode": 20400, "message": "body must be a JSON object"})
            return
        answer, headers = vendor_v2.handle(state.v2, path, body, self.headers, state.clock.now())
        self._json(200, answer, headers)

    def _api(self, path: str, query: dict) -> None:
        state = self.server.state
        match = _TELEMETRY.match(path)
        sid = match.group(1) if match else None
        if sid is None and (m := _SITE.match(path)):
            sid = m.group(1)
        endpoint = "telemetry" if match else ("site" if sid else "sites")
        state.stats.request(endpoint, sid)
        latency = state.faults.settings.latency_ms
        if latency > 0:
            time.sleep(latency / 1000.0)
        self._authorize()
        fault = state.faults.draw(sid)
        if fault is not None and fault is not FaultKind.BAD_READING:
            state.stats.fault(fault.value, sid)
            self._fail(fault, sid)
            if fault is not FaultKind.TIMEOUT:
                return
        if match:
            if sid not in state.station_set:
                raise ApiError(404, f"site {sid} not found")
            if fault is FaultKind.BAD_READING:
                state.stats.fault(fault.value, sid)
            self._telemetry(match.group(1), query, corrupt=fault is FaultKind.BAD_READING)
        elif sid is not None:
            if sid not in state.station_set:
                raise ApiError(404, f"site {sid} not found")
            self._json(200, site(profile(state.config.seed, sid)))
        elif path == "/v1/sites":
            self._sites(query)
        else:
            raise ApiError(404, f"no route {path}")

    def _fail(self, fault: FaultKind, sid: str | None) -> None:
        settings = self.server.state.faults.settings
        if fault is FaultKind.ERROR:
            raise ApiError(503, "service unavailable (injected)")
        if fault is FaultKind.THROTTLE:
            raise ApiError(429, "rate limit exceeded (injected)", {"Retry-After": str(settings.retry_after_s)})
        if fault is FaultKind.NOT_FOUND:
            raise ApiError(404, f"site {sid} not found (injected)")
        if fault is FaultKind.FORBIDDEN:
            raise ApiError(403, f"not authorised for site {sid} (injected)")
        if fault is FaultKind.MALFORMED:
            self._send(200, b'{"site_id": "' + (sid or "").encode() + b'", "data": [{"timestamp": "20')
        if fault is FaultKind.TIMEOUT:
            time.sleep(settings.timeout_s)  # then answer normally: the client has given up by now

    def _authorize(self) -> None:
        state = self.server.state
        cfg = state.config
        if cfg.auth == "api_key":
            ok = secrets.compare_digest(self.headers.get("X-Api-Key", ""), cfg.api_key)
            challenge = 'ApiKey header="X-Api-Key"'
        else:
            header = self.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            challenge = 'Bearer error="invalid_token"'
            if cfg.auth == "bearer":
                ok = secrets.compare_digest(token, cfg.api_key)
            else:
                with state.tokens_lock:
                    expiry = state.tokens.get(token)
                ok = expiry is not None and expiry > time.monotonic()
        if not ok:
            state.stats.auth_failure()
            raise ApiError(401, "missing or invalid credentials", {"WWW-Authenticate": challenge})

    def _sites(self, query: dict) -> None:
        state = self.server.state
        page = _int_param(query, "page", 1, 1, 10**9)
        size = _int_param(query, "page_size", 100, 1, MAX_PAGE_SIZE)
        total = len(state.station_ids)
        total_pages = max(1, -(-total // size))
        ids = state.station_ids[(page - 1) * size : page * size]
        nxt = f"/v1/sites?{urlencode({'page': page + 1, 'page_size': size})}" if page < total_pages else None
        self._json(
            200,
            {
                "sites": [site(profile(state.config.seed, sid)) for sid in ids],
                "page": page,
                "page_size": size,
                "total": total,
                "total_pages": total_pages,
                "links": {"next": nxt},
            },
        )

    def _telemetry(self, sid: str, query: dict, corrupt: bool) -> None:
        state = self.server.state
        interval = state.config.reading_interval_s
        now = int(state.clock.now())
        limit = _int_param(query, "limit", DEFAULT_TELEMETRY_LIMIT, 1, MAX_TELEMETRY_LIMIT)
        cursor = query.get("cursor", [""])[0]
        after: float  # a `since` of the query may have a fraction; a cursor's is whole seconds
        if cursor:
            after, until = _decode_cursor(cursor)
        else:
            until_q = _time_param(query, "until")
            until = int(until_q // 1) if until_q is not None else now
            since_q = _time_param(query, "since")
            if since_q is not None and until_q is not None and since_q > until_q:
                raise ApiError(400, "since must not be after until")
            after = since_q if since_q is not None else until - DEFAULT_LOOKBACK_S
        until = min(until, now)
        # First boundary strictly after `after`, last boundary at or before `until`.
        first = (int(after // interval) + 1) * interval
        last = (until // interval) * interval
        count = max(0, (last - first) // interval + 1) if last >= first else 0
        take = min(count, limit)
        seed = state.config.seed
        p = profile(seed, sid)
        data = []
        for i in range(take):
            t = first + i * interval
            item = reading(p, t)
            data.append(_corrupt(item, t, interval) if corrupt else item)
        next_cursor = None
        if count > take:
            next_cursor = _encode_cursor(first + (take - 1) * interval, until)
        self._json(
            200,
            {
                "site_id": sid,
                "interval_s": interval,
                "until": format_ts(until),
                "data": data,
                "next_cursor": next_cursor,
                "links": {
                    "next": (
                        f"/v1/sites/{sid}/telemetry?{urlencode({'cursor': next_cursor, 'limit': limit})}"
                        if next_cursor
                        else None
                    )
                },
            },
        )

    def _token(self) -> None:
        state = self.server.state
        cfg = state.config
        state.stats.request("token", None)
        form = {k: v[0] for k, v in parse_qs(self._body().decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ApiError(400, "bad basic auth header") from exc
        if cfg.auth != "oauth2":
            raise ApiError(404, "token endpoint only in --auth oauth2 mode")
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type")
        expected_secret = cfg.client_secret or cfg.api_key
        if not (
            secrets.compare_digest(client_id, cfg.client_id) and secrets.compare_digest(client_secret, expected_secret)
        ):
            state.stats.auth_failure()
            raise ApiError(401, "invalid_client")
        token = secrets.token_urlsafe(24)
        with state.tokens_lock:
            now = time.monotonic()
            state.tokens = {t: e for t, e in state.tokens.items() if e > now}
            state.tokens[token] = now + cfg.token_ttl_s
        state.stats.token_issued()
        self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": cfg.token_ttl_s})

    # -- admin ------------------------------------------------------------------------------------
    def _admin(self, method: str, path: str, query: dict) -> None:
        state = self.server.state
        if path == "/healthz":
            self._json(200, {"ok": True, "stations": len(state.station_ids), "now": state.clock.describe()["now"]})
        elif path == "/_stats" and method == "GET":
            wanted = query.get("stations", [""])[0]
            self._json(
                200,
                state.stats.snapshot(
                    set(wanted.split(",")) if wanted else None, with_arrivals=query.get("arrivals", ["0"])[0] == "1"
                ),
            )
        elif path == "/_v2" and method == "GET":
            self._json(200, state.v2.describe())
        elif path == "/_stats/reset" and method == "POST":
            state.stats.reset()
            state.v2.reset()
            self._json(200, {"ok": True})
        elif path == "/_faults":
            if method == "POST":
                try:
                    state.faults.update(json.loads(self._body() or b"{}"))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ApiError(400, f"bad fault patch: {exc}") from exc
            self._json(200, state.faults.describe())
        elif path == "/_clock":
            if method == "POST":
                patch = json.loads(self._body() or b"{}")
                if "now" in patch:
                    state.clock.set_now(parse_utc(patch["now"]))
                if "advance_s" in patch:
                    state.clock.advance(float(patch["advance_s"]))
            self._json(200, state.clock.describe())
        elif path == "/_tokens/revoke" and method == "POST":
            with state.tokens_lock:
                revoked = len(state.tokens)
                state.tokens.clear()
            self._json(200, {"revoked": revoked})
        else:
            raise ApiError(404, f"no route {method} {path}")


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # 64+ clients connect at once; the default backlog of 5 drops SYNs

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        self.state = state
        super().__init__(address, SimulatorHandler)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up mid-response (timeouts are injected on purpose) is not an error


def make_server(host: str, port: int, state: SimulatorState) -> SimulatorServer:
    return SimulatorServer((host, port), state)
