"""The per-connection publish token bucket (AWS IoT Core: 100 publishes/s), on a fake clock."""

from __future__ import annotations

from functions.sync_worker.uplink.profiles.ratelimit import TokenBucket, bucket_for


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
        assert bucket.acquire()
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


def test_timeout_gives_up_without_taking():
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    assert not bucket.acquire(timeout=0.5)
    assert bucket.try_acquire() > 0


def test_no_limit_no_bucket():
    assert bucket_for(None) is None
    assert bucket_for(100).rate == 100
