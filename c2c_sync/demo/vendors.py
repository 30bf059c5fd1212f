"""The vendor API the demo's worker reads: the simulator (default) or a mock of a real vendor.

`make demo VENDOR=fusionsolar|solaredge` runs the shipped vendor definition
(functions/sync_worker/source/vendors/<name>.yaml) against that vendor's mock (`vendor_mocks/`,
test fixtures written from the vendor's public docs), served over real HTTP from this process on a
free port. The mock runs on the wall clock (the worker's) with the vendor's durations shrunk so one
demo interval is one vendor period (FusionSolar: the 5-minute real-time refresh and call budget;
SolarEdge: the quarter-hour); the definition's own durations (budget periods, snapshot resolution,
lookback, login interval, retry-after) are scaled alike and written to a copy in the run's directory.
Window limits stay calendar-sized, as in the mocks.

"Lost" per vendor, from the vendor's side, never from the worker's own account:
- SolarEdge: every value the mock's model reports for a site at or before the final cursor of its
  endpoint (power quarter-hours, storage telemetries per battery serial), as the end-to-end test.
- FusionSolar: every plant of every real-time answer the mock gave (its `currentTime` floored to the
  5-minute resolution, as the definition reads it), up to the plant's final cursor: a snapshot API
  cannot be asked for an older value, so one it answered and nobody received is gone.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import yaml

from c2c_sync.demo.ledger import Reconciliation
from functions.common.state import StateKeys, as_text
from vendor_mocks.base import MockClock, MockServer, Request, Response, VendorApp
from vendor_mocks.fleet import Fleet
from vendor_mocks.fusionsolar import FusionSolarMock
from vendor_mocks.solaredge import SolarEdgeMock

#: `--vendor` choices; the first is the default.
VENDORS = ("simulator", "fusionsolar", "solaredge")
#: The shipped definition each mock is the vendor of.
DEFINITIONS = {"fusionsolar": "huawei_fusionsolar", "solaredge": "solaredge"}
#: Stations a vendor demo serves when `--stations` is not given. SolarEdge reads one site per call,
#: three at a time (its documented concurrency), so it gets fewer than a batched API.
DEFAULT_STATIONS = {"simulator": 500, "fusionsolar": 500, "solaredge": 100}
#: The definition's durations that are vendor time (scaled with the mock), by key.
SCALED_KEYS = ("lookback_s", "settle_s", "min_login_interval_s", "retry_after_s", "ttl_s")
#: A budget period in the definition is this much longer than the mock's: the mock (this process's
#: monotonic clock) and the worker (its wall clock) may disagree by a little.
BUDGET_MARGIN = 1.1
#: Readings that turned reportable within this of an endpoint's final read may come next cycle.
SKEW_S = 0.5
#: The vendor periods one demo interval stands for.
FUSIONSOLAR_PERIOD_S = 300
SOLAREDGE_QUARTER_S = 900


def scaled(seconds: float, scale: float) -> int:
    """A vendor duration on the mock's clock, rounded as the mocks round theirs (at least 1 s)."""
    return max(1, round(seconds * scale))


def time_scale(vendor: str, interval_s: float) -> float:
    """FusionSolar: a 5-minute budget period a third shorter than the interval (so the definition's
    longer period still fits one cycle); SolarEdge: one quarter-hour per interval."""
    if vendor == "fusionsolar":
        return interval_s / FUSIONSOLAR_PERIOD_S / 1.5
    return interval_s / SOLAREDGE_QUARTER_S


def scale_definition(raw: dict[str, Any], scale: float, stations: int) -> dict[str, Any]:
    """The vendor definition with its vendor-time durations on the mock's clock, and each batched
    budget raised to Roundup(stations / batch size) calls (what the vendors allow per period)."""
    out: dict[str, Any] = json.loads(json.dumps(raw))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SCALED_KEYS and isinstance(value, int | float):
                    node[key] = scaled(value, scale)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(out)
    endpoints = out["readings"] if isinstance(out["readings"], list) else [out["readings"]]
    for endpoint in endpoints:
        if snapshot := endpoint.get("snapshot"):
            snapshot["resolution_s"] = scaled(snapshot.get("resolution_s", 300), scale)
        if budget := endpoint.get("budget"):
            budget["period_s"] = scaled(budget["period_s"], scale) * BUDGET_MARGIN
            if batch := endpoint.get("batch"):
                budget["calls"] = max(budget["calls"], math.ceil(stations / batch["size"]))
    return out


