"""The worker as a real process (SIGTERM mid-cycle; two workers on one Redis)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from functions.common.signal import Command, Source, StartSignal
from tests.worker.conftest import (
    INTERVAL_S,
    REPO_ROOT,
    base_env,
    clock_spec,
    expected_ids,
    read_cursors,
    seed_cursors,
    sim_clock_start,
    start_worker_process,
    station_ids,
    wait_until,
)

pytestmark = pytest.mark.integration


def queue_with_dlq(sqs, name: str = "start", max_receives: int = 3, visibility_s: int = 30) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        },
    )["QueueUrl"]
    return url, dlq_url


def send(sqs, url: str, command: Command = Command.SYNC_NOW) -> StartSignal:
    signal_ = StartSignal(command=command, source=Source.SCHEDULE)
    sqs.send_message(QueueUrl=url, MessageBody=signal_.to_json())
    return signal_


def queue_counts(sqs, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def health(status_file) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "functions.sync_worker", "health", "--status-file", str(status_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode, proc.stdout.strip()


def test_sigterm_mid_cycle_exits_0_within_30s_and_a_restarted_worker_loses_nothing(
    mosquitto, redis_server, moto, simulator_factory, subscriber_factory, tmp_path
):
    sqs = moto.client("sqs")
    queue_url, _ = queue_with_dlq(sqs)
    t0 = sim_clock_start()
    stations = station_ids(120)
    sim = simulator_factory(stations=120, latency_ms=80, clock=clock_spec(t0))
    seed_cursors(redis_server.url, "test", stations, t0 - timedelta(seconds=5 * INTERVAL_S))
    sub = subscriber_factory(mosquitto.port)
    env = base_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_server.url,
        source_url=sim.url,
        tmp_path=tmp_path,
        C2C_SIGNAL_URL=queue_url,
        C2C_CONCURRENCY="4",
        C2C_LOG_LEVEL="INFO",
    )
    log = tmp_path / "worker.log"
    proc = start_worker_process(env, log)
    try:
        wait_until(lambda: health(tmp_path / "status.json")[0] == 0, 30, interval=0.3, what="healthy worker")
        send(sqs, queue_url)
        wait_until(lambda: sub.count() >= 100, 30, what="cycle under way")
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        elapsed = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()[-3000:]
    assert elapsed < 30
    text = log.read_text()
    assert "worker stopped" in text and "lease released" in text
    assert mosquitto.log_text().count("Client c2c-sync-test disconnected.") == 1  # a clean DISCONNECT
    assert sub.count() < 600, "the cycle was not interrupted; the test proves nothing"
    # Given back as a fresh copy, delayed until the stopped worker's own poll would have returned.
    wait_until(lambda: queue_counts(sqs, queue_url) == (1, 0), 15, what="the interrupted cycle's signal back")
    assert health(tmp_path / "status.json")[0] == 1

    restarted = start_worker_process(env, log)
    try:
        expected = expected_ids(stations, t0 - timedelta(seconds=5 * INTERVAL_S), t0)
        sub.wait_for_ids(len(expected), timeout=60)
        wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), 30, what="signal deleted after its cycle")
        assert set(sub.ids) == expected
        assert set(read_cursors(redis_server.url, "test").values()) == {t0.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(30) == 0
    finally:
        if restarted.poll() is None:
            restarted.kill()


def test_two_workers_on_one_redis_only_one_cycles_and_the_other_takes_over(
    mosquitto, redis_server, moto, simulator_factory, subscriber_factory, tmp_path
):
    sqs = moto.client("sqs")
    queue_url, _ = queue_with_dlq(sqs)
    t0 = sim_clock_start()
    stations = station_ids(20)
    sim = simulator_factory(stations=20, clock=clock_spec(t0))
    seed_cursors(redis_server.url, "test", stations, t0 - timedelta(seconds=2 * INTERVAL_S))
    sub = subscriber_factory(mosquitto.port)
    common = dict(
        mqtt_url=mosquitto.url,
        redis_url=redis_server.url,
        source_url=sim.url,
        C2C_SIGNAL_URL=queue_url,
        C2C_LOG_LEVEL="INFO",
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_a = base_env(tmp_path=tmp_path / "a", **common)
    env_b = base_env(tmp_path=tmp_path / "b", **common)
    a = start_worker_process(env_a, tmp_path / "a.log")
    b = None
    try:
        wait_until(lambda: health(tmp_path / "a" / "status.json")[0] == 0, 30, interval=0.3, what="A healthy")
        b = start_worker_process(env_b, tmp_path / "b.log")
        wait_until(lambda: "standing by" in (tmp_path / "b.log").read_text(), 30, what="B standing by")
        for _ in range(3):
            send(sqs, queue_url)
            sim.advance_clock(INTERVAL_S)
            time.sleep(0.5)
        expected = expected_ids(
            stations, t0 - timedelta(seconds=2 * INTERVAL_S), t0 + timedelta(seconds=2 * INTERVAL_S)
        )
        wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), 30, what="signals consumed")
        assert "cycle finished" in (tmp_path / "a.log").read_text()
        assert "cycle finished" not in (tmp_path / "b.log").read_text()
        assert mosquitto.connections_from("c2c-sync-test") == 1, "the standby worker connected to the broker"
        code, reason = health(tmp_path / "b" / "status.json")
        assert code == 1 and "standing by" in reason

        a.send_signal(signal.SIGTERM)
        assert a.wait(30) == 0
        wait_until(lambda: health(tmp_path / "b" / "status.json")[0] == 0, 30, interval=0.3, what="B took over")
        sim.advance_clock(INTERVAL_S)
        send(sqs, queue_url)
        wait_until(lambda: "cycle finished" in (tmp_path / "b.log").read_text(), 30, what="B cycles")
        sub.wait_for_ids(len(expected) + 20)
        assert mosquitto.connections_from("c2c-sync-test") == 2
        assert max(sub.ids.values()) == 1
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
