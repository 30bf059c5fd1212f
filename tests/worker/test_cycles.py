"""Delivery of every reading, one connection across cycles, one cycle at a time.

Real parts: mosquitto, redis-server, the vendor simulator (HTTP), moto's SQS server.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from functions.common.signal import Command, Source, StartSignal
from tests.support.mqtt import retained_message
from tests.worker.conftest import INTERVAL_S, publish_signal, read_cursors, wait_until

pytestmark = pytest.mark.integration


def test_200_stations_one_cycle_every_reading_once_and_cursors_advanced(
    mosquitto, redis_server, subscriber_factory, sync_worker
):
    sub = subscriber_factory(mosquitto.port)
    setup = sync_worker(200, mqtt_url=mosquitto.url, backlog=5, C2C_SIGNAL_URL="redis")
    t0, stations, running = setup.t0, setup.stations, setup.running

    signal = publish_signal(redis_server.url)
    wait_until(lambda: len(running.history()) == 1, 60, what="one finished cycle")

    expected = setup.expected()
    assert len(expected) == 1000
    sub.wait_for_ids(len(expected))
    assert set(sub.ids) == expected
    assert all(n == 1 for n in sub.ids.values()), "a reading arrived twice on a clean run"
    record = running.history()[0]
    assert record.signal_id == str(signal.id)
    assert (record.stations_total, record.stations_synced, record.stations_failed) == (200, 200, 0)
    assert record.readings_published == 1000
    cursor = t0.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert read_cursors(redis_server.url, "test") == {s: cursor for s in stations}
    payload = sub.payloads[0]
    assert payload["schema"] == 2 and payload["topic"] == f"c2c/test/stations/{payload['station_id']}/telemetry"
    assert {"soc_pct", "battery_power_kw"} <= set(payload["values"])
    assert running.stop() == 0


def test_20_cycles_one_broker_connection_and_only_new_readings(
    mosquitto, redis_server, subscriber_factory, sync_worker
):
    sub = subscriber_factory(mosquitto.port)
    setup = sync_worker(20, mqtt_url=mosquitto.url, backlog=3, C2C_SIGNAL_URL="redis")
    t0, sim, running = setup.t0, setup.sim, setup.running

    for cycle in range(1, 21):
        if cycle > 1:
            sim.advance_clock(INTERVAL_S)  # exactly one new reading per station
        publish_signal(redis_server.url)
        wait_until(lambda n=cycle: len(running.history()) == n, 30, what=f"cycle {cycle}")
        newest = running.history()[0]
        assert newest.stations_failed == 0
        assert newest.readings_published == (60 if cycle == 1 else 20), f"cycle {cycle}"

    expected = setup.expected(upto=t0 + timedelta(seconds=19 * INTERVAL_S))
    sub.wait_for_ids(len(expected))
    assert set(sub.ids) == expected and max(sub.ids.values()) == 1
    # Counted by the broker, from its own log: one CONNECT from the worker's client id in 20 cycles.
    assert mosquitto.connections_from("c2c-sync-test") == 1
    assert running.worker.uplink.totals().connections_opened == 1
    # The generic profile's presence: `online`, retained, for a consumer that arrives later.
    assert retained_message(mosquitto.port, "c2c/test/status/c2c-sync-test") == (b"online", True)
    assert running.stop() == 0
    # A graceful stop says so too (a clean DISCONNECT discards the will, so the worker publishes it).
    assert retained_message(mosquitto.port, "c2c/test/status/c2c-sync-test") == (b"offline", True)


def test_50_signals_at_once_never_two_cycles_and_at_most_one_follow_up(mosquitto, moto, sync_worker):
    sqs = moto.client("sqs")
    queue_url = sqs.create_queue(QueueName="start", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    running = sync_worker(
        60,
        mqtt_url=mosquitto.url,
        backlog=2,
        sim_options={"latency_ms": 60},
        C2C_SIGNAL_URL=queue_url,
        C2C_CONCURRENCY="8",
    ).running

    bodies = [StartSignal(command=Command.SYNC_NOW, source=Source.SCHEDULE).to_json() for _ in range(50)]
    for i in range(0, 50, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])]
        )

    def queue_drained() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_until(queue_drained, 60, interval=0.2, what="every signal deleted after its cycle")
    history = sorted(running.history(), key=lambda r: r.started_at)
    assert 1 <= len(history) <= 2, f"50 signals caused {len(history)} cycles; expected one plus at most one follow-up"
    for earlier, later in itertools.pairwise(history):
        assert earlier.finished_at <= later.started_at, "two cycles overlapped"
    assert sum(r.readings_published for r in history) == 120
    assert running.stop() == 0