def endpoint_names(definition: dict[str, Any]) -> list[str]:
    readings = definition["readings"]
    return [ep["name"] for ep in (readings if isinstance(readings, list) else [readings])]


@dataclass(frozen=True)
class VendorUsage:
    """What the vendor side counted: calls answered, refused (by reason) and the evidence's source."""

    requests: int
    refusals: dict[str, int]
    detail: str
    calls: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0


class ServedLog:
    """Wraps a FusionSolar mock (a `VendorApp` itself): remembers (plant code, floored answer time)
    of every real-time plant answer the mock gave. What the vendor handed over is the ground truth of
    a snapshot API."""

    def __init__(self, app: FusionSolarMock, resolution_s: int) -> None:
        self.app = app
        self.clock = app.clock
        self.stats = app.stats
        self._resolution_s = resolution_s
        self._lock = threading.Lock()
        self._served: set[tuple[str, datetime]] = set()

    def answered(self) -> set[tuple[str, datetime]]:
        with self._lock:
            return set(self._served)

    def handle(self, request: Request) -> Response:
        response = self.app.handle(request)
        if request.path.endswith("/getStationRealKpi") and response.status == 200:
            body = json.loads(response.body)
            if body.get("success"):
                at = body["params"]["currentTime"] / 1000 // self._resolution_s * self._resolution_s
                ts = datetime.fromtimestamp(at, UTC)
                with self._lock:
                    self._served.update((item["stationCode"], ts) for item in body["data"])
        return response

    def set_report_lag(self, site: str, lag_s: float) -> None:
        self.app.set_report_lag(site, lag_s)


