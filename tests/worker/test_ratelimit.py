"""The worker's token bucket (vendor request budget, per-connection publish limit), on a fake clock."""

from __future__ import annotations

import threading

import pytest

from functions.sync_worker.ratelimit import TokenBucket, bucket_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_holds_the_rate_over_a_long_run():
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        bucket.acquire()
    # 1000 publishes at 100/s with a burst of 10: 9.9 s at least, never faster.
    assert 9.89 <= clock.now <= 10.01


def test_any_one_second_window_stays_within_rate_plus_burst():
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(500):
        bucket.acquire()
        stamps.append(clock.now)
    worst = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert worst <= 100 + bucket.capacity


def test_acquire_within_gives_up_at_once_without_taking():
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire_within(0.5)
    assert not bucket.acquire_within(0.5)
    assert clock.now == 0.0  # gave up without sleeping
    assert bucket.acquire_within(1.0)  # the refused call took nothing: the next token is due in 1 s
    assert clock.now == pytest.approx(1.0)


def test_reservations_queue_in_order_without_the_clock_moving():
    now = [0.0]
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(round(seconds, 6))

    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]  # the burst
    assert [round(w, 6) for w in waits[3:]] == [0.1, 0.2, 0.3]  # queued behind each other at 10/s
    now[0] = 10.0  # idle long enough: the bucket refills to the burst, not beyond
    assert [bucket.acquire() for _ in range(4)][:3] == [0, 0, 0] and slept[-1] == 0.1


def test_a_rate_or_burst_below_one_token_is_refused():
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=10, burst=0.5)


def test_no_limit_no_bucket():
    assert bucket_for(None) is None
    bucket = bucket_for(100)
    assert bucket is not None and bucket.rate == 100
