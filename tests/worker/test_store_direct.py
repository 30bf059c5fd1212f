"""The store's own connections (`DirectCommands`) for cursor writes, budget takes and digest reads:
against a real redis-server stopped, restarted, paused, over TLS with AUTH, and from many threads."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from functions.common.state import StateKeys
from functions.sync_worker.store import Lease, StateStore, connect_redis
from tests.support.services import RedisServer, TlsRedis, tls_redis_server

pytestmark = pytest.mark.integration

TS = datetime(2024, 6, 1, 12, tzinfo=UTC)
BUDGET = [("@vendor:direct", 1000, 60.0)]


def client_for(server: RedisServer, *, retries: int, timeout_s: float = 5.0) -> redis.Redis:
    """A client whose retry policy the test controls: no backoff, `retries` retries."""
    return redis.Redis.from_url(
        server.url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries),
    )


def noscript_refusals(client: redis.Redis) -> int:
    return int(client.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))


def test_after_a_restart_the_kept_connection_reconnects_without_a_retry_and_the_scripts_are_reloaded(redis_server):
    """The restart closed the kept connection and emptied the script cache. With no retries at all
    the first take after it still succeeds: the closed connection is noticed on first use and
    replaced at once, as redis-py's pool does, and the NOSCRIPT refusal loads the script."""
    client = client_for(redis_server, retries=0)
    keys = StateKeys("c2c:restart")
    state = StateStore(client, keys, None)
    assert state.take_call(BUDGET) and state.seen_digests(["m1"]) == [None]

    redis_server.stop()
    redis_server.start()
    assert state.take_call(BUDGET), "the first take after the restart failed"
    assert noscript_refusals(client) == 1, "the script was not reloaded through a NOSCRIPT refusal"
    client.set(keys.seen("m1"), "d1")
    assert state.seen_digests(["m1", "m2"]) == ["d1", None]
    assert client.zcard(keys.call_budget("@vendor:direct")) == 1


def test_while_redis_is_down_a_write_fails_after_the_clients_retries_and_succeeds_once_it_is_back(redis_server):
    client = client_for(redis_server, retries=2)
    keys = StateKeys("c2c:down")
    lease = Lease(client, keys, "w1", ttl_s=30)
    assert lease.try_acquire()
    state = StateStore(client, keys, lease)
    assert state.advance_cursor("site-1", TS)

    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        state.advance_cursor("site-1", TS.replace(minute=1))
    with pytest.raises(redis.ConnectionError):
        state.seen_digests(["m1"])
    redis_server.start()  # not persistent: the lease is gone, so the write is fenced out
    lease2 = Lease(client, keys, "w2", ttl_s=30)
    assert lease2.try_acquire()
    state2 = StateStore(client, keys, lease2)
    assert state2.advance_cursor("site-1", TS.replace(minute=2))
    assert state.seen_digests(["m1"]) == [None], "the store whose calls failed reads again"
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:02:00.000000Z"


def test_a_reply_that_times_out_is_retried_by_the_clients_policy_and_never_read_as_a_later_commands_reply(
    redis_server,
):
    """redis-server paused (SIGSTOP): the read times out, the connection is dropped, the retry times
    out too; after SIGCONT the reply the first command never read must not answer the next one."""
    client = client_for(redis_server, retries=1, timeout_s=0.3)
    keys = StateKeys("c2c:pause")
    state = StateStore(client, keys, None)
    client.set(keys.seen("old"), "old-digest")
    client.set(keys.seen("new"), "new-digest")
    assert state.seen_digests(["old"]) == ["old-digest"]
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            state.seen_digests(["old"])
        took = time.monotonic() - started
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    assert 0.55 <= took < 3, f"two attempts of 0.3 s each, not {took:.2f} s"
    assert state.seen_digests(["new"]) == ["new-digest"]
    assert state.take_call(BUDGET)


def test_threads_calling_at_the_same_time_each_get_their_own_reply_on_connections_of_their_own(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = StateKeys("c2c:threads")
    state = StateStore(client, keys, None)
    for i in range(16):
        client.set(keys.seen(f"m{i}"), f"d{i}")
    start = threading.Barrier(16)

    def lane(i: int) -> bool:
        start.wait()
        return all(state.seen_digests([f"m{i}", "none"]) == [f"d{i}", None] for _ in range(200))

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lane, range(16)))
    # Kept, not opened per call: at most one per thread plus the test's own.
    assert len(client.client_list()) <= 17
    # The client's pool still owns them: disconnecting it closes them, and the next call reconnects.
    client.connection_pool.disconnect()
    assert len(client.client_list()) == 1
    assert state.seen_digests(["m3"]) == ["d3"]


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    with tls_redis_server(tmp_path, "s3cret") as server:
        yield server


def test_writes_takes_and_reads_go_over_tls_with_auth(tls_redis: TlsRedis):
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={tls_redis.ca}"
    client = connect_redis(url, tls_redis.password)
    keys = StateKeys("c2c:tls")
    lease = Lease(client, keys, "w1", ttl_s=30)
    assert lease.try_acquire()
    state = StateStore(client, keys, lease)
    assert state.take_call(BUDGET)
    assert state.advance_cursor("site-1", TS, digests=[("m1", "d1")], digest_ttl_s=600)
    assert state.seen_digests(["m1", "m2"]) == ["d1", None]
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:00:00.000000Z"

    refused = StateStore(connect_redis(url, "wrong"), keys, None)
    with pytest.raises(redis.AuthenticationError):
        refused.seen_digests(["m1"])
    lease.release()
