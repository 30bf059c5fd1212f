"""An adaptive limit of concurrent vendor requests (AIMD): vendors cap requests in flight per key,
and sustained throttling means the worker should send fewer at once until the vendor recovers."""

from __future__ import annotations

import threading


class AdaptiveConcurrency:
    """At most `limit` vendor requests in flight, the limit adapting AIMD-style: each 429 halves
    it (never below 1), each `recover_after` successes in a row add one back, up to the vendor's
    maximum. Sustained throttling thus backs off the whole worker, and it recovers by itself."""

    def __init__(self, maximum: int, *, recover_after: int = 20) -> None:
        if maximum < 1 or recover_after < 1:
            raise ValueError("maximum and recover_after must be >= 1")
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum  # for metrics and tests: how far it backed off
        self._recover_after = recover_after
        self._active = 0
        self._streak = 0
        self._cond = threading.Condition()

    def __enter__(self) -> AdaptiveConcurrency:
        with self._cond:
            while self._active >= self.limit:
                self._cond.wait()
            self._active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify()

    def throttled(self) -> None:
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._streak = 0

    def succeeded(self) -> None:
        with self._cond:
            self._streak += 1
            if self._streak >= self._recover_after and self.limit < self.maximum:
                self.limit += 1
                self._streak = 0
                self._cond.notify()
