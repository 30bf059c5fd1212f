"""A Redis that comes back empty: the MQTT connection stays (the same worker gets its lease back),
the cursors come back from the DynamoDB checkpoint, and nothing of the backfill window is sent again.

Real redis-server (no persistence: a restart is a data loss), real Mosquitto, the vendor simulator,
and moto's server for DynamoDB.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.common.state import StateKeys, as_text
from functions.sync_worker.checkpoint import SHARDS, CheckpointFenced, CursorCheckpoint
from functions.sync_worker.store import Lease, StateStore, connect_redis
from tests.support.mqtt import MqttCapture
from tests.worker.conftest import INTERVAL_S, publish_signal, read_cursors, wait_subscribed, wait_until

pytestmark = pytest.mark.integration

TABLE = "c2c-test-cursors"
STATIONS = 20


def create_table(moto) -> None:
    moto.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "env", "KeyType": "HASH"}, {"AttributeName": "shard", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "env", "AttributeType": "S"},
            {"AttributeName": "shard", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def test_an_empty_redis_is_restored_from_the_checkpoint_and_the_mqtt_connection_survives(
    mosquitto, redis_server, moto, sync_worker, monkeypatch
):
    create_table(moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.url)
    sub = MqttCapture(mosquitto.port, client_id="redis-loss-subscriber", persistent=True).start()
    setup = sync_worker(STATIONS, mqtt_url=mosquitto.url, backlog=2, C2C_SIGNAL_URL="redis", C2C_CHECKPOINT_TABLE=TABLE)
    worker = setup.running.worker
    publish_signal(redis_server.url)
    wait_until(lambda: len(setup.running.history()) == 1, 30, what="first cycle")
    cursors = read_cursors(redis_server.url, "test")
    checkpoint = CursorCheckpoint(TABLE, "test", client=moto.client("dynamodb"))
    wait_until(lambda: checkpoint.load() == cursors, 10, what="checkpoint written after the cycle")
    token_before = worker.lease.token

    redis_server.stop()
    redis_server.start()  # the same port, no data: the lease, the cursors and the history are gone
    wait_until(lambda: worker.lease.held and worker.lease.token != token_before, 30, what="lease taken again")
    wait_subscribed(redis_server.url)
    setup.sim.advance_clock(INTERVAL_S)  # one new reading per station
    publish_signal(redis_server.url)
    wait_until(lambda: len(setup.running.history()) >= 1, 30, what="cycle after the Redis loss")
    upto = setup.t0 + timedelta(seconds=INTERVAL_S)
    expected = setup.expected(upto)
    wait_until(lambda: len(sub.ids) >= len(expected), 20, what="every reading")
    assert set(sub.ids) == expected, "nothing lost, nothing from before the starting cursors"
    duplicates = sum(n - 1 for n in sub.ids.values()) - sum(sub.redeliveries.values())
    assert duplicates == 0, "Redis was lost between cycles: the checkpoint had every cursor"
    assert set(read_cursors(redis_server.url, "test").values()) == {upto.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    assert mosquitto.connections_from("c2c-sync-test") == 1, "the MQTT connection survived the Redis outage"
    assert worker.uplink.connected
    sub.stop()


def test_a_worker_without_the_lease_cannot_overwrite_a_newer_checkpoint(moto):
    create_table(moto)
    client = moto.client("dynamodb")
    newer, older = CursorCheckpoint(TABLE, "test", client=client), CursorCheckpoint(TABLE, "test", client=client)
    assert newer.save({"site-1": "2026-01-01T00:10:00.000000Z"}, fencing_token=200) == SHARDS  # all, once

    with pytest.raises(CheckpointFenced):
        older.save({"site-1": "2026-01-01T00:05:00.000000Z"}, fencing_token=100)
    assert newer.load() == {"site-1": "2026-01-01T00:10:00.000000Z"}


def test_a_cycle_that_finds_redis_empty_before_the_renewer_does_stands_down_and_restores(
    mosquitto, redis_server, moto, sync_worker, monkeypatch
):
    """The lease renews every 10 s here: the signal after the restart reaches the cycle (and its
    fenced restore) long before the renewer notices the lease is gone."""
    create_table(moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.url)
    setup = sync_worker(
        5, mqtt_url=mosquitto.url, backlog=1, C2C_SIGNAL_URL="redis", C2C_CHECKPOINT_TABLE=TABLE, C2C_LEASE_TTL_S="30"
    )
    worker = setup.running.worker
    publish_signal(redis_server.url)
    wait_until(lambda: len(setup.running.history()) == 1, 30, what="first cycle")
    checkpoint = CursorCheckpoint(TABLE, "test", client=moto.client("dynamodb"))
    wait_until(lambda: len(checkpoint.load()) == 5, 10, what="checkpoint written")
    token_before = worker.lease.token

    redis_server.stop()
    redis_server.start()
    wait_subscribed(redis_server.url)
    setup.sim.advance_clock(INTERVAL_S)
    publish_signal(redis_server.url)
    wait_until(lambda: worker.lease.held and worker.lease.token != token_before, 20, what="lease taken again")
    wait_until(lambda: len(setup.running.history()) >= 1, 30, what="the cycle, after the restore")
    assert setup.running.thread.is_alive(), "the worker died on the stale lease"
    upto = (setup.t0 + timedelta(seconds=INTERVAL_S)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert set(read_cursors(redis_server.url, "test").values()) == {upto}


def test_the_checkpoint_keeps_every_endpoints_cursors_and_published_marks(redis_server, moto):
    """A source with several reading endpoints (the shipped vendors name theirs `power`, `storage`…)
    has a cursor hash per endpoint and a published-through hash beside each: all of them must come
    back after a Redis loss, not only the default endpoint's, or those endpoints start over at their
    backfill window. Station ids with `|`, `:` and `=` come back unchanged."""
    create_table(moto)
    keys = StateKeys.for_env("test")
    client = connect_redis(redis_server.url)
    lease = Lease(client, keys, "checkpoint-test")
    assert lease.try_acquire()
    state = StateStore(client, keys, lease)
    endpoints = ["power", "storage"]
    at = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)
    for n, station in enumerate(["site-1", "NE=33554000", "a|b:c"]):
        state.advance_cursor(station, at + timedelta(minutes=n), endpoint="power")
        state.advance_cursor(station, at, endpoint="storage", published_through=at + timedelta(minutes=15 + n))
    before = {key: client.hgetall(key) for key in map(as_text, client.keys("c2c:test:cursors*"))}
    assert len(before) == 3 and state.cursor_count(endpoints) == 6 and state.cursor_count() == 0

    checkpoint = CursorCheckpoint(TABLE, "test", client=moto.client("dynamodb"))
    checkpoint.save(state.raw_cursors(endpoints), fencing_token=lease.token or 0)
    client.flushall()  # Redis restarted without its data
    assert lease.try_acquire()
    assert state.cursor_count(endpoints) == 0
    assert state.restore_cursors(checkpoint.load()) == 9

    after = {key: client.hgetall(key) for key in map(as_text, client.keys("c2c:test:cursors*"))}
    assert after == before
    assert state.restore_cursors(checkpoint.load()) == 0, "never restored over live cursors"
