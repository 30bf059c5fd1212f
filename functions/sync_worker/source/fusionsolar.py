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

- Hourly history (`getKpiStationHour`) names a *local day* of each plant by any instant in it
  (`collectTime`), and the plant list carries no time zone: which day a plant needs next follows
  from the previous answer (its last hour). And its budget (Roundup(plants/100)+24 calls a day)
  allows no hourly read of more than 100 plants: it is read only when the real-time snapshots
  missed a 5-minute step (an outage, a deferred or late cycle) and on a worker's start, for the
  hours since its cursor (at most a day back), each hour once it is reported.

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
from datetime import datetime, timedelta
from typing import Any

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.observability import logger
from functions.sync_worker.source.auth import SecretSource
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    TICK,
    BatchAnswer,
    Budget,
    EndpointPlan,
    Reading,
    ReadingBatch,
    Station,
)
from functions.sync_worker.source.config import ReadingsEndpoint, required_secrets
from functions.sync_worker.source.http_json import HttpJsonSource, VendorConfigError, load_vendor_config
from functions.sync_worker.source.mapping import MappingError, NotReported
from functions.sync_worker.source.pagination import PageRequest

#: Codes per call the Northbound API takes (`stationCodes`, `devIds`).
MAX_CODES = 100
DAY_S = 86_400.0
#: Calls a day every list interface may make on top of one per 100 plants.
LIST_BUDGET_EXTRA = 24
#: Re-read the lists a little less often than their budget allows (the vendor's window slides).
LIST_MARGIN = 1.1


#: The hourly history endpoint's name (its series and cursor) and how far back it reads.
HOUR = "hour"
HISTORY_S = 86_400.0
HOUR_S = 3600.0
#: The hourly data items (the plant's, kWh unless named otherwise).
HOUR_VALUES = {
    "pv_energy_kwh": "dataItemMap.inverter_power",
    "ongrid_energy_kwh": "dataItemMap.ongrid_power",
    "revenue": "dataItemMap.power_profit",
    "irradiation_kwh_m2": "dataItemMap.radiation_intensity",
    "theoretical_energy_kwh": "dataItemMap.theory_power",
}


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


def hour_endpoint(plant: ReadingsEndpoint) -> ReadingsEndpoint:
    """The engine definition of the hourly history (its mapping; the requests are the adapter's)."""
    return ReadingsEndpoint.model_validate(
        {
            "name": HOUR,
            "method": "POST",
            "path": "/thirdData/getKpiStationHour",
            "body": {"json": {"stationCodes": "{station_ids}", "collectTime": "{since}"}},
            "time_format": "epoch_ms",
            "batch": {"size": MAX_CODES, "id": "stationCode"},
            "timestamp": {"path": "collectTime", "format": "epoch_ms"},
            "items": "data",
            "values": {name: {"path": path, "type": "float"} for name, path in HOUR_VALUES.items()},
            "lookback_s": HOUR_S,
            "answered_until": plant.answered_until,
        }
    )


