"""A graceful stop gives its signal back without pushing it toward the DLQ (real worker processes,
real SIGTERM, moto's SQS server with the stacks' redrive policy)."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

from stacks.messaging import MAX_RECEIVE_COUNT
from tests.worker.conftest import (
    INTERVAL_S,
    base_env,
    clock_spec,
    seed_cursors,
    sim_clock_start,
    start_worker_process,
    station_ids,
    wait_until,
)
from tests.worker.test_process import queue_counts, queue_with_dlq, send

pytestmark = pytest.mark.integration

STOPS = 5


def test_five_sigterms_during_one_signals_life_leave_the_dlq_empty_and_the_next_worker_runs_it(
    mosquitto, redis_server, moto, simulator_factory, tmp_path
):
    sqs = moto.client("sqs")
    queue_url, dlq_url = queue_with_dlq(sqs, max_receives=MAX_RECEIVE_COUNT, visibility_s=30)
    t0 = sim_clock_start()
    stations = station_ids(40)
    # 40 stations, 2 at a time at 150 ms a request: a cycle lasts seconds, long enough to stop it.
    sim = simulator_factory(stations=40, latency_ms=150, clock=clock_spec(t0))
    seed_cursors(redis_server.url, "test", stations, t0 - timedelta(seconds=3 * INTERVAL_S))
    env = base_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_server.url,
        source_url=sim.url,
        tmp_path=tmp_path,
        C2C_SIGNAL_URL=queue_url,
        C2C_CONCURRENCY="2",
        C2C_LOG_LEVEL="INFO",
        C2C_SQS_WAIT_S="2",
    )
    sent = send(sqs, queue_url)
    for attempt in range(STOPS):
        log = tmp_path / f"worker-{attempt}.log"
        proc = start_worker_process(env, log)
        try:
            wait_until(
                lambda log=log: "cycle starting" in log.read_text(), 40, interval=0.2, what=f"cycle {attempt} started"
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "cycle finished" in log.read_text()
        assert '"aborted": true' in log.read_text() or '"aborted":true' in log.read_text(), "stopped mid-cycle"
        assert queue_counts(sqs, dlq_url)[0] == 0, f"the signal reached the DLQ after {attempt + 1} stop(s)"
        # The copy is delayed until the stopping worker's own poll is over, then visible to the next one.
        wait_until(lambda: queue_counts(sqs, queue_url) == (1, 0), 15, interval=0.3, what="the signal given back")

    log = tmp_path / "worker-last.log"
    proc = start_worker_process(env, log)
    try:
        wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), 60, interval=0.3, what="the signal run and deleted")
        wait_until(lambda: "cycle finished" in log.read_text(), 10, what="the cycle's record")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert str(sent.id) in text, "the last worker ran the very signal the others gave back"
    assert '"aborted": false' in text or '"aborted":false' in text
    assert queue_counts(sqs, dlq_url)[0] == 0