@dataclass
class MockVendor:
    """A vendor mock served from this process, and what the worker needs to read it."""

    vendor: str
    stations: int
    interval_s: float
    workdir: Path
    #: SolarEdge only: a wall-clock hold of every answered call (the API's latency; the bench sets it)
    latency_s: float = 0.0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    server: MockServer | None = field(default=None, init=False)
    served: ServedLog | None = field(default=None, init=False)
    definition: dict[str, Any] = field(default_factory=dict, init=False)

    @property
    def scale(self) -> float:
        return time_scale(self.vendor, self.interval_s)

    @property
    def name(self) -> str:
        return DEFINITIONS[self.vendor]

    @property
    def definition_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def url(self) -> str:
        assert self.server is not None, "the mock is not started"
        return self.server.url

    def start(self) -> MockVendor:
        from functions.sync_worker.source.http_json import VENDORS_DIR

        raw = yaml.safe_load((VENDORS_DIR / f"{self.name}.yaml").read_text())
        self.definition = scale_definition(raw, self.scale, self.stations)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.definition_path.write_text(yaml.safe_dump(self.definition, sort_keys=False))
        # The mock's clock on the worker's (the wall clock) to the microsecond: a mock that lags would
        # not yet report what the worker's read already counts as reported.
        self.started = datetime.now(UTC)
        clock = MockClock(self.started, speed=1)
        app: FusionSolarMock | SolarEdgeMock
        if self.vendor == "solaredge":
            app = SolarEdgeMock(Fleet(self.stations), clock, time_scale=self.scale, latency_s=self.latency_s)
        else:
            app = FusionSolarMock(Fleet(self.stations), clock, time_scale=self.scale)
        served: VendorApp = app
        if isinstance(app, FusionSolarMock):
            self.served = ServedLog(app, self._snapshot_endpoint()["snapshot"]["resolution_s"])
            served = self.served
        self.server = MockServer(served).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _snapshot_endpoint(self) -> dict[str, Any]:
        """The real-time plant endpoint (the one a served answer is recorded for)."""
        return next(ep for ep in _endpoints(self.definition) if ep.get("path", "").endswith("/getStationRealKpi"))

    @property
    def mock(self) -> FusionSolarMock | SolarEdgeMock:
        assert self.server is not None, "the mock is not started"
        app = self.served.app if self.served is not None else self.server.app
        assert isinstance(app, FusionSolarMock | SolarEdgeMock)
        return app

    def periods(self) -> str:
        """The vendor period one interval stands for, on the mock's clock."""
        if self.vendor == "fusionsolar":
            return f"5 minutes last {scaled(FUSIONSOLAR_PERIOD_S, self.scale)} s"
        return f"a quarter-hour lasts {scaled(SOLAREDGE_QUARTER_S, self.scale)} s"

    def describe(self) -> str:
        return (
            f"{self.vendor} mock (vendor_mocks/, from the vendor's docs) on {self.url}: {self.stations} sites, "
            f"its limits enforced; {self.periods()}, {self.name}.yaml scaled alike"
        )

    def station_ids(self) -> list[str]:
        """Every station the mock serves, as the definition names them."""
        app = self.mock
        return app.station_codes() if isinstance(app, FusionSolarMock) else [str(i) for i in app.site_ids()]

    def secrets(self) -> dict[str, str]:
        """The definition's secrets by name (as the worker reads them from C2C_SOURCE_<NAME>)."""
        app = self.mock
        if isinstance(app, FusionSolarMock):
            return {"user": app.user_name, "system_code": app.system_code}
        assert isinstance(app, SolarEdgeMock)
        return {"api_key": app.api_key}

    def worker_environment(self) -> dict[str, str]:
        env = {"C2C_SOURCE_CONFIG": str(self.definition_path), "C2C_SOURCE_URL": self.url}
        env.update({f"C2C_SOURCE_{name.upper()}": value for name, value in self.secrets().items()})
        return env

    def baseline(self) -> datetime:
        """Where every cursor starts: four vendor periods before the start, on the period grid."""
        step = self._step_s()
        return datetime.fromtimestamp(self.started.timestamp() // step * step - 4 * step, UTC)

    def _step_s(self) -> int:
        period = FUSIONSOLAR_PERIOD_S if self.vendor == "fusionsolar" else SOLAREDGE_QUARTER_S
        return scaled(period, self.scale)

    def seed_cursors(self, state: redis.Redis, keys: StateKeys, stations: list[str]) -> str:
        from functions.sync_worker.store import format_cursor

        value = format_cursor(self.baseline())
        names = endpoint_names(self.definition)
        for name in names:
            state.hset(keys.cursors_of(name), mapping=dict.fromkeys(stations, value))
        return f"{len(stations)} station cursors of endpoint(s) {', '.join(names)} set to {value}"

    def usage(self) -> VendorUsage:
        snap = self.mock.stats.snapshot()
        calls = ", ".join(f"{k} ×{v}" for k, v in sorted(snap["calls"].items()))
        return VendorUsage(
            int(sum(snap["calls"].values())),
            {str(k): int(v) for k, v in snap["refusals"].items()},
            f"mock's count: {calls}" + (f"; most in flight {snap['max_in_flight']}" if snap["max_in_flight"] else ""),
            {str(k): int(v) for k, v in snap["calls"].items()},
            int(snap["max_in_flight"]),
        )

    def reconcile(self, state: redis.Redis, keys: StateKeys, received: set[str]) -> Reconciliation:
        expected = set(self.expected_ids(_final_cursors(state, keys, endpoint_names(self.definition))))
        lost = sorted(expected - received)
        return Reconciliation(
            expected=len(expected), received_distinct=len(received), lost=lost, beyond_cursor=len(received - expected)
        )

    def expected_ids(self, cursors: dict[str, dict[str, datetime]]) -> Iterator[str]:
        from functions.sync_worker.source.base import make_message_id

        app = self.mock
        if self.served is not None:
            name = self._snapshot_endpoint()["name"]
            for code, ts in self.served.answered():
                cursor = cursors.get(name, {}).get(code)
                if cursor is not None and ts <= cursor:
                    yield make_message_id(code, name, ts)
            return
        assert isinstance(app, SolarEdgeMock)
        since = self.baseline() + timedelta(seconds=1)
        quarter, step = scaled(SOLAREDGE_QUARTER_S, self.scale), scaled(300, self.scale)
        for sid in app.site_ids():
            site = str(sid)
            power = cursors.get("power", {}).get(site)
            if power is not None:
                for t in app.reported_power(sid, since, power + timedelta(seconds=1)):
                    if t + timedelta(seconds=quarter + SKEW_S) <= power:
                        yield make_message_id(site, "power", t)
            storage = cursors.get("storage", {}).get(site)
            if storage is not None:
                for serial, t in app.reported_storage(sid, since, storage + timedelta(seconds=1)):
                    if t + timedelta(seconds=step + SKEW_S) <= storage:
                        yield make_message_id(site, f"storage/{serial}", t)


def _endpoints(definition: dict[str, Any]) -> list[dict[str, Any]]:
    readings = definition["readings"]
    return readings if isinstance(readings, list) else [readings]


def _final_cursors(state: redis.Redis, keys: StateKeys, endpoints: list[str]) -> dict[str, dict[str, datetime]]:
    from functions.sync_worker.store import parse_cursor

    return {
        name: {as_text(s): parse_cursor(as_text(v)) for s, v in state.hgetall(keys.cursors_of(name)).items()}
        for name in endpoints
    }
