"""A mock of Huawei FusionSolar's SmartPVMS Northbound API (`/thirdData/...`), from Huawei's public docs.

Sources:
- "SmartPVMS 24.2.0 Northbound API Reference" (support.huawei.com/enterprise/en/doc/EDOC1100358266),
  chapter "Monitoring": Real-Time Plant Data API (`getStationRealKpi`: up to 100 plant codes,
  comma-separated `stationCodes`; the answer's `params.currentTime` in milliseconds, data items
  day_power/month_power/total_power/day_income/total_income/real_health_state, no per-item time),
  and the 24.4.0/25.1.0/25.2.0 editions' change history (EDOC1100366278, EDOC1100465337, EDOC1100492747:
  Device List API `getDevList`, Real-Time Device Data API `getDevRealKpi` by `devTypeId` — 1 string
  inverter, 39 residential battery, 47 grid meter with active_power in W — and the hourly history).
- "API Account Access" (SmartPVMS NBI Reference, chapter 3): login with the API account's `userName`
  and `systemCode` (its password); the system returns XSRF-TOKEN, which every later request carries.
- "Communicate with FusionSolar through an openAPI account" (Huawei, 2019FS026): access frequency is
  limited per interface; over the limit the interface answers an access-frequency error.
- The flow-control rules as public clients quote the Northbound docs: real-time data
  Roundup(plants/100) calls per 5 minutes, hourly/daily data and device list Roundup(plants/100)+24
  calls per day, failCode 407 ACCESS_FREQUENCY_IS_TOO_HIGH over the limit; token valid 30 minutes and
  extended by each call; one online session per account (a new login invalidates the previous token);
  failCode 305 `{"failCode":305,"immediately":true,"message":"USER_MUST_RELOGIN"}` for a missing or
  expired token (as captured in olibos/Home-Assistant-FusionSolar-OpenApi issue #3); failCode 20400
  USER_OR_VALUE_INVALID for a bad login; 20006 "Some devices do not match the device type".

What the mock enforces (every refusal counted in `stats.refusals` by reason):
- POST only (HTTP 405 otherwise, reason `method`). Errors are HTTP 200 with `success: false`,
  `failCode` and `message`.
- `/thirdData/login` `{"userName", "systemCode"}`: token in the `xsrf-token` response header (and an
  `XSRF-TOKEN` cookie); later calls send it as the `XSRF-TOKEN` request header. Missing, unknown,
  replaced (by a newer login) or idle > 30 min tokens: failCode 305 (reason `token`).
- Call budgets on the mock clock, sliding windows (reason `budget:<interface>`, failCode 407):
  `getStationRealKpi` Roundup(plants/100) per 5 min; `getDevRealKpi` Roundup(devices of that
  devTypeId/100) per 5 min for each devTypeId; `stations`, `getStationList`, `getDevList`,
  `getKpiStationHour` Roundup(plants/100)+24 per day; `login` `login_limit` per 10 min.
- Up to 100 codes per call (`stationCodes`, `devIds`), page size at most 100: failCode 20400
  (reason `params`). A devTypeId that does not match the devices: 20006 (reason `params`).

Where the docs are silent, the mock assumes:
- Refused calls (any failCode) do not consume a budget; budgets count per account.
- Login budget: 5 logins per 10 minutes (the docs say logins are flow-controlled but give no figure).
- `/thirdData/stations` takes `pageNo` (from 1, mandatory) and `pageSize` (1..100, default 100).
- Unknown plant or device codes are left out of `data` (a wrong devId answers `data: []`).
- Real-time values refresh every 5 minutes and show the newest reported 5-minute interval; a site's
  report lag (settable by the test) delays them. `getKpiStationHour` `collectTime` (ms) names a day in
  the plant's local time; the answer lists that day's hours up to now, each `collectTime` the hour's
  start in ms, with `null` data items for hours not reported yet (filled later).
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vendor_mocks.base import MockClock, MockStats, Request, Response, SlidingWindowBudget
from vendor_mocks.fleet import Fleet, Site, noise

TOKEN_IDLE_S = 30 * 60
REALTIME_PERIOD_S = 5 * 60
DAY_S = 24 * 3600
LOGIN_PERIOD_S = 10 * 60
LOGIN_LIMIT = 5
MAX_CODES = 100
MAX_PAGE_SIZE = 100
REALTIME_RESOLUTION_S = 300
STATION_BASE = 33_554_000
DEVICE_BASE = 1_000_000_000_000

INVERTER, BATTERY, METER = 1, 39, 47
HOUR_ITEMS = ("inverter_power", "ongrid_power", "power_profit", "radiation_intensity", "theory_power")

RELOGIN = 305
THROTTLED = 407
INVALID = 20400
TYPE_MISMATCH = 20006


class Failure(Exception):
    def __init__(self, fail_code: int, message: str, reason: str, data: Any = None) -> None:
        super().__init__(message)
        self.fail_code, self.message, self.reason, self.data = fail_code, message, reason, data


def station_code(site: Site) -> str:
    return f"NE={STATION_BASE + site.index}"


@dataclass(frozen=True)
class Device:
    id: int
    site: Site
    type_id: int
    number: int  # 1.. within its type at the site

    @property
    def dn(self) -> str:
        return f"NE={self.id - DEVICE_BASE}"

    @property
    def esn(self) -> str:
        prefix = {INVERTER: "HV", BATTERY: "LU", METER: "DT"}[self.type_id]
        return f"{prefix}{self.site.index:06d}{self.number}"


def devices_of(site: Site) -> list[Device]:
    base = DEVICE_BASE + site.index * 10
    devices = [Device(base + 1, site, INVERTER, 1), Device(base + 2, site, METER, 1)]
    devices += [Device(base + 2 + b, site, BATTERY, b) for b in range(1, site.batteries + 1)]
    return devices


@dataclass
class FusionSolarMock:
    """The Northbound API over a `Fleet`; serve it with `vendor_mocks.base.MockServer`."""

    fleet: Fleet
    clock: MockClock
    user_name: str = "c2c_api"
    system_code: str = "Huawei@123"
    login_limit: int = LOGIN_LIMIT
    #: Every documented duration (token idle time, budget periods, the 5-minute refresh) times this:
    #: 1/60 lets an end-to-end test on the wall clock run a 5-minute cycle every 5 s. Hours stay hours.
    time_scale: float = 1.0
    stats: MockStats = field(default_factory=MockStats)
    _budget: SlidingWindowBudget = field(default_factory=SlidingWindowBudget, init=False)
    _token: str | None = field(default=None, init=False)
    _token_used: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.devices = {d.id: d for site in self.fleet.sites for d in devices_of(site)}
        self._by_code = {station_code(s): s for s in self.fleet.sites}

    def _scaled(self, seconds: float) -> int:
        return max(1, round(seconds * self.time_scale))

    # --- test API ------------------------------------------------------------------------------
    def station_codes(self) -> list[str]:
        return list(self._by_code)

    def set_report_lag(self, site: str, lag_s: float) -> None:
        self.fleet.set_report_lag(self._by_code[site].index, lag_s)

    def snapshot(self, device_id: int, at: float | None = None) -> tuple[int, dict[str, Any]]:
        """Ground truth for an end-to-end test: what `getDevRealKpi` shows for the device now (or
        showed at `at`, epoch s), with the reading time a client should give it (the envelope time
        floored to 5 minutes, in ms)."""
        now = self.clock.now() if at is None else at
        floored = int(now // self._scaled(REALTIME_RESOLUTION_S) * self._scaled(REALTIME_RESOLUTION_S) * 1000)
        return floored, self._device_items(self.devices[device_id], now)

    def hour_values(self, code: str, hour: float) -> dict[str, float | None]:
        """Ground truth: the data items `getKpiStationHour` reports for the plant's hour starting at
        `hour` (epoch s) once it is reported."""
        return self._hour_items(self._by_code[code], hour)

    def budget(self, interface: str, dev_type: int | None = None) -> tuple[int, float]:
        """(calls, period in seconds) the vendor allows `interface` (per devTypeId for getDevRealKpi)."""
        blocks = math.ceil(self.fleet.count / 100)
        if interface == "getStationRealKpi":
            return blocks, self._scaled(REALTIME_PERIOD_S)
        if interface == "getDevRealKpi":
            count = sum(1 for d in self.devices.values() if d.type_id == dev_type)
            return max(1, math.ceil(count / 100)), self._scaled(REALTIME_PERIOD_S)
        if interface == "login":
            return self.login_limit, self._scaled(LOGIN_PERIOD_S)
        return blocks + 24, self._scaled(DAY_S)

    # --- HTTP ----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        interface = request.path.removeprefix("/thirdData/")
        self.stats.call(interface)
        now = self.clock.now()
        if request.method != "POST":
            self.stats.refuse("method")
            return Response.json(405, {"success": False, "failCode": 405, "message": "Method Not Allowed"})
        try:
            body = request.json_body()
        except ValueError:
            body = None
        headers: dict[str, str] = {}
        try:
            if not isinstance(body, dict):
                raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", "the body must be a JSON object")
            if interface == "login":
                self._login(body, now, headers)
                data: Any = None
                params: dict[str, Any] = {}
            else:
                self._authenticate(request.headers.get("xsrf-token"), now)
                handler = self._handlers().get(interface)
                if handler is None:
                    raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", f"no interface {interface}")
                data, params = handler(body, now)
        except Failure as failure:
            self.stats.refuse(failure.reason)
            payload: dict[str, Any] = {
                "success": False,
                "failCode": failure.fail_code,
                "message": failure.message,
                "data": failure.data,
                "params": {"currentTime": int(now * 1000)},
            }
            if failure.fail_code == RELOGIN:
                payload["immediately"] = True
            return Response.json(200, payload)
        envelope = {"success": True, "failCode": 0, "message": None, "data": data}
        envelope["params"] = {**params, "currentTime": int(now * 1000)}
        return Response.json(200, envelope, headers)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], float], tuple[Any, dict[str, Any]]]]:
        return {
            "logout": self._logout,
            "stations": self._stations,
            "getStationList": self._station_list,
            "getStationRealKpi": self._station_real_kpi,
            "getDevList": self._dev_list,
            "getDevRealKpi": self._dev_real_kpi,
            "getKpiStationHour": self._kpi_station_hour,
        }

    # --- auth and budgets ----------------------------------------------------------------------
    def _throttle(self, interface: str, now: float, dev_type: int | None = None) -> None:
        limit, period = self.budget(interface, dev_type)
        key = interface if dev_type is None else f"{interface}:{dev_type}"
        if not self._budget.try_acquire(key, limit, period, now):
            raise Failure(THROTTLED, "ACCESS_FREQUENCY_IS_TOO_HIGH", f"budget:{key}", "ACCESS_FREQUENCY_IS_TOO_HIGH")

    def _login(self, body: dict[str, Any], now: float, headers: dict[str, str]) -> None:
        self._throttle("login", now)
        if body.get("userName") != self.user_name or body.get("systemCode") != self.system_code:
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "login")
        token = secrets.token_hex(24)
        with self._lock:
            self._token, self._token_used = token, now  # one online session: the older token dies
        headers["xsrf-token"] = token
        headers["Set-Cookie"] = f"XSRF-TOKEN={token}; Path=/; Secure; HttpOnly"

    def _authenticate(self, token: str | None, now: float) -> None:
        with self._lock:
            valid = token is not None and token == self._token and now - self._token_used <= self._scaled(TOKEN_IDLE_S)
            if valid:
                self._token_used = now
        if not valid:
            raise Failure(RELOGIN, "USER_MUST_RELOGIN", "token")

    def _logout(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        with self._lock:
            self._token = None
        return None, {}

    # --- parameters ----------------------------------------------------------------------------
    @staticmethod
    def _codes(body: dict[str, Any], name: str) -> list[str]:
        raw = body.get(name)
        if not isinstance(raw, str) or not raw.strip():
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", f"{name} is mandatory")
        codes = [c.strip() for c in raw.split(",") if c.strip()]
        if len(codes) > MAX_CODES:
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", f"at most {MAX_CODES} {name}, got {len(codes)}")
        return codes

    def _sites(self, body: dict[str, Any]) -> tuple[list[Site], str]:
        codes = self._codes(body, "stationCodes")
        return [self._by_code[c] for c in codes if c in self._by_code], ",".join(codes)

    # --- plants ----------------------------------------------------------------------------------
    def _plant_json(self, site: Site) -> dict[str, Any]:
        connected = datetime(2021, 4, 1, 10, 0, tzinfo=site.zone)
        return {
            "plantCode": station_code(site),
            "plantName": f"Plant {site.index}",
            "plantAddress": f"{site.index} Solar Way, {site.zone_name.split('/')[-1]}",
            "longitude": round(-180 + 360 * noise("lon", site.index), 4),
            "latitude": round(-60 + 120 * noise("lat", site.index), 4),
            "capacity": round(site.peak_w / 1000, 3),
            "contactPerson": "",
            "contactMethod": "",
            "gridConnectionDate": connected.isoformat(),
        }

    def _stations(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        page_no, page_size = body.get("pageNo"), body.get("pageSize", MAX_PAGE_SIZE)
        if not isinstance(page_no, int) or page_no < 1:
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", "pageNo is mandatory, from 1")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", f"pageSize must be 1..{MAX_PAGE_SIZE}")
        self._throttle("stations", now)
        page = self.fleet.sites[(page_no - 1) * page_size : page_no * page_size]
        data = {
            "list": [self._plant_json(s) for s in page],
            "pageCount": math.ceil(self.fleet.count / page_size),
            "pageNo": page_no,
            "pageSize": page_size,
            "total": self.fleet.count,
        }
        return data, {}

    def _station_list(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        self._throttle("getStationList", now)
        data = [
            {
                "stationCode": station_code(s),
                "stationName": f"Plant {s.index}",
                "stationAddr": f"{s.index} Solar Way",
                "capacity": round(s.peak_w / 1_000_000, 6),  # MW in the old interface
                "buildState": None,
                "combineType": None,
                "aidType": 0,
                "stationLinkman": "",
                "linkmanPho": "",
            }
            for s in self.fleet.sites
        ]
        return data, {}

    def _local_midnight(self, site: Site, t: float) -> float:
        local = datetime.fromtimestamp(t, site.zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def _day_energy_kwh(self, site: Site, now: float) -> float:
        newest = self.fleet.last_reported_start(site, self._scaled(REALTIME_RESOLUTION_S), now)
        start = self._local_midnight(site, now)
        return round(self.fleet.pv_energy_wh(site, start, newest + self._scaled(REALTIME_RESOLUTION_S)) / 1000, 3)

    def _station_real_kpi(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        sites, codes = self._sites(body)
        self._throttle("getStationRealKpi", now)
        data = []
        for site in sites:
            day = self._day_energy_kwh(site, now)
            typical_day = site.peak_w * 4.5 / 1000
            day_of_month = datetime.fromtimestamp(now, site.zone).day
            month = round(day + typical_day * (day_of_month - 1), 3)
            total = round(month + typical_day * 1000, 3)
            data.append(
                {
                    "stationCode": station_code(site),
                    "dataItemMap": {
                        "day_power": day,
                        "month_power": month,
                        "total_power": total,
                        "day_income": round(day * 0.3, 3),
                        "total_income": round(total * 0.3, 3),
                        "real_health_state": 3,
                    },
                }
            )
        return data, {"stationCodes": codes}

    # --- devices -------------------------------------------------------------------------------
    def _dev_list(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        sites, codes = self._sites(body)
        self._throttle("getDevList", now)
        data = [
            {
                "id": d.id,
                "devDn": d.dn,
                "devName": f"{d.esn}",
                "stationCode": station_code(site),
                "esnCode": d.esn,
                "devTypeId": d.type_id,
                "softwareVersion": "V100R001C00",
                "invType": "SUN2000-10KTL-M1" if d.type_id == INVERTER else None,
                "model": {INVERTER: "SUN2000-10KTL-M1", BATTERY: "LUNA2000-10-S0", METER: "DTSU666-H"}[d.type_id],
                "longitude": None,
                "latitude": None,
            }
            for site in sites
            for d in devices_of(site)
        ]
        return data, {"stationCodes": codes}

    def _dev_real_kpi(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        ids = self._codes(body, "devIds")
        dev_type = body.get("devTypeId")
        if isinstance(dev_type, str) and dev_type.isdigit():
            dev_type = int(dev_type)
        if not isinstance(dev_type, int):
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", "devTypeId is mandatory")
        known = [self.devices[int(i)] for i in ids if i.isdigit() and int(i) in self.devices]
        if dev_type not in (INVERTER, BATTERY, METER) or any(d.type_id != dev_type for d in known):
            raise Failure(TYPE_MISMATCH, "Some devices do not match the device type.", "params")
        self._throttle("getDevRealKpi", now, dev_type)
        data = [{"devId": d.id, "sn": d.esn, "dataItemMap": self._device_items(d, now)} for d in known]
        return data, {"devIds": ",".join(ids), "devTypeId": dev_type}

    def _device_items(self, device: Device, now: float) -> dict[str, Any]:
        site, fleet = device.site, self.fleet
        mid = (
            fleet.last_reported_start(site, self._scaled(REALTIME_RESOLUTION_S), now)
            + self._scaled(REALTIME_RESOLUTION_S) / 2
        )
        if device.type_id == INVERTER:
            pv = fleet.pv_w(site, mid)
            return {
                "active_power": round(pv / 1000, 3),
                "day_cap": self._day_energy_kwh(site, now),
                "total_cap": round(site.peak_w * 4.5, 3),
                "temperature": round(30 + 15 * pv / site.peak_w, 1),
                "efficiency": 98.2 if pv else 0.0,
                "inverter_state": 512 if pv else 40960,
                "run_state": 1,
            }
        if device.type_id == BATTERY:
            power = fleet.battery_w(site, device.number, mid)
            return {
                "battery_status": 2,
                "battery_soc": fleet.battery_soc(site, device.number, mid),
                "battery_soh": 99.0,
                "ch_discharge_power": power,  # W, positive while charging
                "busbar_u": 450.0,
                "max_charge_power": 5000.0,
                "max_discharge_power": 5000.0,
                "ch_discharge_model": 2,
                "run_state": 1,
            }
        grid = fleet.grid_w(site, mid)
        return {
            "active_power": grid,  # W (unit changed to W in 24.7.0)
            "meter_u": 230.0,
            "meter_i": round(abs(grid) / 230, 2),
            "active_cap": round(1000 + 5 * noise(site.index, "cap"), 2),
            "reverse_active_cap": round(500 + 5 * noise(site.index, "rcap"), 2),
            "run_state": 1,
        }

    # --- hourly history --------------------------------------------------------------------------
    def _kpi_station_hour(self, body: dict[str, Any], now: float) -> tuple[Any, dict[str, Any]]:
        sites, codes = self._sites(body)
        collect = body.get("collectTime")
        if not isinstance(collect, int) or collect <= 0:
            raise Failure(INVALID, "USER_OR_VALUE_INVALID", "params", "collectTime (ms) is mandatory")
        self._throttle("getKpiStationHour", now)
        data = []
        for site in sites:
            start = self._local_midnight(site, collect / 1000)
            local_start = datetime.fromtimestamp(start, site.zone)
            end = (local_start + timedelta(days=1)).replace(tzinfo=site.zone).timestamp()
            hour = start
            while hour < end and hour <= now:
                known = self.fleet.reported(site, hour, 3600, now)
                items = self._hour_items(site, hour) if known else dict.fromkeys(HOUR_ITEMS)
                data.append({"stationCode": station_code(site), "collectTime": int(hour * 1000), "dataItemMap": items})
                hour += 3600
        return data, {"stationCodes": codes, "collectTime": collect}

    def _hour_items(self, site: Site, hour: float) -> dict[str, float | None]:
        energy = self.fleet.pv_energy_wh(site, hour, hour + 3600) / 1000
        values = (energy, energy * 0.6, energy * 0.3, energy / site.peak_w * 1000, site.peak_w / 1000)
        return {key: round(value, 4) for key, value in zip(HOUR_ITEMS, values, strict=True)}
