"""The simulator's notion of "now": the wall clock, or a chosen start running at a chosen speed.

A fixed start makes tests deterministic (speed 0 freezes time); a speed factor lets a demo show
a day of battery cycling in minutes. Tests may also jump the clock forward through /_clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def parse_utc(text: str) -> datetime:
    """ISO-8601 to an aware UTC datetime; a naive value is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SimClock:
    """`real`, or `<ISO start>[@<speed>]` e.g. `2024-06-01T00:00:00Z@60` (speed 0 = frozen)."""

    def __init__(self, spec: str = "real") -> None:
        self._lock = threading.Lock()
        self.spec = spec
        if spec == "real":
            self._real = True
            self._start_epoch, self._speed = 0.0, 1.0
        else:
            start, _, speed = spec.partition("@")
            self._real = False
            self._start_epoch = parse_utc(start).timestamp()
            self._speed = float(speed) if speed else 1.0
            if self._speed < 0:
                raise ValueError(f"clock speed must be >= 0, got {self._speed}")
        self._t0 = time.monotonic()
        self._offset_s = 0.0

    def now(self) -> float:
        """Simulated now as epoch seconds."""
        if self._real:
            return time.time() + self._offset_s
        return self._start_epoch + (time.monotonic() - self._t0) * self._speed + self._offset_s

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_s += seconds

    def set_now(self, when: datetime) -> None:
        with self._lock:
            self._offset_s += when.timestamp() - self.now()

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "now": self.now_dt().isoformat().replace("+00:00", "Z"),
            "speed": 1.0 if self._real else self._speed,
            "offset_s": self._offset_s,
        }
