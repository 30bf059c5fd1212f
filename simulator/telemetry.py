"""Deterministic telemetry of simulated energy-storage stations.

Every value is a closed-form function of (seed, station, timestamp), so any reading can be produced
on its own, in any order, on any thread, and two fetches of one reading always agree. The shapes
follow a real behind-the-meter battery: it charges from PV around noon and discharges into the
evening load, so state of charge is the integral of battery power (consistent by construction);
the energy counters are integrals of that power since commissioning (monotonic); state of health
fades linearly with age; temperatures follow the ambient day and the load.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

DAY_S = 86_400.0
TWO_PI = 2.0 * math.pi
OMEGA_S = TWO_PI / DAY_S  # rad per second of the daily cycle
OMEGA_H = TWO_PI / 24.0  # rad per hour: integrals of kW over phase, in kWh
_MASK64 = (1 << 64) - 1

STATUS_IDLE, STATUS_CHARGING, STATUS_DISCHARGING, STATUS_WARNING = 0, 1, 2, 3
STATUS_TEXT = {
    STATUS_IDLE: "idle",
    STATUS_CHARGING: "charging",
    STATUS_DISCHARGING: "discharging",
    STATUS_WARNING: "warning",
}


def station_id(index: int) -> str:
    """Site ids are `site-00001` .. `site-NNNNN` (1-based), stable across runs."""
    return f"site-{index:05d}"


@dataclass(frozen=True, slots=True)
class StationProfile:
    """The constant parameters of one station, drawn once from (seed, station id)."""

    station_id: str
    key: int  # 64-bit noise key
    name: str
    latitude: float
    longitude: float
    tz_offset_s: float
    capacity_kwh: float
    max_power_kw: float  # amplitude of the daily charge/discharge sine
    soc_min: float
    soc_swing: float  # percent points between the night low and the evening high
    pack_voltage_v: float
    internal_resistance_ohm: float
    pv_peak_kw: float
    base_load_kw: float
    mean_ambient_c: float
    commissioned_at: float  # epoch seconds
    soh_start: float
    soh_fade_per_year: float
    round_trip_eff: float
    phase_s: float

    def theta(self, t: float) -> float:
        """Phase of the daily battery cycle: 0 at the start of charging (~06:00 local)."""
        return OMEGA_S * (t + self.tz_offset_s - 6 * 3600.0 + self.phase_s)


_SITE_NAMES = ("Harbour", "Mill", "Ridge", "Depot", "Farm", "Campus", "Quarry", "Works", "Park", "Yard")
_TOWNS = (
    "Aachen",
    "Bilbao",
    "Cork",
    "Delft",
    "Esbjerg",
    "Faro",
    "Graz",
    "Hamar",
    "Izmir",
    "Jena",
    "Kassel",
    "Lille",
    "Malmo",
    "Nantes",
    "Oulu",
    "Porto",
    "Reims",
    "Split",
    "Turku",
    "Uppsala",
)


@lru_cache(maxsize=200_000)
def profile(seed: int, sid: str) -> StationProfile:
    digest = hashlib.blake2b(f"{seed}:{sid}".encode(), digest_size=16).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    capacity = rng.choice((50.0, 100.0, 200.0, 250.0, 500.0, 1000.0))
    swing = rng.uniform(60.0, 78.0)
    # Amplitude of P = Pm sin(theta) whose positive half-cycle moves `swing` % of the capacity.
    pm = (swing / 100.0) * capacity * OMEGA_H / 2.0
    lon = rng.uniform(-9.0, 25.0)
    commissioned = datetime(2019, 1, 1, tzinfo=UTC).timestamp() + rng.uniform(0, 4 * 365 * DAY_S)
    return StationProfile(
        station_id=sid,
        key=int.from_bytes(digest[:8], "big"),
        name=f"{rng.choice(_TOWNS)} {rng.choice(_SITE_NAMES)} {sid[-5:]}",
        latitude=round(rng.uniform(37.0, 64.0), 4),
        longitude=round(lon, 4),
        tz_offset_s=round(lon / 15.0) * 3600.0,
        capacity_kwh=capacity,
        max_power_kw=pm,
        soc_min=rng.uniform(8.0, 15.0),
        soc_swing=swing,
        pack_voltage_v=rng.choice((512.0, 614.4, 768.0, 819.2)),
        internal_resistance_ohm=rng.uniform(0.03, 0.08),
        pv_peak_kw=capacity * rng.uniform(0.3, 0.8),
        base_load_kw=capacity * rng.uniform(0.03, 0.12),
        mean_ambient_c=rng.uniform(8.0, 20.0),
        commissioned_at=commissioned,
        soh_start=rng.uniform(99.0, 100.0),
        soh_fade_per_year=rng.uniform(1.5, 3.0),
        round_trip_eff=rng.uniform(0.88, 0.94),
        phase_s=rng.uniform(-3600.0, 3600.0),
    )


def _noise(key: int, t: int, channel: int) -> float:
    """splitmix64 of (station key, timestamp, channel) mapped to [-1, 1): cheap and stateless."""
    z = (key ^ (t * 0x9E3779B97F4A7C15) ^ (channel * 0xBF58476D1CE4E5B9)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z / 9.223372036854775808e18) - 1.0


def _charged_phase(theta: float) -> float:
    """Integral over [0, theta] of max(sin, 0): the charging half-cycles."""
    cycles, rest = divmod(theta, TWO_PI)
    return 2.0 * cycles + (1.0 - math.cos(rest) if rest < math.pi else 2.0)


def _discharged_phase(theta: float) -> float:
    """Integral over [0, theta] of max(-sin, 0): the discharging half-cycles."""
    cycles, rest = divmod(theta, TWO_PI)
    return 2.0 * cycles + (0.0 if rest < math.pi else 1.0 + math.cos(rest))


@lru_cache(maxsize=200_000)
def _phase_at_commissioning(p: StationProfile) -> tuple[float, float]:
    theta_c = p.theta(p.commissioned_at)
    return _charged_phase(theta_c), _discharged_phase(theta_c)


def reading(p: StationProfile, t: int) -> dict:
    """The reading of station `p` at epoch second `t`, in the vendor's JSON shape."""
    theta = p.theta(t)
    sin_t = math.sin(theta)
    pm = p.max_power_kw
    power = pm * sin_t + 0.02 * pm * _noise(p.key, t, 1)  # + charging, - discharging
    soc = p.soc_min + p.soc_swing * (1.0 - math.cos(theta)) / 2.0

    local_s = (t + p.tz_offset_s) % DAY_S
    local_h = local_s / 3600.0
    day_of_year = (t / DAY_S) % 365.25
    ambient = (
        p.mean_ambient_c
        + 8.0 * math.sin(TWO_PI * (day_of_year - 110.0) / 365.25)
        + 6.0 * math.sin(TWO_PI * (local_h - 9.0) / 24.0)
    )
    load_frac = abs(power) / pm
    cell_min = 22.0 + 0.25 * (ambient - 22.0) + 4.0 * load_frac + 0.3 * _noise(p.key, t, 2)
    cell_max = cell_min + 1.5 + 2.0 * load_frac + 0.2 * abs(_noise(p.key, t, 3))
    inverter_temp = 20.0 + 0.5 * ambient + 18.0 * load_frac + 0.5 * _noise(p.key, t, 4)

    v_oc = p.pack_voltage_v * (0.92 + 0.16 * soc / 100.0)
    current = power * 1000.0 / v_oc
    voltage = v_oc + current * p.internal_resistance_ohm

    # PV follows the sun (06:00-18:00 local) under clouds that change hourly, not per reading.
    sun = math.sin(math.pi * (local_h - 6.0) / 12.0) if 6.0 < local_h < 18.0 else 0.0
    clouds = 0.8 + 0.2 * _noise(p.key, int(t // 3600), 5)
    pv = p.pv_peak_kw * sun * clouds
    load = (
        p.base_load_kw * (1.0 + 0.8 * math.exp(-(((local_h - 19.0) / 2.0) ** 2))) * (1.0 + 0.05 * _noise(p.key, t, 6))
    )
    grid = load + power - pv  # + import, - export

    charged_at_start, discharged_at_start = _phase_at_commissioning(p)
    scale = pm / OMEGA_H  # kWh per unit of integrated phase
    charged = 1000.0 + scale * (_charged_phase(theta) - charged_at_start)
    discharged = 800.0 + p.round_trip_eff * scale * (_discharged_phase(theta) - discharged_at_start)
    years = max(0.0, (t - p.commissioned_at) / (365.25 * DAY_S))
    soh = max(60.0, p.soh_start - p.soh_fade_per_year * years)

    if cell_max > 38.0:
        status = STATUS_WARNING
    elif power > 0.02 * pm:
        status = STATUS_CHARGING
    elif power < -0.02 * pm:
        status = STATUS_DISCHARGING
    else:
        status = STATUS_IDLE
    return {
        "timestamp": format_ts(t),
        "battery": {
            "soc_pct": round(soc, 1),
            "soh_pct": round(soh, 2),
            "power_kw": round(power, 3),
            "voltage_v": round(voltage, 1),
            "current_a": round(current, 2),
            "cell_temp_min_c": round(cell_min, 1),
            "cell_temp_max_c": round(cell_max, 1),
        },
        "inverter": {"temp_c": round(inverter_temp, 1), "status_code": status, "status": STATUS_TEXT[status]},
        "meter": {
            "grid_power_kw": round(grid, 3),
            "pv_power_kw": round(pv, 3),
            "load_power_kw": round(load, 3),
            "energy_charged_kwh": round(charged, 3),
            "energy_discharged_kwh": round(discharged, 3),
        },
    }


def format_ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def site(p: StationProfile) -> dict:
    """The site-list entry of one station."""
    return {
        "id": p.station_id,
        "name": p.name,
        "capacity_kwh": p.capacity_kwh,
        "max_power_kw": round(p.max_power_kw, 2),
        "location": {"lat": p.latitude, "lon": p.longitude},
        "utc_offset_s": int(p.tz_offset_s),
        "commissioned_at": format_ts(p.commissioned_at),
    }
