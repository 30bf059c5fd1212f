"""Huawei FusionSolar Northbound with device KPIs: the shipped huawei_fusionsolar.yaml plus the
real-time device data of string inverters, batteries and grid meters.

Configure it as `source.adapter: functions.sync_worker.source.fusionsolar:FusionSolarSource`
(settings: `config`, the vendor file, default `huawei_fusionsolar`; `day_s`, the length of the
vendor's budget day, 86,400 unless a test scales time).

What the YAML cannot express, and why this is an adapter:
- Device KPIs (`getDevRealKpi`) are asked for by *device* id, at most 100 per call and one
  `devTypeId` per call. The ids come from a second lookup (`getDevList`, per 100 plants), not from
  the station list, and the answer names the device (`devId`, `sn`), not its plant. The engine
  batches the stations it listed; it has no step whose answer feeds another endpoint's ids, nor a
  way back from an item's id to a different station. Here the device list is read with the plant
  list, device ids are packed 100 per call across plants, and each answer goes back to its plant.
- The lists' budget (`stations`, `getDevList`: Roundup(plants/100)+24 calls a day each) depends on
  the fleet's size: the lists are re-read only as often as that budget allows, and each real-time
  endpoint's budget (Roundup(plants/100), Roundup(devices of the type/100) per 5 minutes) is
  computed from the counts listed rather than written into the file.

Everything else (login with the xsrf-token header, failCode rules, the paged plant list, the
real-time plant KPIs, the mapping engine) is the YAML run by the generic engine this class extends.
The device endpoints are engine endpoint definitions too (`ReadingsEndpoint`, validated like the
file's), snapshots at the answer's `params.currentTime` floored like the plant endpoint's; each
device's `sn` (its ESN) is its series key, so a plant's two batteries are `battery/<esn>` apiece.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.observability import logger
from functions.sync_worker.source.auth import SecretSource
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    BatchAnswer,
    Budget,
    EndpointPlan,
    Reading,
    ReadingBatch,
    Station,
)
from functions.sync_worker.source.config import ReadingsEndpoint, required_secrets
from functions.sync_worker.source.http_json import HttpJsonSource, VendorConfigError, load_vendor_config
from functions.sync_worker.source.pagination import PageRequest

#: Codes per call the Northbound API takes (`stationCodes`, `devIds`).
MAX_CODES = 100
DAY_S = 86_400.0
#: Calls a day every list interface may make on top of one per 100 plants.
LIST_BUDGET_EXTRA = 24
#: Re-read the lists a little less often than their budget allows (the vendor's window slides).
LIST_MARGIN = 1.1


@dataclass(frozen=True)
class DeviceType:
    """One `devTypeId` read as its own endpoint: the data items kept, with units in their names."""

    endpoint: str
    type_id: int
    values: dict[str, str]


#: The device types of the Northbound "Device Type ID" list this adapter reads (string inverter 1,
#: residential battery 39, grid meter 47) and the real-time data items of each.
DEVICE_TYPES = (
    DeviceType(
        "inverter",
        1,
        {
            "active_power_kw": "dataItemMap.active_power",
            "day_energy_kwh": "dataItemMap.day_cap",
            "total_energy_kwh": "dataItemMap.total_cap",
            "temperature_c": "dataItemMap.temperature",
            "efficiency_pct": "dataItemMap.efficiency",
            "inverter_state": "dataItemMap.inverter_state",
        },
    ),
    DeviceType(
        "battery",
        39,
        {
            "power_w": "dataItemMap.ch_discharge_power",  # positive while charging
            "soc_pct": "dataItemMap.battery_soc",
            "soh_pct": "dataItemMap.battery_soh",
            "busbar_voltage_v": "dataItemMap.busbar_u",
            "battery_status": "dataItemMap.battery_status",
        },
    ),
    DeviceType(
        "meter",
        47,
        {
            "active_power_w": "dataItemMap.active_power",  # W since SmartPVMS 24.7.0
            "voltage_v": "dataItemMap.meter_u",
            "current_a": "dataItemMap.meter_i",
            "import_kwh": "dataItemMap.active_cap",
            "export_kwh": "dataItemMap.reverse_active_cap",
        },
    ),
)


@dataclass(frozen=True)
class Device:
    id: str
    plant: str
    type_id: int


@dataclass(frozen=True)
class _Chunk:
    """Which 100 device ids of a batched device request come next."""

    index: int


def device_endpoint(kind: DeviceType, plant: ReadingsEndpoint) -> ReadingsEndpoint:
    """The engine definition of one device type's real-time endpoint, timed like the plant one."""
    assert plant.snapshot is not None, "the plant endpoint is a snapshot"
    return ReadingsEndpoint.model_validate(
        {
            "name": kind.endpoint,
            "method": "POST",
            "path": "/thirdData/getDevRealKpi",
            "body": {"json": {"devIds": "{station_ids}", "devTypeId": kind.type_id}},
            "batch": {"size": MAX_CODES, "id": "devId"},
            "snapshot": plant.snapshot.model_dump(),
            "timestamp": {"format": "epoch_ms"},
            "items": "data",
            "series": "sn",
            "values": {name: {"path": path, "type": "float"} for name, path in kind.values.items()},
            "lookback_s": plant.lookback_s,
            "answered_until": plant.answered_until,
        }
    )


