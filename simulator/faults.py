"""Fault injection: random rates on every API request, and faults pinned to chosen stations.

Rates model a flaky vendor (5xx, hangs past the client's timeout, broken JSON, 429 with
Retry-After); pinned station faults let a test say "these stations fail, those succeed" and check
that the worker classifies each failure and finishes the rest. Everything can be changed at
runtime through POST /_faults, so one simulator serves a whole test.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    ERROR = "error"  # HTTP 500/503
    TIMEOUT = "timeout"  # hold the response past the client's read timeout
    MALFORMED = "malformed"  # 200 with a truncated JSON body
    THROTTLE = "throttle"  # 429 with Retry-After
    BAD_READING = "bad_reading"  # telemetry served, but some readings cannot be mapped
    NOT_FOUND = "not_found"  # 404: the site is gone
    FORBIDDEN = "forbidden"  # 403: the key may not read this site


#: Kinds a random rate can produce, in the order they are drawn.
RATE_KINDS = (FaultKind.ERROR, FaultKind.TIMEOUT, FaultKind.MALFORMED, FaultKind.THROTTLE)


@dataclass
class StationFault:
    kind: FaultKind
    remaining: int | None = None  # None = always; else fail this many more requests, then recover


@dataclass
class FaultSettings:
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_rate: float = 0.0
    throttle_rate: float = 0.0
    latency_ms: float = 0.0
    retry_after_s: int = 1
    timeout_s: float = 30.0
    stations: dict[str, StationFault] = field(default_factory=dict)
    #: The next `count` API requests (any station, any endpoint) fail with `kind`.
    burst_kind: FaultKind | None = None
    burst_remaining: int = 0


class FaultInjector:
    """Thread-safe: request threads draw faults while an admin request changes the settings."""

    def __init__(self, settings: FaultSettings, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.settings = settings
        self._rng = random.Random(seed ^ 0x5EED)

    def draw(self, station_id: str | None) -> FaultKind | None:
        """The fault (if any) this request suffers; pinned faults first, then a burst, then rates."""
        s = self.settings
        with self._lock:
            if station_id is not None and station_id in s.stations:
                fault = s.stations[station_id]
                if fault.remaining is None:
                    return fault.kind
                if fault.remaining > 0:
                    fault.remaining -= 1
                    return fault.kind
            if s.burst_remaining > 0 and s.burst_kind is not None:
                s.burst_remaining -= 1
                return s.burst_kind
            roll = self._rng.random()
        for kind, rate in zip(
            RATE_KINDS, (s.error_rate, s.timeout_rate, s.malformed_rate, s.throttle_rate), strict=True
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    def update(self, patch: dict) -> None:
        """Apply an admin patch: any FaultSettings field; `stations` merges (value null removes);
        `burst` = {"kind", "count"}; `clear: true` resets everything except latency first."""
        with self._lock:
            if patch.get("clear"):
                latency, retry_after, timeout = (
                    self.settings.latency_ms,
                    self.settings.retry_after_s,
                    self.settings.timeout_s,
                )
                self.settings = FaultSettings(latency_ms=latency, retry_after_s=retry_after, timeout_s=timeout)
            s = self.settings
            for name in ("error_rate", "timeout_rate", "malformed_rate", "throttle_rate", "latency_ms", "timeout_s"):
                if name in patch:
                    value = float(patch[name])
                    if value < 0 or (name.endswith("_rate") and value > 1):
                        raise ValueError(f"{name} out of range: {value}")
                    setattr(s, name, value)
            if "retry_after_s" in patch:
                s.retry_after_s = int(patch["retry_after_s"])
            for sid, spec in (patch.get("stations") or {}).items():
                if spec is None:
                    s.stations.pop(sid, None)
                elif isinstance(spec, str):
                    s.stations[sid] = StationFault(FaultKind(spec))
                else:
                    s.stations[sid] = StationFault(FaultKind(spec["kind"]), spec.get("count"))
            if "burst" in patch:
                burst = patch["burst"] or {}
                s.burst_kind = FaultKind(burst["kind"]) if burst else None
                s.burst_remaining = int(burst.get("count", 0)) if burst else 0
            total = s.error_rate + s.timeout_rate + s.malformed_rate + s.throttle_rate
            if total > 1.0:
                raise ValueError(f"fault rates add up to {total} > 1")

    def describe(self) -> dict:
        with self._lock:
            data = asdict(self.settings)
        data["stations"] = {
            sid: {
                "kind": f["kind"].value if isinstance(f["kind"], FaultKind) else f["kind"],
                "remaining": f["remaining"],
            }
            for sid, f in data["stations"].items()
        }
        if isinstance(data["burst_kind"], FaultKind):
            data["burst_kind"] = data["burst_kind"].value
        return data


def assign_station_faults(specs: list[str], station_ids: list[str], seed: int) -> dict[str, StationFault]:
    """Resolve `--fault-stations` values: `KIND=id1,id2`, `KIND=COUNT`, or a bare list/count (kind error).

    A count picks that many stations with a seeded shuffle, never one already given a fault, so
    the same command line always targets the same stations (GET /_faults lists them).
    """
    assigned: dict[str, StationFault] = {}
    rng = random.Random(seed ^ 0xFA17)
    known = set(station_ids)
    for spec in specs:
        kind_text, sep, targets = spec.partition("=")
        if not sep:
            kind_text, targets = FaultKind.ERROR.value, spec
        kind = FaultKind(kind_text.strip())
        targets = targets.strip()
        if targets.isdigit():
            free = [sid for sid in station_ids if sid not in assigned]
            if int(targets) > len(free):
                raise ValueError(f"--fault-stations {spec}: only {len(free)} stations left to assign")
            chosen = rng.sample(free, int(targets))
        else:
            chosen = [t.strip() for t in targets.split(",") if t.strip()]
            unknown = [sid for sid in chosen if sid not in known]
            if unknown:
                raise ValueError(f"--fault-stations {spec}: unknown station ids {unknown}")
        for sid in chosen:
            assigned[sid] = StationFault(kind)
    return assigned
