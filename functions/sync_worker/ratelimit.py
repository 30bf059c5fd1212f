"""A thread-safe token bucket: the one rate limiter of the worker.

Two callers pace themselves with it: the vendor source (the vendor's published request budget, N
requests/s with some burst: staying under it is cheaper than collecting 429s) and each MQTT
connection (the platform's publish limit, e.g. AWS IoT Core's 100 publishes/s per connection:
staying under it avoids the platform throttling or disconnecting the whole connection).

A caller reserves its token under the lock and sleeps outside it, so waiting threads queue up in
order without holding the lock and the long-run rate never exceeds `rate`. Small and
dependency-free because it blocks a thread, which the asyncio-oriented limiter libraries do not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Default burst: a tenth of a second's worth (at least one) keeps any one-second window at
        # or below rate + burst, which AWS IoT Core tolerates, while avoiding a sleep per call.
        capacity = burst if burst is not None else max(1.0, rate / 10)
        if rate <= 0 or capacity < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()

    def _reserve(self, timeout_s: float | None) -> float | None:
        """Reserve one token and return the seconds until it is due; None (nothing taken) when it
        would not be due within `timeout_s`."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = (1.0 - self._tokens) / self.rate if self._tokens < 1.0 else 0.0
            if timeout_s is not None and wait > timeout_s:
                return None
            self._tokens -= 1.0  # may go negative: a reservation the next callers queue behind
        return wait

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds waited."""
        wait = self._reserve(None)
        assert wait is not None  # no timeout: always reserved
        if wait > 0:
            self._sleep(wait)
        return wait

    def acquire_within(self, timeout_s: float) -> bool:
        """Take one token if it is due within `timeout_s` (sleeping until then): True; else take
        nothing and return False at once."""
        wait = self._reserve(timeout_s)
        if wait is None:
            return False
        if wait > 0:
            self._sleep(wait)
        return True


def bucket_for(max_per_s: float | None) -> TokenBucket | None:
    """The bucket for a limit of `max_per_s` calls per second (None or 0: unlimited, no bucket)."""
    return TokenBucket(max_per_s) if max_per_s else None
