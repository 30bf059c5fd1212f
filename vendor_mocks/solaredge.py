"""A mock of the SolarEdge Monitoring API v1 (monitoringapi.solaredge.com), from SolarEdge's public docs.

Source: "SolarEdge Monitoring Server API" (se_monitoring_api.pdf, knowledge-center.solaredge.com/
sites/kc/files/se_monitoring_api.pdf, and the older www.solaredge.com/sites/default/files/
se_monitoring_api.pdf), sections "Technical Information" (URL, `api_key` query parameter, date
formats), "Usage Limitations" (quotas, concurrency), "Site List", "Site Details", "Site Power",
"Site Power: Bulk Version", "Site Power - Detailed", "Site Energy - Detailed" and "Storage
Information"; the usage-limitation paragraph as quoted in home-assistant/core issue #58428; the bulk
response shape (`powerDateValuesList.siteEnergyList[].powerDataValueSeries.values`) as public client
libraries parse it.

What the docs say and the mock enforces:
- Every call is a GET with `api_key=<key>` in the query; a wrong or missing key, or a site the key
  cannot see, is refused with HTTP 403 (reason `auth`).
- Dates are "YYYY-MM-DD hh:mm:ss" in the site's local time (`location.timeZone` of Site Details).
- `/sites/list`: `startIndex` (default 0) and `size` (default 100, at most 100); the answer carries
  the total `count`. A `size` over 100 is refused (HTTP 400, reason `paging`).
- `/site/{id}/power` and `/site/{id}/powerDetails`, `/site/{id}/energyDetails` at QUARTER_OF_AN_HOUR
  or HOUR: "limited to one-month period" — a wider window is refused (HTTP 400, reason `window`).
- `/sites/{id1,id2,...}/power` (bulk): at most 100 site ids; "a bulk call consumes one request from
  the daily quota of each site included".
- `/site/{id}/storageData`: "limited to one week period" (HTTP 400, reason `window`); one entry per
  battery with its `serialNumber` and its `telemetries`; `serials` narrows to chosen batteries.
- Daily limitation: 300 requests per account key (calls without a site id, e.g. Site List) and 300 per
  site id; over it, HTTP 429 (reason `daily_quota`).
- Concurrency limitation: at most 3 concurrent calls (the docs: per source IP; one client here);
  a fourth concurrent call gets HTTP 429 (reason `concurrency`).
- Quarter-hour power/energy values that are not yet reported are `null`, and are filled in later.

Where the docs are silent, the mock assumes (and a client must not rely on more than this):
- Error bodies are JSON `{"String": "<message>"}`; invalid parameters and window violations are HTTP
  400. Refused calls do not consume quota; the daily quota resets at 00:00 UTC of the mock's clock.
- A series lists every quarter-hour whose start lies in [startTime floored to the quarter, endTime];
  quarters that are in the future or not reported yet are `null`. Each value is the quarter's mean.
- Local times across DST: a local time that does not exist (spring forward) is read as the time
  after the gap; in the repeated hour (fall back) startTime/endTime name the first occurrence, and
  the answer lists both occurrences in time order, so the same "date" string appears twice.
- Bulk power: each site's series is in that site's own local time.
- Storage telemetries come every 5 minutes and only once reported (no `null`s); `power` is positive
  while charging.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from vendor_mocks.base import (
    MockClock,
    MockStats,
    Request,
    Response,
    SlidingWindowBudget,
)
from vendor_mocks.fleet import Fleet, Site, noise

QUARTER_S = 900
STORAGE_RESOLUTION_S = 300
MAX_PAGE_SIZE = 100
MAX_BULK_SITES = 100
MAX_CONCURRENT = 3
DAILY_QUOTA = 300
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
SITE_ID_BASE = 100_000
METERS = ("PRODUCTION", "CONSUMPTION", "SELFCONSUMPTION", "FEEDIN", "PURCHASED")

_SITE_PATH = re.compile(r"^/site/(\d+)/(details|power|powerDetails|energyDetails|storageData)$")
_BULK_PATH = re.compile(r"^/sites/([\d,]+)/power$")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def site_id(site: Site) -> int:
    return SITE_ID_BASE + site.index


def battery_serial(site: Site, battery: int) -> str:
    return f"BF{site_id(site)}-{battery}"


def add_month(value: datetime) -> datetime:
    """The same wall time one calendar month later (the 31st becomes the month's last day)."""
    year, month = (value.year + 1, 1) if value.month == 12 else (value.year, value.month + 1)
    next_first = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    day = min(value.day, (next_first - timedelta(days=1)).day)
    return value.replace(year=year, month=month, day=day)


@dataclass
class SolarEdgeMock:
    """The SolarEdge API over a `Fleet`; serve it with `vendor_mocks.base.MockServer`."""

    fleet: Fleet
    clock: MockClock
    api_key: str = "se-test-key"
    daily_quota: int = DAILY_QUOTA
    max_concurrent: int = MAX_CONCURRENT
    latency_s: float = 0.0  # wall-clock hold of each answered call, to make concurrency observable
    #: Every documented duration but the window limits (quarter-hour, storage resolution, quota day)
    #: times this: 1/60 lets an end-to-end test on the wall clock see a new quarter every 15 s.
    time_scale: float = 1.0
    stats: MockStats = field(default_factory=MockStats)
    _quota: SlidingWindowBudget = field(default_factory=SlidingWindowBudget, init=False)
    _in_flight: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def _quarter(self) -> int:
        return max(1, round(QUARTER_S * self.time_scale))

    @property
    def _storage_step(self) -> int:
        return max(1, round(STORAGE_RESOLUTION_S * self.time_scale))

    # --- test API ------------------------------------------------------------------------------
    def site_ids(self) -> list[int]:
        return [site_id(s) for s in self.fleet.sites]

    def set_report_lag(self, site: str, lag_s: float) -> None:
        self.fleet.set_report_lag(self._site(site).index, lag_s)

    def expected_power(self, sid: int, slot_utc: datetime) -> float | None:
        """The value the mock answers now for the quarter starting at `slot_utc` (None = null)."""
        return self._power_value(self._site(str(sid)), slot_utc.timestamp(), self.clock.now())

    def reported_power(self, sid: int, since: datetime, until: datetime) -> dict[datetime, float]:
        """Ground truth for an end-to-end test: every quarter-hour starting in [since, until) whose
        power the mock reports now, by its UTC start."""
        site, now = self._site(str(sid)), self.clock.now()
        slots = self._slots(since.timestamp(), until.timestamp() - 1, self._quarter)
        return {
            datetime.fromtimestamp(slot, UTC): self.fleet.pv_w(site, slot + self._quarter / 2)
            for slot in slots
            if slot >= since.timestamp() and self._known(site, slot, self._quarter, now)
        }

    def reported_storage(self, sid: int, since: datetime, until: datetime) -> dict[tuple[str, datetime], float]:
        """Ground truth: battery power by (serial, UTC time) for every telemetry in [since, until) the
        mock reports now."""
        site, now = self._site(str(sid)), self.clock.now()
        slots = [
            slot
            for slot in self._slots(since.timestamp(), until.timestamp() - 1, self._storage_step)
            if slot >= since.timestamp() and self._known(site, slot, self._storage_step, now)
        ]
        return {
            (battery_serial(site, b), datetime.fromtimestamp(slot, UTC)): self.fleet.battery_w(
                site, b, slot + self._storage_step / 2
            )
            for b in range(1, site.batteries + 1)
            for slot in slots
        }

    # --- HTTP ----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path.removesuffix(".json")
        self.stats.call(self._endpoint(path))
        try:
            if request.method != "GET":
                raise ApiError(405, "method", f"{request.method} is not supported")
            if request.query.get("api_key") != self.api_key:
                raise ApiError(403, "auth", "Invalid token")
            with self._slot():
                payload = self._route(path, request.query)
                if self.latency_s:
                    time.sleep(self.latency_s)
                return Response.json(200, payload)
        except ApiError as error:
            self.stats.refuse(error.reason)
            return Response.json(error.status, {"String": error.message})

    @staticmethod
    def _endpoint(path: str) -> str:
        if path == "/sites/list":
            return "sites/list"
        if _BULK_PATH.match(path):
            return "sites/power(bulk)"
        match = _SITE_PATH.match(path)
        return f"site/{match.group(2)}" if match else "unknown"

    def _slot(self) -> _ConcurrencySlot:
        return _ConcurrencySlot(self)

    def _route(self, path: str, query: dict[str, str] | Any) -> Any:
        if path == "/sites/list":
            return self._sites_list(query)
        if bulk := _BULK_PATH.match(path):
            ids = [part for part in bulk.group(1).split(",") if part]
            if len(ids) > MAX_BULK_SITES:
                raise ApiError(400, "bad_request", f"at most {MAX_BULK_SITES} site ids per bulk call, got {len(ids)}")
            sites = [self._site(sid) for sid in ids]
            windows = [self._window(site, query, add_month) for site in sites]
            self._charge(*(f"site:{site_id(site)}" for site in sites))
            return self._bulk_power(sites, windows)
        match = _SITE_PATH.match(path)
        if not match:
            raise ApiError(404, "not_found", f"no such resource {path}")
        site, resource = self._site(match.group(1)), match.group(2)
        handlers: dict[str, Callable[[Site, Any], Any]] = {
            "details": lambda s, q: {"details": self._site_json(s)},
            "power": self._power,
            "powerDetails": self._power_details,
            "energyDetails": self._energy_details,
            "storageData": self._storage_data,
        }
        # Validate before charging: a refused call does not consume quota.
        answer = handlers[resource](site, query)
        self._charge(f"site:{site_id(site)}")
        return answer

    def _charge(self, *keys: str) -> None:
        now = self.clock.now()
        day = 86400 * self.time_scale
        day_start = now - now % day  # the quota resets at 00:00 UTC (assumed: the docs name no zone)
        if not self._quota.try_acquire_all([f"{key}:{day_start}" for key in keys], self.daily_quota, day, now):
            raise ApiError(429, "daily_quota", "Too Many Requests")

    def _site(self, raw: str) -> Site:
        try:
            index = int(raw) - SITE_ID_BASE
            return self.fleet.site(index)
        except (KeyError, ValueError):
            raise ApiError(403, "auth", f"Site {raw} is not accessible with this api_key") from None

    # --- resources ------------------------------------------------------------------------------
    def _sites_list(self, query: Any) -> Any:
        try:
            size = int(query.get("size", MAX_PAGE_SIZE))
            start = int(query.get("startIndex", 0))
        except ValueError as error:
            raise ApiError(400, "bad_request", f"invalid paging parameter: {error}") from None
        if not 1 <= size <= MAX_PAGE_SIZE or start < 0:
            raise ApiError(400, "paging", f"size must be 1..{MAX_PAGE_SIZE} and startIndex >= 0")
        self._charge("account")
        page = self.fleet.sites[start : start + size]
        return {"sites": {"count": self.fleet.count, "site": [self._site_json(s) for s in page]}}

    def _site_json(self, site: Site) -> dict[str, Any]:
        country = {"Europe/Berlin": "DE", "America/New_York": "US", "Australia/Sydney": "AU", "Asia/Tokyo": "JP"}
        code = country.get(site.zone_name, "XX")
        return {
            "id": site_id(site),
            "name": f"Site {site.index}",
            "accountId": 4242,
            "status": "Active",
            "peakPower": round(site.peak_w / 1000, 2),
            "lastUpdateTime": datetime.fromtimestamp(self.clock.now(), site.zone).strftime("%Y-%m-%d"),
            "currency": "EUR",
            "installationDate": "2021-04-01",
            "ptoDate": None,
            "notes": "",
            "type": "Optimizers & Inverters",
            "location": {
                "country": code,
                "city": site.zone_name.split("/")[-1].replace("_", " "),
                "address": f"{site.index} Solar Way",
                "address2": "",
                "zip": f"{10000 + site.index}",
                "timeZone": site.zone_name,
                "countryCode": code,
            },
            "uris": {"DETAILS": f"/site/{site_id(site)}/details"},
            "publicSettings": {"isPublic": False},
        }

    def _window(self, site: Site, query: Any, limit: Callable[[datetime], datetime]) -> tuple[float, float]:
        """[start, end] as UTC epoch seconds from site-local startTime/endTime, within `limit`."""
        try:
            start_local = datetime.strptime(query["startTime"], DATE_FORMAT)
            end_local = datetime.strptime(query["endTime"], DATE_FORMAT)
        except KeyError as missing:
            raise ApiError(400, "bad_request", f"{missing.args[0]} is required") from None
        except ValueError:
            raise ApiError(400, "bad_request", "startTime/endTime must be 'YYYY-MM-DD hh:mm:ss'") from None
        if end_local < start_local:
            raise ApiError(400, "bad_request", "endTime must not be before startTime")
        if end_local > limit(start_local):
            raise ApiError(400, "window", "The requested time frame exceeds the allowed period for this call")
        start = start_local.replace(tzinfo=site.zone).timestamp()
        end = end_local.replace(tzinfo=site.zone).timestamp()
        return start, end

    def _local(self, site: Site, t: float) -> str:
        return datetime.fromtimestamp(t, UTC).astimezone(site.zone).strftime(DATE_FORMAT)

    @staticmethod
    def _slots(start: float, end: float, step: int) -> Iterator[float]:
        slot = start - start % step
        while slot <= end:
            yield slot
            slot += step

    def _known(self, site: Site, slot: float, step: int, now: float) -> bool:
        return self.fleet.reported(site, slot, step, now)

    def _power_value(self, site: Site, slot: float, now: float) -> float | None:
        return self.fleet.pv_w(site, slot + self._quarter / 2) if self._known(site, slot, self._quarter, now) else None

    def _series(
        self, site: Site, window: tuple[float, float], mean_w: Callable[[Site, float], float]
    ) -> list[dict[str, Any]]:
        """The quarter-hours of `window`, each `mean_w(site, quarter midpoint)` once reported, else null."""
        now = self.clock.now()
        return [
            {
                "date": self._local(site, slot),
                "value": mean_w(site, slot + self._quarter / 2)
                if self._known(site, slot, self._quarter, now)
                else None,
            }
            for slot in self._slots(*window, self._quarter)
        ]

    def _power(self, site: Site, query: Any) -> Any:
        window = self._window(site, query, add_month)
        values = self._series(site, window, self.fleet.pv_w)
        return {"power": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W", "measuredBy": "INVERTER", "values": values}}

    def _bulk_power(self, sites: list[Site], windows: list[tuple[float, float]]) -> Any:
        entries = [
            {
                "siteId": site_id(site),
                "powerDataValueSeries": {
                    "measuredBy": "INVERTER",
                    "values": self._series(site, window, self.fleet.pv_w),
                },
            }
            for site, window in zip(sites, windows, strict=True)
        ]
        return {
            "powerDateValuesList": {
                "timeUnit": "QUARTER_OF_AN_HOUR",
                "unit": "W",
                "count": len(entries),
                "siteEnergyList": entries,
            }
        }

    def _meter_w(self, site: Site, t: float, meter: str) -> float:
        pv, load = self.fleet.pv_w(site, t), self.fleet.load_w(site, t)
        grid = self.fleet.grid_w(site, t)
        return {
            "PRODUCTION": pv,
            "CONSUMPTION": load,
            "SELFCONSUMPTION": round(min(pv, load), 1),
            "FEEDIN": round(max(0.0, -grid), 1),
            "PURCHASED": round(max(0.0, grid), 1),
        }[meter]

    def _meters(self, query: Any) -> list[str]:
        meters = [m.strip().upper() for m in str(query.get("meters", ",".join(METERS))).split(",") if m.strip()]
        unknown = sorted(set(meters) - set(METERS))
        if unknown:
            raise ApiError(400, "bad_request", f"unknown meters {unknown}; known: {list(METERS)}")
        return meters

    def _power_details(self, site: Site, query: Any) -> Any:
        window = self._window(site, query, add_month)
        meters = [
            {
                "type": meter.title(),
                "values": self._series(site, window, partial(self._meter_w, meter=meter)),
            }
            for meter in self._meters(query)
        ]
        return {"powerDetails": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W", "meters": meters}}

    def _energy_details(self, site: Site, query: Any) -> Any:
        unit = query.get("timeUnit", "DAY")
        if unit not in ("QUARTER_OF_AN_HOUR", "HOUR"):
            raise ApiError(400, "bad_request", f"the mock serves timeUnit QUARTER_OF_AN_HOUR or HOUR, not {unit}")
        window = self._window(site, query, add_month)
        step = self._quarter if unit == "QUARTER_OF_AN_HOUR" else 4 * self._quarter
        now = self.clock.now()

        def energy(meter: str, slot: float) -> float | None:
            if not self._known(site, slot, step, now):
                return None
            quarters = range(int(slot), int(slot) + step, self._quarter)
            return round(sum(self._meter_w(site, q + self._quarter / 2, meter) * QUARTER_S / 3600 for q in quarters), 1)

        meters = [
            {
                "type": meter.title(),
                "values": [
                    {"date": self._local(site, slot), "value": energy(meter, slot)}
                    for slot in self._slots(*window, step)
                ],
            }
            for meter in self._meters(query)
        ]
        return {"energyDetails": {"timeUnit": unit, "unit": "Wh", "meters": meters}}

    def _storage_data(self, site: Site, query: Any) -> Any:
        window = self._window(site, query, lambda start: start + timedelta(weeks=1))
        wanted = {s for s in str(query.get("serials", "")).split(",") if s}
        now = self.clock.now()
        batteries = []
        for battery in range(1, site.batteries + 1):
            serial = battery_serial(site, battery)
            if wanted and serial not in wanted:
                continue
            telemetries = [
                self._telemetry(site, battery, slot)
                for slot in self._slots(*window, self._storage_step)
                if self._known(site, slot, self._storage_step, now)
            ]
            batteries.append(
                {
                    "nameplate": site.battery_capacity_wh,
                    "serialNumber": serial,
                    "modelNumber": "BAT-10K1P",
                    "telemetryCount": len(telemetries),
                    "telemetries": telemetries,
                }
            )
        return {"storageData": {"batteryCount": len(batteries), "batteries": batteries}}

    def _telemetry(self, site: Site, battery: int, slot: float) -> dict[str, Any]:
        mid = slot + self._storage_step / 2
        power = self.fleet.battery_w(site, battery, mid)
        days = (slot - 1_600_000_000) / 86400
        return {
            "timeStamp": self._local(site, slot),
            "power": power,
            "batteryState": 3 if power else 1,
            "lifeTimeEnergyCharged": round(days * 7000 + 1000 * noise(site.index, battery), 1),
            "lifeTimeEnergyDischarged": round(days * 6500 + 800 * noise(site.index, battery), 1),
            "fullPackEnergyAvailable": site.battery_capacity_wh,
            "internalTemp": round(25 + 5 * noise(self.fleet.seed, "temp", site.index, battery, int(slot)), 1),
            "ACGridCharging": 0.0,
            "stateOfCharge": self.fleet.battery_soc(site, battery, mid),
        }


class _ConcurrencySlot:
    """Holds one of the key's concurrent-call slots for the duration of a call, or refuses with 429."""

    def __init__(self, mock: SolarEdgeMock) -> None:
        self._mock = mock

    def __enter__(self) -> None:
        mock = self._mock
        with mock._lock:
            if mock._in_flight >= mock.max_concurrent:
                raise ApiError(429, "concurrency", "Too Many Requests")
            mock._in_flight += 1
            mock.stats.saw_in_flight(mock._in_flight)

    def __exit__(self, *exc: object) -> None:
        with self._mock._lock:
            self._mock._in_flight -= 1