def list_refresh_s(plants: int, day_s: float) -> float:
    """How often the plant and device lists may be re-read: each read costs Roundup(plants/100)
    calls of a Roundup(plants/100)+24 a day budget."""
    blocks = max(1, math.ceil(plants / MAX_CODES))
    return day_s * blocks / (blocks + LIST_BUDGET_EXTRA) * LIST_MARGIN


class FusionSolarSource(HttpJsonSource):
    """`SourceAdapter` for FusionSolar: plant KPIs from the YAML, device KPIs by device type."""

    @classmethod
    def required_secrets(cls, settings: Mapping[str, Any]) -> list[str]:
        return required_secrets(load_vendor_config(str(settings.get("config", "huawei_fusionsolar"))).auth)

    def __init__(
        self, *, settings: Mapping[str, Any], secrets: SecretSource, base_url: str | None, pool_size: int
    ) -> None:
        unknown = sorted(set(settings) - {"config", "day_s"})
        if unknown:
            raise VendorConfigError(f"FusionSolar adapter settings: unknown {unknown}; known: config, day_s")
        config = load_vendor_config(str(settings.get("config", "huawei_fusionsolar")))
        plant = config.readings[0]
        if plant.snapshot is None or plant.batch is None:
            raise VendorConfigError(f"{config.name}: readings[0] must be the batched real-time plant snapshot")
        self._plant = plant.name
        self._day_s = float(settings.get("day_s", DAY_S))
        self._kinds = {k.endpoint: k for k in DEVICE_TYPES}
        devices = [device_endpoint(k, plant) for k in DEVICE_TYPES]
        super().__init__(
            config.model_copy(update={"readings": [*config.readings, *devices]}),
            base_url=base_url,
            secrets=secrets,
            pool_size=pool_size,
        )
        self._lock = threading.Lock()
        self._stations: list[Station] = []
        self._devices: dict[int, list[Device]] = {}  # by devTypeId, plants in list order
        self._listed_at: float | None = None

    # -- lists ------------------------------------------------------------------------------------
    def list_stations(self) -> list[Station]:
        """The plants, and with them each plant's devices (getDevList, 100 plants a call); both
        re-read no more often than their daily budget allows (the cached lists in between)."""
        with self._lock:
            fresh = self._listed_at is not None and time.monotonic() - self._listed_at < list_refresh_s(
                len(self._stations), self._day_s
            )
            if fresh:
                return list(self._stations)
            stations = super().list_stations()
            devices = self._list_devices(stations)
            self._stations, self._devices, self._listed_at = stations, devices, time.monotonic()
            return list(stations)

    def _list_devices(self, stations: list[Station]) -> dict[int, list[Device]]:
        known = {k.type_id for k in DEVICE_TYPES}
        found: dict[int, list[Device]] = {t: [] for t in known}
        codes = [s.station_id for s in stations]
        for i in range(0, len(codes), MAX_CODES):
            req = PageRequest(
                self.base_url + "/thirdData/getDevList",
                {},
                method="POST",
                json_body={"stationCodes": ",".join(codes[i : i + MAX_CODES])},
            )
            body, _ = self._call(req)
            items = body.get("data") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise PermanentError(f"getDevList: `data` is not a list: {str(body)[:200]}")
            for item in items:
                dev_id, plant, type_id = item.get("id"), item.get("stationCode"), item.get("devTypeId")
                if dev_id is None or not plant or not isinstance(type_id, int):
                    logger.warning("getDevList item skipped: no id, stationCode or devTypeId", extra={"item": item})
                    continue
                if type_id in known:
                    found[type_id].append(Device(str(dev_id), str(plant), type_id))
        return found

    # -- endpoints --------------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[EndpointPlan]:
        """The YAML's plant endpoint and one per device type; each budget the vendor's formula over
        the counts listed (the YAML's until the first list). A device endpoint takes every plant in
        one unit and packs their devices 100 per call, so its calls are Roundup(devices/100)."""
        with self._lock:
            plants, devices = len(self._stations), {t: len(ds) for t, ds in self._devices.items()}
        declared = super().endpoints
        plant = next(p for p in declared if p.name == self._plant)
        # The budgets the file counts per endpoint follow the counts; any other scope stays as written.
        per_endpoint = [b for b in plant.budgets if b.scope == "endpoint"]
        plans = []
        for plan in declared:
            if plan.name == self._plant and plants:
                calls = math.ceil(plants / MAX_CODES)
                plan = replace(
                    plan, budgets=tuple(replace(b, calls=calls) if b in per_endpoint else b for b in plan.budgets)
                )
            elif plan.name in self._kinds:
                calls = max(1, math.ceil(devices.get(self._kinds[plan.name].type_id, 0) / MAX_CODES))
                budgets = tuple(Budget(calls, b.period_s) for b in per_endpoint)
                plan = replace(plan, batch_size=max(2, plants), budgets=budgets)
            plans.append(plan)
        return plans

    # -- device readings ----------------------------------------------------------------------------
    def fetch_batch(
        self,
        stations: list[Station],
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        resume: object | None = None,
    ) -> BatchAnswer:
        kind = self._kinds.get(endpoint)
        if kind is None:
            return super().fetch_batch(stations, since, until, limit, endpoint=endpoint, resume=resume)
        wanted = {s.station_id for s in stations}
        with self._lock:
            devices = [d for d in self._devices.get(kind.type_id, []) if d.plant in wanted]
        index = resume.index if isinstance(resume, _Chunk) else 0
        chunk = devices[index * MAX_CODES : (index + 1) * MAX_CODES]
        if not chunk:
            return BatchAnswer({}, None)
        answer = super().fetch_batch(
            [Station(d.id) for d in chunk], since, until, limit, endpoint=endpoint, resume=None
        )
        # A plant whose devices of this type continue in the next chunk is complete only there.
        last_chunk_of = {d.plant: i // MAX_CODES for i, d in enumerate(devices)}
        shares: dict[str, ReadingBatch] = {}
        for device in chunk:
            got = answer.batches.get(device.id) or ReadingBatch()
            share = shares.setdefault(
                device.plant,
                ReadingBatch(complete_through=got.complete_through if last_chunk_of[device.plant] == index else None),
            )
            share.extend(Reading(device.plant, r.ts, r.values, r.series) for r in got)
            share.pending.extend(got.pending)
            share.skipped += got.skipped
            share.skip_reasons.extend(got.skip_reasons)
        more = (index + 1) * MAX_CODES < len(devices)
        return BatchAnswer(shares, _Chunk(index + 1) if more else None)
