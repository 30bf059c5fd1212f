"""The peers bench's Python floors (bench/peers/python_floor.py) do the job they are measured on: one
cycle against the simulator delivers every reading in the window to an independent subscriber, and
the floor that keeps cursors has written each station's last reading time to Redis once the cycle
is over. Their speed is measured by `make bench-peers`, not here.
"""

from __future__ import annotations

import pytest
import redis

from bench.arrivals import Arrivals
from bench.peers.python_floor import FloorProcess

pytestmark = pytest.mark.integration  # a simulator, Mosquitto, Redis and the floor's own process

SINCE = "2024-06-01T11:55:00Z"
LAST = "2024-06-01T12:00:00Z"  # the simulator's frozen clock: readings at 11:56 .. 12:00, one a minute


@pytest.mark.parametrize(
    ("name", "threads", "keeps_cursors"),
    [("floor", False, False), ("floor-threads", True, False), ("floor-acked", False, True)],
)
def test_one_cycle_delivers_every_reading_of_the_window(
    simulator, mosquitto, redis_server, name, threads, keeps_cursors
):
    arrivals = Arrivals("127.0.0.1", mosquitto.port, client_id=f"arrivals-{name}").start()
    floor = FloorProcess(
        name=name,
        vendor_url=simulator.url,
        broker_port=mosquitto.port,
        stations=simulator.stations,
        lanes=4,
        since=SINCE,
        redis_url=redis_server.url if keeps_cursors else None,
        threads=threads,
    )
    try:
        floor.trigger()
        floor.finished()
        arrivals.wait_for(name, simulator.stations * 5, timeout=30)
        assert arrivals.count(name) == simulator.stations * 5  # not one more: each reading once
        assert arrivals.samples[name]["ts"].endswith(".000000Z")
        cursors = redis.Redis.from_url(redis_server.url, decode_responses=True).hgetall(f"c2c:{name}:cursors")
        if keeps_cursors:
            assert cursors == {f"site-{i:05d}": LAST for i in range(1, simulator.stations + 1)}
        else:
            assert cursors == {}
    finally:
        floor.stop()
        arrivals.stop()
