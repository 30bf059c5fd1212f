"""Redis down: the worker survives it by itself, loses no reading, and never cycles without the lease.

A real redis-server is stopped and started again on the same port. Two restart cases, named in each test:
- *persistent*: an append-only file fsynced on every write, in the server's workdir (what an
  ElastiCache primary keeps across a restart): the lease key, the fence counter and the cursors
  come back; a lease key whose TTL ran out during the outage does not;
- *non-persistent*: every key is gone after the restart (lease, fence counter, cursors, history).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from c2c_sync.demo.services import spawn
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.common.state import StateKeys
from functions.sync_worker.health import check
from functions.sync_worker.store import Lease, LeaseLost, StateStore
from functions.sync_worker.wiring import build_worker
from functions.sync_worker.worker import Job
from tests.support.services import RedisServer, require_binary, wait_for_port
from tests.worker.conftest import (
    INTERVAL_S,
    base_env,
    clock_spec,
    expected_ids,
    read_cursors,
    seed_cursors,
    settings_from,
    sim_clock_start,
    station_ids,
    wait_until,
)
from tests.worker.test_process import health, queue_counts, queue_with_dlq, send

pytestmark = pytest.mark.integration


@dataclass
class PersistentRedisServer(RedisServer):
    """redis-server with an append-only file fsynced on every write: a restart keeps every key."""

    def start(self) -> PersistentRedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [
                require_binary("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
        )
        wait_for_port(self.port)
        return self


@pytest.fixture
def persistent_redis(tmp_path: Path):
    server = PersistentRedisServer(tmp_path / "redis-aof").start()
    yield server
    server.stop()


def iso(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duplicates(sub) -> int:
    return sum(n - 1 for n in sub.ids.values())


@dataclass
class MidCycle:
    """A worker on SQS signals and the persistent Redis, 40 stations, caught in its first cycle."""

    sqs: Any
    queue_url: str
    t0: datetime
    stations: list[str]
    since: datetime
    sub: Any
    running: Any

    @property
    def worker(self):
        return self.running.worker


def start_mid_cycle(
    persistent_redis,
    mosquitto,
    moto,
    simulator_factory,
    subscriber_factory,
    worker_factory,
    tmp_path,
    monkeypatch,
    **env: str,
) -> MidCycle:
    sqs = moto.client("sqs")
    queue_url, _ = queue_with_dlq(sqs)
    t0 = sim_clock_start()
    stations = station_ids(40)
    since = t0 - timedelta(seconds=5 * INTERVAL_S)
    sim = simulator_factory(stations=40, latency_ms=100, clock=clock_spec(t0))
    seed_cursors(persistent_redis.url, "test", stations, since)
    sub = subscriber_factory(mosquitto.port)
    settings = settings_from(
        base_env(
            mqtt_url=mosquitto.url,
            redis_url=persistent_redis.url,
            source_url=sim.url,
            tmp_path=tmp_path,
            C2C_SIGNAL_URL=queue_url,
            C2C_CONCURRENCY="4",
            **env,
        ),
        monkeypatch,
    )
    running = worker_factory(settings)
    worker = running.worker
    wait_until(lambda: worker.uplink.connected and worker.lease.held, 15, what="worker connected, lease held")
    send(sqs, queue_url)
    wait_until(lambda: sub.count() >= 25, 20, what="cycle under way")
    return MidCycle(sqs, queue_url, t0, stations, since, sub, running)


def test_redis_down_longer_than_the_lease_mid_cycle_worker_stands_by_reacquires_and_loses_nothing(
    persistent_redis, mosquitto, moto, simulator_factory, subscriber_factory, worker_factory, tmp_path, monkeypatch
):
    """Persistent restart; the outage outlasts the 3 s lease TTL, so the lease key has expired when
    Redis returns (the fence counter and the cursors are still there). SQS signal transport."""
    run = start_mid_cycle(
        persistent_redis, mosquitto, moto, simulator_factory, subscriber_factory, worker_factory, tmp_path, monkeypatch
    )
    sqs, queue_url, t0, stations, since, sub, running = (
        run.sqs,
        run.queue_url,
        run.t0,
        run.stations,
        run.since,
        run.sub,
        run.running,
    )
    worker = run.worker
    token_before = worker.lease.token  # taken before the outage below
    persistent_redis.stop()
    # Cursor writes fail at once (connection refused), so the cycle usually ends before the lease
    # does; if the lease expires first, the cycle is cut short and its signal given back instead.
    wait_until(lambda: worker.last_record is not None, 15, what="the cycle ended")
    first = worker.last_record
    assert first.stations_failed > 0 and set(first.errors_by_class) == {"transient"}
    wait_until(lambda: not worker.lease.held, 10, what="lease expired while Redis is down")
    # Without the lease the worker publishes nothing but keeps its connection (held: not
    # reconnected should another lease holder's connection with the same client id evict it).
    assert worker.uplink.connected
    assert running.thread.is_alive() and running.result == [], "the worker gave up"

    persistent_redis.start()  # same port, same append-only file
    wait_until(lambda: worker.lease.held and worker.uplink.connected, 20, what="lease re-acquired")
    assert worker.lease.token > token_before, "the fencing token must keep increasing"
    send(sqs, queue_url)  # the next cycle retries the failed stations from their cursors
    wait_until(
        lambda: queue_counts(sqs, queue_url) == (0, 0) and running.history()[0].signal_id != first.signal_id,
        30,
        interval=0.3,
        what="every signal's cycle finished",
    )
    history = running.history()
    assert history[-1] == first, "the cycle that ran during the outage is in the run history"
    assert (history[0].stations_synced, history[0].stations_failed) == (40, 0)

    expected = expected_ids(stations, since, t0)
    sub.wait_for_ids(len(expected), timeout=15)
    assert set(sub.ids) == expected, "a reading was lost"
    assert duplicates(sub) <= first.duplicates_possible, "more duplicates than the worker accounted for"
    assert set(read_cursors(persistent_redis.url, "test").values()) == {iso(t0)}
    assert mosquitto.connections_from("c2c-sync-test") == 1  # the connection outlived the Redis outage
    assert running.stop() == 0


def test_redis_down_shorter_than_the_lease_mid_cycle_failed_cursor_writes_are_transient_and_retried(
    persistent_redis, mosquitto, moto, simulator_factory, subscriber_factory, worker_factory, tmp_path, monkeypatch
):
    """Persistent restart; the outage (6 s: longer than redis-py's own retries, so cursor writes do
    fail) stays within the 15 s lease TTL: same lease, same token, same MQTT connection. SQS transport."""
    run = start_mid_cycle(
        persistent_redis,
        mosquitto,
        moto,
        simulator_factory,
        subscriber_factory,
        worker_factory,
        tmp_path,
        monkeypatch,
        C2C_LEASE_TTL_S="15",
    )
    sqs, queue_url, t0, stations, since, sub, running = (
        run.sqs,
        run.queue_url,
        run.t0,
        run.stations,
        run.since,
        run.sub,
        run.running,
    )
    worker = run.worker
    token = worker.lease.token  # taken before the outage below
    persistent_redis.stop()
    time.sleep(6)
    assert worker.lease.held and running.thread.is_alive()
    persistent_redis.start()
    wait_until(lambda: len(running.history()) == 1, 30, what="first cycle recorded")
    first = running.history()[0]
    assert first.stations_failed > 0 and set(first.errors_by_class) == {"transient"} and not first.aborted
    assert first.stations_synced + first.stations_failed == 40
    # Every station left behind is counted as failed (none silently). The converse need not hold:
    # a cursor write Redis applied just before stopping may have lost its reply.
    unmoved = sum(1 for v in read_cursors(persistent_redis.url, "test").values() if v == iso(since))
    assert 0 < unmoved <= first.stations_failed

    send(sqs, queue_url)  # the next cycle retries the failed stations from their cursors
    wait_until(lambda: len(running.history()) == 2, 30, what="second cycle")
    second = running.history()[0]
    assert (second.stations_synced, second.stations_failed) == (40, 0)
    expected = expected_ids(stations, since, t0)
    sub.wait_for_ids(len(expected), timeout=15)
    assert set(sub.ids) == expected, "a reading was lost"
    assert duplicates(sub) <= first.duplicates_possible, "more duplicates than the worker accounted for"
    assert set(read_cursors(persistent_redis.url, "test").values()) == {iso(t0)}
    assert worker.lease.token == token and worker.lease.held
    assert mosquitto.connections_from("c2c-sync-test") == 1
    assert running.stop() == 0


def test_redis_pubsub_signal_after_a_redis_restart_still_triggers_a_cycle(
    redis_server, mosquitto, simulator_factory, subscriber_factory, worker_factory, tmp_path, monkeypatch
):
    """Non-persistent restart while the worker idles: lease key, fence counter and cursors are gone.
    The worker re-acquires the lease with a larger token, resubscribes, and a PUBLISHed signal runs a
    cycle; the lost cursors make it backfill (duplicates, never loss)."""
    t0 = sim_clock_start()
    stations = station_ids(5)
    since = t0 - timedelta(seconds=3 * INTERVAL_S)
    sim = simulator_factory(stations=5, clock=clock_spec(t0))
    seed_cursors(redis_server.url, "test", stations, since)
    sub = subscriber_factory(mosquitto.port)
    # The simulator's clock is an hour behind: a 65-minute window backfills the last few readings.
    settings = settings_from(
        base_env(
            mqtt_url=mosquitto.url,
            redis_url=redis_server.url,
            source_url=sim.url,
            tmp_path=tmp_path,
            C2C_SIGNAL_URL="redis",
            C2C_BACKFILL_WINDOW_S="3900",
        ),
        monkeypatch,
    )
    running = worker_factory(settings)
    worker = running.worker
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)

    def signal() -> str:
        return StartSignal(command=Command.SYNC_NOW, source=Source.CLI).to_json()

    def subscribers() -> int:
        try:
            return dict(client.pubsub_numsub(REDIS_SIGNAL_CHANNEL)).get(REDIS_SIGNAL_CHANNEL, 0)
        except redis.RedisError:
            return 0

    wait_until(lambda: worker.lease.held and worker.uplink.connected and subscribers() == 1, 15, what="subscribed")
    token_before = worker.lease.token
    assert client.publish(REDIS_SIGNAL_CHANNEL, signal()) == 1
    wait_until(lambda: len(running.history()) == 1, 15, what="cycle before the restart")
    sub.settle()  # PUBACKed is not yet delivered to the subscriber: it can lag behind under load
    assert set(sub.ids) == expected_ids(stations, since, t0)

    redis_server.stop()
    time.sleep(1)
    redis_server.start()
    restarted = time.monotonic()
    wait_until(lambda: subscribers() == 1, 20, what="worker resubscribed")
    resubscribed_after = time.monotonic() - restarted
    # The lease key went with the restart: the renewer notices, the worker stands down and takes a
    # new lease (a larger token although the counter is gone) and a new MQTT connection.
    wait_until(
        lambda: worker.lease.held and worker.lease.token != token_before and worker.uplink.connected,
        20,
        what="lease re-acquired",
    )
    assert worker.lease.token > token_before, "the fencing token must keep increasing after the counter was lost"
    assert client.publish(REDIS_SIGNAL_CHANNEL, signal()) == 1
    wait_until(lambda: len(running.history()) == 1, 15, what="a cycle from the signal published after the restart")
    after = running.history()[0]  # the restart emptied the history
    assert after.stations_failed == 0 and after.readings_published >= len(stations)
    assert resubscribed_after < 12, f"resubscribed only after {resubscribed_after:.1f}s"
    sub.settle()
    before_restart = expected_ids(stations, since, t0)
    assert before_restart <= set(sub.ids), "a reading was lost"
    # The cursors went with the restart, so the cycle started again from its backfill window floor.
    assert all(sub.ids[i] == 2 for i in before_restart)
    assert running.thread.is_alive() and running.stop() == 0


def test_health_is_unhealthy_while_the_heartbeat_is_stale_and_healthy_again_after_redis_returns(
    persistent_redis, mosquitto, simulator_factory, worker_factory, tmp_path, monkeypatch
):
    """Persistent restart within the 15 s lease TTL, so staleness (not a lost lease) is what fails.
    The staleness threshold is the shared 90 s constant, not configurable from the CLI: the check's
    logic runs here with a 2 s threshold on the real status file the running worker writes."""
    sim = simulator_factory(stations=2, clock=clock_spec(sim_clock_start()))
    settings = settings_from(
        base_env(
            mqtt_url=mosquitto.url,
            redis_url=persistent_redis.url,
            source_url=sim.url,
            tmp_path=tmp_path,
            C2C_LEASE_TTL_S="15",
        ),
        monkeypatch,
    )
    running = worker_factory(settings)
    status_file = settings.status_file
    wait_until(lambda: check(status_file, max_age_s=2.0)[0], 15, what="healthy")

    persistent_redis.stop()
    try:
        wait_until(lambda: "heartbeat is" in check(status_file, max_age_s=2.0)[1], 15, what="stale heartbeat")
        ok, reason = check(status_file, max_age_s=2.0)
        assert not ok and "stale after 2s" in reason
        assert running.worker.lease.held and running.worker.uplink.connected  # only the heartbeat failed
    finally:
        persistent_redis.start()
    wait_until(lambda: check(status_file, max_age_s=2.0)[0], 15, what="healthy again")
    assert health(status_file)[0] == 0  # the container's own check, with its 90 s threshold
    assert running.thread.is_alive() and running.stop() == 0


def test_fencing_token_still_increases_after_a_restart_that_lost_the_fence_counter(redis_server):
    """Non-persistent restart: the fence counter is gone. A new acquisition must still get a larger
    token, and the old holder (unaware of the restart) must not be able to write a cursor."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = StateKeys("c2c:fence")
    old = Lease(client, keys, "w-old", ttl_s=30)
    assert old.try_acquire()
    StateStore(client, keys, old).advance_cursor("site-1", sim_clock_start())

    redis_server.stop()
    redis_server.start()
    assert client.get(keys.fencing_counter) is None and client.get(keys.lease) is None
    new = Lease(client, keys, "w-new", ttl_s=30)
    try:
        assert new.try_acquire()
        assert new.token is not None and old.token is not None
        assert new.token > old.token, f"token {new.token} after the restart, {old.token} before"
        assert old.held  # it has not renewed since the restart: it still believes it holds the lease
        with pytest.raises(LeaseLost):
            StateStore(client, keys, old).advance_cursor("site-1", sim_clock_start() + timedelta(minutes=1))
        assert client.hget(keys.cursors, "site-1") is None
    finally:
        old.release()
        new.release()


