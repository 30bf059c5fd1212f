"""Request accounting the tests read back through GET /_stats: what the client really sent.

Evidence from the server side (request counts, fault counts, arrival times per station) lets a
test prove retries, back-off waits and rate limits without trusting the client's own counters.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class StationStats:
    requests: int = 0
    faults: Counter = field(default_factory=Counter)
    #: Monotonic arrival times of the latest requests (seconds), to measure client back-off.
    arrivals: deque = field(default_factory=lambda: deque(maxlen=64))


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests_total = 0
            self.connections_total = 0
            self.by_endpoint: Counter = Counter()
            self.by_status: Counter = Counter()
            self.faults: Counter = Counter()
            self.auth_failures = 0
            self.tokens_issued = 0
            self.stations: dict[str, StationStats] = {}
            self.started = time.monotonic()

    def connection(self) -> None:
        with self._lock:
            self.connections_total += 1

    def request(self, endpoint: str, station_id: str | None) -> None:
        with self._lock:
            self.requests_total += 1
            self.by_endpoint[endpoint] += 1
            if station_id is not None:
                st = self.stations.get(station_id)
                if st is None:
                    st = self.stations[station_id] = StationStats()
                st.requests += 1
                st.arrivals.append(time.monotonic())

    def response(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def fault(self, kind: str, station_id: str | None) -> None:
        with self._lock:
            self.faults[kind] += 1
            if station_id is not None and station_id in self.stations:
                self.stations[station_id].faults[kind] += 1

    def auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def token_issued(self) -> None:
        with self._lock:
            self.tokens_issued += 1

    def snapshot(self, station_filter: set[str] | None = None, with_arrivals: bool = False) -> dict:
        with self._lock:
            stations = {}
            for sid, st in self.stations.items():
                if station_filter is not None and sid not in station_filter:
                    continue
                entry = {"requests": st.requests, "faults": dict(st.faults)}
                if with_arrivals:
                    entry["arrivals"] = [round(t - self.started, 4) for t in st.arrivals]
                stations[sid] = entry
            return {
                "requests_total": self.requests_total,
                "connections_total": self.connections_total,  # TCP connections accepted: keep-alive evidence
                "by_endpoint": dict(self.by_endpoint),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "faults": dict(self.faults),
                "auth_failures": self.auth_failures,
                "tokens_issued": self.tokens_issued,
                "uptime_s": round(time.monotonic() - self.started, 3),
                "stations": stations,
            }
