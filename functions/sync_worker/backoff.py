"""Exponential backoff with full jitter for the worker's long-lived loops (MQTT, Redis, SQS).

Full jitter (a uniform draw below the exponential cap) spreads a fleet's reconnects after an outage
instead of having every worker knock at the same instant.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        # Never zero: a floor of base/10 keeps a flapping peer from being hammered in a tight loop.
        return max(self.base_s / 10, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempt = 0
