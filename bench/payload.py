"""The worker's message for one reading, for the benches' other contenders to publish the same bytes.

`VALUES` is the worker's value mapping for the simulator (functions/sync_worker/source/vendors/
simulator.yaml: payload name -> dotted path in the vendor's reading); the payload is the worker's
contract (functions/sync_worker/transform.py): schema, message_id, station_id, ts, values.
"""

from __future__ import annotations

import json
from typing import Any

VALUES = {
    "soc_pct": "battery.soc_pct",
    "soh_pct": "battery.soh_pct",
    "battery_power_kw": "battery.power_kw",
    "battery_voltage_v": "battery.voltage_v",
    "battery_current_a": "battery.current_a",
    "cell_temp_min_c": "battery.cell_temp_min_c",
    "cell_temp_max_c": "battery.cell_temp_max_c",
    "inverter_temp_c": "inverter.temp_c",
    "status_code": "inverter.status_code",
    "status": "inverter.status",
    "grid_power_kw": "meter.grid_power_kw",
    "pv_power_kw": "meter.pv_power_kw",
    "load_power_kw": "meter.load_power_kw",
    "energy_charged_kwh": "meter.energy_charged_kwh",
    "energy_discharged_kwh": "meter.energy_discharged_kwh",
}
_PATHS = {name: path.split(".") for name, path in VALUES.items()}


def message(station_id: str, reading: dict[str, Any]) -> bytes:
    ts = reading["timestamp"].replace("Z", ".000000Z")
    message_id = f"{station_id}:{ts}"
    values = {name: reading[group][key] for name, (group, key) in _PATHS.items()}
    body = {"schema": 1, "message_id": message_id, "station_id": station_id, "ts": ts, "values": values}
    return json.dumps(body, separators=(",", ":")).encode()
