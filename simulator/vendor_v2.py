"""The simulator's `/v2` API: the awkward habits of real vendor APIs, for the source engine's tests.

  POST /v2/login    {"userName", "systemCode"}   token in the `xsrf-token` response header; later
                    calls send it as `XSRF-TOKEN`; it expires after `token_ttl_s`; at most
                    `LOGINS_PER_MINUTE` logins a minute (more: failCode 407)
  POST /v2/stations {"pageNo", "pageSize"}       sites with their `timeZone` (three zones: an IANA
                    zone with DST east of UTC, one west of UTC, and a fixed `+05:30` offset)
  POST /v2/history  {"stationCode", "startTime", "endTime", "startIndex", "pageSize"}
                    times are site-local `YYYY-MM-DD HH:MM:SS`; the window is at most a day; items
                    one per battery (`sn`) per slot, **device by device** (one device's whole
                    window, then the next: pages are not in time order), paged by offset with a
                    `total`; a slot is listed as soon as it ends with `power: null` until its value
                    is reported (0-2 slots late, per site), and some values are **revised** once,
                    a little later
  POST /v2/realtime {"stationCodes": "a,b,..."} up to 100 sites per call: each site's current state
                    (`soc`, `power`), no per-item time; the answer's `params.currentTime` (epoch ms)
Every error is an HTTP 200 with `success: false`, `failCode` and `message` (305 expired token,
407 call budget or login frequency, 20400 bad parameters). `/v2/history` has a call budget
(`budget_calls` per `budget_period_s`, sliding): a call over it is refused (407) and counted.

Values are a closed form of (seed, site, battery, slot), so a test knows every value, late or
revised, at any simulated time (`expected_power`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

LOCAL = "%Y-%m-%d %H:%M:%S"
ZONES = ("Europe/Berlin", "America/New_York", "+05:30")
LOGINS_PER_MINUTE = 10
MAX_WINDOW_S = 86_400
MAX_PAGE_SIZE = 500


def zone_name(index: int) -> str:
    return ZONES[(index - 1) % len(ZONES)]


def zone_of(name: str) -> tzinfo:
    if name.startswith(("+", "-")):
        hours, minutes = name[1:].split(":")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-offset if name[0] == "-" else offset)
    return ZoneInfo(name)


def batteries(index: int) -> list[str]:
    """Odd sites have two batteries, even ones one."""
    return ["BAT-1", "BAT-2"] if index % 2 else ["BAT-1"]


def _noise(seed: int, site: str, sn: str, slot: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{site}:{sn}:{slot}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class V2Settings:
    interval_s: int = 60
    #: A value is revised this long after its slot (only slots whose noise is divisible by 5).
    revise_after_s: int = 180
    budget_calls: int = 1_000_000
    budget_period_s: float = 60.0
    token_ttl_s: float = 1800.0


def report_lag_s(index: int, interval_s: int) -> int:
    """Sites report 0, 1 or 2 slots late."""
    return (index % 3) * interval_s


def expected_power(seed: int, site: str, index: int, sn: str, slot: int, now: float, cfg: V2Settings) -> float | None:
    """The value the API shows for a slot at simulated time `now` (None: not reported yet)."""
    if now < slot + report_lag_s(index, cfg.interval_s):
        return None
    n = _noise(seed, site, sn, slot)
    value = round((n % 10_000) / 100 - 50, 2)
    if n % 5 == 0 and now >= slot + cfg.revise_after_s:
        value = round(value + 0.5, 2)
    return value


class V2Error(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class V2State:
    cfg: V2Settings
    seed: int
    station_ids: list[str]
    api_key: str
    tokens: dict[str, float] = field(default_factory=dict)
    logins: deque[float] = field(default_factory=deque)
    calls: deque[float] = field(default_factory=deque)
    refusals: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def index_of(self, site: str) -> int:
        try:
            return self.station_ids.index(site) + 1
        except ValueError as exc:
            raise V2Error(20400, f"unknown stationCode {site}") from exc

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"refusals": dict(self.refusals), "served": dict(self.served), "logins": len(self.logins)}

    def reset(self) -> None:
        with self.lock:
            self.refusals.clear()
            self.served.clear()


def _take(window: deque[float], limit: int, period_s: float) -> bool:
    now = time.monotonic()
    while window and window[0] <= now - period_s:
        window.popleft()
    if len(window) >= limit:
        return False
    window.append(now)
    return True


def handle(
    state: V2State, path: str, body: dict[str, Any], headers: Any, now: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """One /v2 call: (JSON answer, response headers). Errors are answers too (HTTP 200)."""
    try:
        if path == "/v2/login":
            return _login(state, body)
        _authorize(state, headers)
        if path == "/v2/stations":
            return _stations(state, body), {}
        if path == "/v2/realtime":
            return _realtime(state, body, now), {}
        if path == "/v2/history":
            with state.lock:
                if not _take(state.calls, state.cfg.budget_calls, state.cfg.budget_period_s):
                    state.refusals["budget"] += 1
                    raise V2Error(407, "ACCESS_FREQUENCY_IS_TOO_HIGH")
            answer = _history(state, body, now)
            with state.lock:
                state.served["history"] += 1
            return answer, {}
        raise V2Error(20400, f"no interface {path}")
    except V2Error as err:
        return {"success": False, "failCode": err.code, "message": err.message, "data": None}, {}


def _login(state: V2State, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    with state.lock:
        if not _take(state.logins, LOGINS_PER_MINUTE, 60.0):
            state.refusals["login"] += 1
            raise V2Error(407, "LOGIN_FREQUENCY_IS_TOO_HIGH")
        if body.get("userName") != "c2c" or not secrets.compare_digest(str(body.get("systemCode", "")), state.api_key):
            state.refusals["credentials"] += 1
            raise V2Error(20400, "USER_OR_VALUE_INVALID")
        token = secrets.token_urlsafe(18)
        now = time.monotonic()
        state.tokens = {t: e for t, e in state.tokens.items() if e > now}
        state.tokens[token] = now + state.cfg.token_ttl_s
    return {"success": True, "failCode": 0, "data": None}, {"xsrf-token": token}


def _authorize(state: V2State, headers: Any) -> None:
    token = headers.get("XSRF-TOKEN") or ""
    with state.lock:
        expiry = state.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            state.refusals["token"] += 1
            raise V2Error(305, "USER_MUST_RELOGIN")


def _int(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(body.get(name, default))
    except (TypeError, ValueError) as exc:
        raise V2Error(20400, f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise V2Error(20400, f"{name} must be in [{lo}, {hi}]")
    return value


def _stations(state: V2State, body: dict[str, Any]) -> dict[str, Any]:
    page = _int(body, "pageNo", 1, 1, 10**6)
    size = _int(body, "pageSize", 100, 1, 100)
    ids = state.station_ids[(page - 1) * size : page * size]
    rows = [{"plantCode": sid, "plantName": f"Site {sid}", "timeZone": zone_name(state.index_of(sid))} for sid in ids]
    total = len(state.station_ids)
    return {"success": True, "failCode": 0, "data": {"list": rows, "total": total, "pages": -(-total // size)}}


def _realtime(state: V2State, body: dict[str, Any], now: float) -> dict[str, Any]:
    codes = [c for c in str(body.get("stationCodes", "")).split(",") if c]
    if not 1 <= len(codes) <= 100:
        raise V2Error(20400, "stationCodes: 1 to 100 codes, comma-separated")
    step = int(now) // 300 * 300  # the state refreshes every 5 minutes
    data = []
    for code in codes:
        if code not in state.station_ids:
            continue  # unknown codes are left out
        n = _noise(state.seed, code, "realtime", step)
        data.append({"stationCode": code, "dataItemMap": {"soc": n % 101, "power": round((n % 2000) / 100 - 10, 2)}})
    with state.lock:
        state.served["realtime"] += 1
    return {"success": True, "failCode": 0, "data": data, "params": {"currentTime": int(now * 1000)}}


def _local(text: Any, zone: tzinfo, name: str) -> float:
    try:
        return datetime.strptime(str(text), LOCAL).replace(tzinfo=zone).astimezone(UTC).timestamp()
    except ValueError as exc:
        raise V2Error(20400, f"{name} must be {LOCAL!r} site-local time") from exc


def _history(state: V2State, body: dict[str, Any], now: float) -> dict[str, Any]:
    site = str(body.get("stationCode", ""))
    index = state.index_of(site)
    zone = zone_of(zone_name(index))
    start, end = _local(body.get("startTime"), zone, "startTime"), _local(body.get("endTime"), zone, "endTime")
    if end < start or end - start > MAX_WINDOW_S:
        raise V2Error(20400, "the window must be at most one day")
    offset = _int(body, "startIndex", 0, 0, 10**9)
    size = _int(body, "pageSize", 100, 1, MAX_PAGE_SIZE)
    interval = state.cfg.interval_s
    end = min(end, now)
    first = (int(start) // interval + 1) * interval
    slots = range(first, int(end) + 1, interval)
    items = [
        {
            "sn": sn,
            "time": datetime.fromtimestamp(slot, UTC).astimezone(zone).strftime(LOCAL),
            "power": expected_power(state.seed, site, index, sn, slot, now, state.cfg),
        }
        for sn in batteries(index)
        for slot in slots
    ]
    return {"success": True, "failCode": 0, "data": items[offset : offset + size], "total": len(items)}