@dataclass(frozen=True)
class _NextDays:
    """The plants whose local day ended before the window did, each with the end of that day (an
    instant of its next day, in ms). A call asks for those whose day ended first (one local day
    for all of them); the others wait for a later call, so no plant reads a day twice."""

    days: tuple[tuple[str, int], ...]

    def first(self) -> tuple[int, list[str]]:
        collect = min(ms for _, ms in self.days)
        return collect, [p for p, ms in self.days if ms == collect]

    def rest(self, read: list[str]) -> dict[str, int]:
        return {p: ms for p, ms in self.days if p not in read}


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
        self._resolution_s = float(plant.snapshot.resolution_s)
        super().__init__(
            config.model_copy(update={"readings": [*config.readings, *devices, hour_endpoint(plant)]}),
            base_url=base_url,
            secrets=secrets,
            pool_size=pool_size,
        )
        self._lock = threading.Lock()
        self._stations: list[Station] = []
        self._devices: dict[int, list[Device]] = {}  # by devTypeId, plants in list order
        self._listed_at: float | None = None
        #: The vendor's clock at its last answer, each plant's last 5-minute step read, and when
        #: (vendor time) each plant's hourly history is due: every plant on start (the worker may
        #: have been down), then after a missed step once its hour is over.
        self._vendor_now = 0.0
        self._last_step: dict[str, float] = {}
        self._hour_due: dict[str, float] = {}

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
            for station in stations:
                if station.station_id not in self._last_step:
                    self._hour_due.setdefault(station.station_id, 0.0)
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
            # Due by the vendor's clock, so not before a real-time answer has told it.
            hour_due = self._vendor_now > 0 and any(at <= self._vendor_now for at in self._hour_due.values())
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
            elif plan.name == HOUR:
                if not (plants and hour_due):
                    continue  # nothing missed: no call spent
                blocks = math.ceil(plants / MAX_CODES)
                plan = replace(plan, budgets=(Budget(blocks + LIST_BUDGET_EXTRA, self._day_s),))
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
        if endpoint == HOUR:
            return self._fetch_hours(stations, since, until, resume)
        kind = self._kinds.get(endpoint)
        if kind is None:
            answer = super().fetch_batch(stations, since, until, limit, endpoint=endpoint, resume=resume)
            if endpoint == self._plant:
                self._note_steps(answer)
            return answer
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

    # -- hourly history -----------------------------------------------------------------------------
    def _note_steps(self, answer: BatchAnswer) -> None:
        """Each plant's real-time step: one that skips a step makes its hour's history due once
        that hour is over (the hour read then has every value the snapshots missed)."""
        with self._lock:
            for plant, batch in answer.batches.items():
                if not batch:
                    continue
                step = max(r.ts for r in batch).timestamp()
                self._vendor_now = max(self._vendor_now, step)
                last = self._last_step.get(plant)
                if last is not None and step - last > self._resolution_s:
                    missed_hour_end = ((last + self._resolution_s) // HOUR_S + 1) * HOUR_S
                    self._hour_due[plant] = min(self._hour_due.get(plant, math.inf), missed_hour_end)
                self._last_step[plant] = max(step, last or step)

    def _fetch_hours(
        self, stations: list[Station], since: datetime, until: datetime, resume: object | None
    ) -> BatchAnswer:
        """One `getKpiStationHour` call: the due plants of the batch, the local day of each that
        holds `collectTime`. A plant whose day ended before the window did goes on with its next
        day (resume); hours still null are pending and due again at their hour's end."""
        _, mapper, _ = self._endpoints[HOUR]
        with self._lock:
            now = self._vendor_now
            due = [s.station_id for s in stations if self._hour_due.get(s.station_id, math.inf) <= now]
        waiting: dict[str, int] = {}
        if isinstance(resume, _NextDays):
            collect_ms, plants = resume.first()
            waiting = resume.rest(plants)
        else:
            start = max(since.timestamp(), now - HISTORY_S)
            collect_ms, plants = int(start * 1000), due
        if not plants or not now:
            return BatchAnswer({}, None)
        req = PageRequest(
            self.base_url + "/thirdData/getKpiStationHour",
            {},
            method="POST",
            json_body={"stationCodes": ",".join(plants), "collectTime": collect_ms},
        )
        body, _ = self._call(req)
        items = mapper.items(body)
        if not isinstance(items, list):
            raise PermanentError(f"getKpiStationHour: `data` is not a list: {str(body)[:200]}")
        answered = mapper.answered_until(body) or until
        end = min(until, answered)
        collected = {p: ReadingBatch() for p in plants}
        last_hour: dict[str, datetime] = {}
        held: dict[str, datetime] = {}  # each plant's earliest hour not reported yet
        for item in items:
            owner = mapper.station_of(item)
            if owner not in collected:
                continue
            batch = collected[owner]
            try:
                ts = mapper.timestamp(item)
            except MappingError as exc:
                batch.skipped += 1
                batch.skip_reasons.append(str(exc))
                continue
            last_hour[owner] = max(ts, last_hour.get(owner, ts))
            if not since < ts <= end:
                continue
            try:
                batch.append(mapper.reading(owner, item, ts))
            except NotReported:
                held[owner] = min(ts, held.get(owner, ts))
            except MappingError as exc:
                batch.skipped += 1
                batch.skip_reasons.append(f"{ts.isoformat()}: {exc}")
        following: dict[str, datetime] = {}
        for plant, batch in collected.items():
            # The day's hours are listed up to the vendor's now: a last hour that ended before it
            # is the end of that local day, and the next day may hold more of the window.
            over = last_hour[plant] + timedelta(seconds=HOUR_S) if plant in last_hour else None
            batch.complete_through = end
            if plant in held:
                # The cursor stops before the hour not reported yet: the next pass starts there
                # (and publishes only what changed of the hours after it).
                batch.complete_through = held[plant] - TICK
            elif over is not None and over <= end:
                following[plant] = over
                batch.complete_through = over - TICK
        with self._lock:
            for plant in collected:
                if plant in held:
                    # Again when that hour is over; an hour over but not reported yet (a late
                    # site) is asked again an hour later, not every cycle.
                    held_over = held[plant].timestamp() + HOUR_S
                    self._hour_due[plant] = held_over if held_over > now else now + HOUR_S
                elif plant not in following:
                    self._hour_due.pop(plant, None)
        waiting.update({p: int(over.timestamp() * 1000) for p, over in following.items()})
        return BatchAnswer(dict(collected), _NextDays(tuple(waiting.items())) if waiting else None)
