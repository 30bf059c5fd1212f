"""Continuous mode (start_sync -> a cycle every interval until stop_sync) and the `reload` signal.

Real parts: mosquitto, redis-server, the vendor simulator (HTTP). Cycle counts come from the run
history the worker writes to Redis, not from the worker object.
"""

from __future__ import annotations

import itertools
import shutil
import time

import pytest
import yaml

from functions.common.signal import Command
from functions.sync_worker.source.http_json import resolve_config_path
from tests.worker.conftest import publish_signal, station_ids, wait_until

pytestmark = pytest.mark.integration

CYCLE_INTERVAL_S = 1.0


def test_continuous_mode_cycles_every_interval_until_stop_sync(mosquitto, redis_server, sync_worker):
    running = sync_worker(
        5,
        mqtt_url=mosquitto.url,
        backlog=2,
        C2C_SIGNAL_URL="redis",
        C2C_MODE="continuous",
        C2C_INTERVAL_S=str(CYCLE_INTERVAL_S),
    ).running
    time.sleep(2 * CYCLE_INTERVAL_S)
    assert running.history() == [], "continuous mode must wait for start_sync"

    start = publish_signal(redis_server.url, Command.START_SYNC)
    wait_until(lambda: len(running.history()) >= 4, 20, what="four cycles from one start_sync")
    stop = publish_signal(redis_server.url, Command.STOP_SYNC)
    time.sleep(0.5)  # a cycle already running when stop_sync arrived may still finish
    after_stop = len(running.history())
    time.sleep(3 * CYCLE_INTERVAL_S)
    history = sorted(running.history(), key=lambda r: r.started_at)
    assert len(history) == after_stop, "cycles continued after stop_sync"

    assert history[0].signal_id == str(start.id)  # the first answers start_sync, the rest are the schedule
    assert all(r.signal_id is None for r in history[1:])
    assert all(r.stations_total == 5 and r.stations_failed == 0 for r in history)
    assert history[0].readings_published == 10 and all(r.readings_published == 0 for r in history[1:])
    starts = [r.started_at for r in history]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # One cycle every interval, measured start to start; never back to back, never two at a time.
    assert all(0.9 * CYCLE_INTERVAL_S <= g <= 3 * CYCLE_INTERVAL_S for g in gaps), gaps
    assert all(a.finished_at <= b.started_at for a, b in itertools.pairwise(history))
    assert str(stop.id) not in {r.signal_id for r in history}  # stop_sync runs no cycle of its own

    publish_signal(redis_server.url, Command.START_SYNC)  # and it can be started again
    wait_until(lambda: len(running.history()) >= after_stop + 2, 10, what="cycling again after a new start_sync")
    assert running.stop() == 0


def test_reload_rereads_the_vendor_config_and_the_station_list(
    mosquitto, redis_server, subscriber_factory, sync_worker, tmp_path
):
    vendor = tmp_path / "vendor.yaml"
    shutil.copy(resolve_config_path("simulator"), vendor)
    sub = subscriber_factory(mosquitto.port)
    # Cursors of all 10 stations, 4 of which the vendor adds later. A long station-list cache (the
    # default 900 s): only `reload` makes the worker list again.
    setup = sync_worker(
        6,
        seeded=10,
        mqtt_url=mosquitto.url,
        backlog=2,
        C2C_SIGNAL_URL="redis",
        C2C_SOURCE_CONFIG=str(vendor),
        C2C_STATION_LIST_TTL_S="900",
    )
    sim, running = setup.sim, setup.running

    def cycle(n: int):
        publish_signal(redis_server.url, Command.SYNC_NOW)
        wait_until(lambda: len(running.history()) == n, 30, what=f"cycle {n}")
        return running.history()[0]

    first = cycle(1)
    assert (first.stations_total, first.readings_published) == (6, 12)
    sub.wait_for_ids(12)
    assert all("pv_power_kw" in p["values"] for p in sub.payloads)

    # The vendor changes under the running worker: four more stations, and we drop a mapped value.
    sim.stop()
    sim.stations = 10
    sim.start()
    config = yaml.safe_load(vendor.read_text())
    del config["readings"]["values"]["pv_power_kw"]
    vendor.write_text(yaml.safe_dump(config))

    cached = cycle(2)
    assert (cached.stations_total, cached.readings_published) == (6, 0), "without reload the cached list stands"

    publish_signal(redis_server.url, Command.RELOAD)
    reloaded = cycle(3)
    assert (reloaded.stations_total, reloaded.stations_synced, reloaded.readings_published) == (10, 10, 8)
    sub.wait_for_ids(20)
    new = [p for p in sub.payloads if p["station_id"] in station_ids(10)[6:]]
    assert len(new) == 8 and all("pv_power_kw" not in p["values"] for p in new)  # the edited mapping applies
    assert len(running.history()) == 3, "reload runs no cycle of its own"
    assert mosquitto.connections_from("c2c-sync-test") == 1  # reload renews the source, not the MQTT connection
    assert running.stop() == 0
