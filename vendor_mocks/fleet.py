"""The fleet both mocks serve: sites in several time zones, some with two batteries, values from the clock.

Deterministic per seed: the same (seed, site, time) always gives the same value, so a test computes
the exact value it expects a worker to deliver. PV power follows the sun in the site's local time
(so a time-zone error shows up as power at night), batteries charge at midday and discharge in the
evening, a grid meter sees the difference.

Late reports: a value for the interval [t, t + resolution) is known to the vendor once the interval
is over plus the site's report lag (`Fleet.report_lag_s`, settable per site by the test). Before that
the vendor answers `null` (SolarEdge quarter-hours, FusionSolar hourly history) or still shows the
previous value (real-time KPIs).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

#: Three zones with DST (two hemispheres, so their changes fall in different months) and one without.
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo")


def noise(*parts: object) -> float:
    """A deterministic value in [0, 1) for the given parts."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Site:
    index: int  # 1-based
    zone: ZoneInfo
    peak_w: float
    batteries: int
    battery_capacity_wh: float = 10_000.0

    @property
    def zone_name(self) -> str:
        return self.zone.key

    def local_hour(self, t: float) -> float:
        local = datetime.fromtimestamp(t, self.zone)
        return local.hour + local.minute / 60 + local.second / 3600


@dataclass
class Fleet:
    """`count` sites; every third site has two batteries, every third but one has one, the rest none."""

    count: int
    seed: int = 1
    default_lag_s: float = 0.0
    sites: list[Site] = field(init=False)
    _lags: dict[int, float] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sites = [
            Site(
                index=i,
                zone=ZoneInfo(ZONES[(i - 1) % len(ZONES)]),
                peak_w=round(3000 + 7000 * noise(self.seed, "peak", i), -2),
                batteries=(2, 1, 0)[i % 3],
            )
            for i in range(1, self.count + 1)
        ]

    def site(self, index: int) -> Site:
        if not 1 <= index <= self.count:
            raise KeyError(index)
        return self.sites[index - 1]

    # --- late reports ---------------------------------------------------------------------------
    def report_lag_s(self, site: Site) -> float:
        with self._lock:
            return self._lags.get(site.index, self.default_lag_s)

    def set_report_lag(self, index: int, lag_s: float) -> None:
        with self._lock:
            self._lags[index] = lag_s

    def reported(self, site: Site, interval_start: float, resolution_s: float, now: float) -> bool:
        """Whether the vendor knows the value of [interval_start, interval_start + resolution_s) at `now`."""
        return now >= interval_start + resolution_s + self.report_lag_s(site)

    def last_reported_start(self, site: Site, resolution_s: float, now: float) -> float:
        """Start of the newest interval the vendor knows at `now`."""
        return math.floor((now - self.report_lag_s(site)) / resolution_s) * resolution_s - resolution_s

    # --- the model (each value is the interval's mean, taken at its midpoint) ---------------------
    def pv_w(self, site: Site, t: float) -> float:
        hour = site.local_hour(t)
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12)) if 6 < hour < 18 else 0.0
        clouds = 0.75 + 0.25 * noise(self.seed, "pv", site.index, int(t // 300))
        return round(site.peak_w * sun * clouds, 1)

    def load_w(self, site: Site, t: float) -> float:
        hour = site.local_hour(t)
        evening = 1.0 + 0.8 * math.exp(-(((hour - 19) / 2.5) ** 2))
        return round(400 * evening + 300 * noise(self.seed, "load", site.index, int(t // 300)), 1)

    def battery_w(self, site: Site, battery: int, t: float) -> float:
        """Positive charges, negative discharges: charge 10-15 h, discharge 17-22 h (local)."""
        hour = site.local_hour(t)
        scale = 1500 + 500 * noise(self.seed, "bat", site.index, battery)
        if 10 <= hour < 15:
            return round(scale * (0.8 + 0.2 * noise(self.seed, "batw", site.index, battery, int(t // 300))), 1)
        if 17 <= hour < 22:
            return round(-scale * (0.8 + 0.2 * noise(self.seed, "batw", site.index, battery, int(t // 300))), 1)
        return 0.0

    def battery_soc(self, site: Site, battery: int, t: float) -> float:
        """State of charge in percent, a smooth daily curve consistent with `battery_w`."""
        hour = site.local_hour(t)
        if hour < 10:
            soc = 20.0
        elif hour < 15:
            soc = 20 + 70 * (hour - 10) / 5
        elif hour < 17:
            soc = 90.0
        elif hour < 22:
            soc = 90 - 70 * (hour - 17) / 5
        else:
            soc = 20.0
        return round(soc + 2 * noise(self.seed, "soc", site.index, battery), 1)

    def grid_w(self, site: Site, t: float) -> float:
        """Import positive, export negative."""
        charge = sum(self.battery_w(site, b, t) for b in range(1, site.batteries + 1))
        return round(self.load_w(site, t) + charge - self.pv_w(site, t), 1)

    def pv_energy_wh(self, site: Site, start: float, end: float, step_s: float = 300) -> float:
        """PV energy over [start, end) from `step_s` means."""
        total, t = 0.0, start
        while t < end:
            total += self.pv_w(site, t + step_s / 2) * step_s / 3600
            t += step_s
        return round(total, 1)
