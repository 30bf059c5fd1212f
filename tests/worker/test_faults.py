"""Broker outage mid-cycle, vendor faults on some stations."""

from __future__ import annotations

import time

import pytest

from functions.common.signal import Command, Source, StartSignal
from functions.sync_worker.signals import ReceivedSignal
from tests.support.services import MosquittoBroker
from tests.worker.conftest import read_cursors, wait_until

pytestmark = pytest.mark.integration


def sync_now(running) -> None:
    running.worker.submit(ReceivedSignal(StartSignal(command=Command.SYNC_NOW, source=Source.CLI)))


def test_broker_stopped_mid_cycle_and_restarted_loses_nothing_and_recovers_by_itself(
    redis_server, subscriber_factory, sync_worker, tmp_path
):
    # A persistent broker: the subscriber's QoS 1 session survives the restart, so what the broker
    # acknowledged before going down still reaches it; what it did not acknowledge the worker resends.
    broker_dir = tmp_path / "persistent-mosquitto"
    broker = MosquittoBroker(broker_dir, extra_config=f"persistence true\npersistence_location {broker_dir}/\n")
    broker.start()
    try:
        sub = subscriber_factory(broker.port)
        setup = sync_worker(100, mqtt_url=broker.url, backlog=10, sim_options={"latency_ms": 40}, C2C_CONCURRENCY="4")
        t0, running = setup.t0, setup.running

        sync_now(running)
        wait_until(lambda: sub.count() >= 150, 30, what="cycle under way")
        broker.stop()
        wait_until(lambda: not running.worker.uplink.connected, 10, what="worker noticed the outage")
        # Down for longer than the PUBACK deadline: stations waiting to publish must fail (transient)
        # rather than all riding out a short outage, so the retry path below is really exercised.
        time.sleep(float(running.worker.settings.puback_timeout_s) + 0.5)
        broker.start()  # same port, same persistence file
        wait_until(lambda: running.worker.uplink.connected, 20, what="worker reconnected by itself")
        wait_until(lambda: len(running.history()) == 1, 60, what="first cycle finished")
        first = running.history()[0]
        assert first.stations_failed > 0 and set(first.errors_by_class) == {"transient"}

        sync_now(running)  # the next cycle retries the failed stations from their cursors
        wait_until(lambda: len(running.history()) == 2, 60, what="second cycle finished")
        second = running.history()[0]
        assert second.stations_failed == 0

        expected = setup.expected()
        sub.wait_for_ids(len(expected), timeout=30)
        assert set(sub.ids) == expected, "a reading was lost"
        # `duplicates_possible` bounds what the worker sent twice. The broker going down also
        # re-sends to the persistent subscriber the deliveries it had not yet seen acknowledged
        # (QoS 1 on the broker->subscriber hop: same packet id, DUP set) -- duplicates the worker
        # neither caused nor can see, so they are taken out before comparing.
        duplicates = sum(n - 1 for n in sub.ids.values()) - sum(sub.redeliveries.values())
        assert duplicates <= first.duplicates_possible, "more duplicates than the worker accounted for"
        assert set(read_cursors(redis_server.url, "test").values()) == {t0.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        assert broker.connections_from("c2c-sync-test") == 2
        assert running.worker.uplink.totals().reconnects["connection_lost"] == 1
        assert running.stop() == 0
    finally:
        broker.stop()


def test_vendor_faults_on_some_stations_others_complete_failures_classified_next_cycle_retries(
    mosquitto, redis_server, subscriber_factory, sync_worker
):
    sub = subscriber_factory(mosquitto.port)
    setup = sync_worker(
        30,
        mqtt_url=mosquitto.url,
        backlog=4,
        sim_options={
            "retry_after_s": 1,
            "fault_stations": [
                "error=site-00003",
                "not_found=site-00007",
                "forbidden=site-00011",
                "throttle=site-00015",
                "malformed=site-00019",
            ],
        },
    )
    t0, stations, sim, running = setup.t0, setup.stations, setup.sim, setup.running

    sync_now(running)
    wait_until(lambda: len(running.history()) == 1, 90, what="first cycle")
    first = running.history()[0]
    assert (first.stations_synced, first.stations_failed) == (25, 5)
    assert first.errors_by_class == {"transient": 2, "permanent": 1, "auth": 1, "throttled": 1}
    faulty = {"site-00003", "site-00007", "site-00011", "site-00015", "site-00019"}
    healthy = [s for s in stations if s not in faulty]
    cursors = read_cursors(redis_server.url, "test")
    seeded = setup.since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert {cursors[s] for s in faulty} == {seeded}, "a failed station's cursor moved"
    assert {cursors[s] for s in healthy} == {t0.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}

    sim.clear_faults()
    sync_now(running)
    wait_until(lambda: len(running.history()) == 2, 60, what="second cycle")
    second = running.history()[0]
    assert (second.stations_synced, second.stations_failed) == (30, 0)
    assert second.readings_published == 5 * 4  # only the stations that failed before had anything new
    sub.wait_for_ids(30 * 4)
    assert set(sub.ids) == setup.expected()
    assert running.stop() == 0