def test_cycle_start_retry_delay_grows_while_redis_stays_down_and_resets_after_a_cycle_runs(
    redis_server, simulator_factory, tmp_path, monkeypatch
):
    """A cycle Redis refuses to start is retried after a delay whose ceiling doubles per failed
    attempt (it used to start over at 0.5 s every time, retrying twice a second for the whole
    outage). The stop event is set so each retry's wait returns at once; the growth is read from
    the worker's backoff, whose attempt count sets the ceiling of the next delay."""
    sim = simulator_factory(stations=2, clock=clock_spec(sim_clock_start()))
    settings = settings_from(
        base_env(mqtt_url="mqtt://127.0.0.1:1", redis_url=redis_server.url, source_url=sim.url, tmp_path=tmp_path),
        monkeypatch,
    )
    worker = build_worker(settings)
    try:
        backoff = worker._cycle_start_backoff
        redis_server.stop()
        worker.stop_event.set()
        for attempt in (1, 2, 3, 4):
            assert worker._run_cycle(Job(stations=set())) is None, "Redis is down: the cycle cannot start"
            assert backoff.attempt == attempt, "the retry delay must keep growing while Redis stays down"

        redis_server.start()
        worker.stop_event.clear()
        assert worker._run_cycle(Job(stations=set())) is not None
        assert backoff.attempt == 0, "a cycle that ran resets the delay for the next outage"
    finally:
        worker._source.close()
