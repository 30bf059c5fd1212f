"""A thread-safe token bucket for per-connection publish limits (AWS IoT Core: 100 publishes/s).

The uplink builds one per connection from `PlatformLimits.max_publish_per_s` and calls `acquire()`
before handing a publish to paho. Staying under the platform's limit client-side avoids the
platform throttling (or disconnecting) the whole connection. Small and dependency-free because it
blocks a publishing thread, which the asyncio-oriented limiter libraries do not do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        self.rate = float(rate_per_s)
        # Default burst: a tenth of a second's worth (at least one) keeps any one-second window
        # at or below rate + burst, which AWS tolerates, while avoiding a sleep per publish.
        self.capacity = float(burst if burst is not None else max(1.0, self.rate / 10))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take `tokens` if available and return 0.0, else return the seconds to wait."""
        with self._lock:
            self._refill(self._clock())
            # The tolerance absorbs float rounding of `refill(wait)`, which could otherwise leave
            # 0.99999... tokens and a wait too small to move the clock.
            if self._tokens >= tokens - 1e-9:
                self._tokens = max(0.0, self._tokens - tokens)
                return 0.0
            return (tokens - self._tokens) / self.rate

    def acquire(self, tokens: float = 1.0, timeout: float | None = None) -> bool:
        """Block until `tokens` are taken (True) or `timeout` seconds pass (False)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return True
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(wait)


def bucket_for(max_publish_per_s: float | None) -> TokenBucket | None:
    """The bucket a connection needs under a profile's limits (None: unlimited)."""
    return TokenBucket(max_publish_per_s) if max_publish_per_s else None
