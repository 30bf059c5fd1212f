"""Malformed signals (worker keeps running, message left to the DLQ) and invalid config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from functions.common.signal import Command, Source, StartSignal
from functions.sync_worker.cli import main
from tests.worker.conftest import (
    INTERVAL_S,
    REPO_ROOT,
    base_env,
    clock_spec,
    seed_cursors,
    settings_from,
    sim_clock_start,
    station_ids,
    wait_until,
)
from tests.worker.test_process import queue_counts, queue_with_dlq


@pytest.mark.integration
def test_malformed_signals_are_rejected_counted_and_end_in_the_dlq_while_the_worker_keeps_running(
    mosquitto, redis_server, moto, simulator_factory, worker_factory, tmp_path, monkeypatch, caplog
):
    sqs = moto.client("sqs")
    queue_url, dlq_url = queue_with_dlq(sqs, max_receives=2, visibility_s=1)
    t0 = sim_clock_start()
    sim = simulator_factory(stations=5, clock=clock_spec(t0))
    seed_cursors(redis_server.url, "test", station_ids(5), t0 - timedelta(seconds=INTERVAL_S))
    settings = settings_from(
        base_env(
            mqtt_url=mosquitto.url,
            redis_url=redis_server.url,
            source_url=sim.url,
            tmp_path=tmp_path,
            C2C_SIGNAL_URL=queue_url,
            C2C_LOG_LEVEL="INFO",
            C2C_SQS_REJECT_VISIBILITY_S="0",
        ),
        monkeypatch,
    )
    running = worker_factory(settings)
    wait_until(lambda: running.worker.uplink.connected, 15, what="worker connected")

    poison = [
        '{"v": 1, "command": "explode", "source": "cli"}',
        "not json at all",
        '{"v": 2, "command": "sync_now", "source": "cli"}',
    ]
    for body in poison:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    sqs.send_message(QueueUrl=queue_url, MessageBody=StartSignal(command=Command.SYNC_NOW, source=Source.CLI).to_json())

    wait_until(lambda: len(running.history()) == 1, 30, what="the valid signal's cycle")
    wait_until(lambda: queue_counts(sqs, dlq_url)[0] == 3, 30, interval=0.3, what="poison messages in the DLQ")
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(poison), "the DLQ holds the poison messages, unaltered"
    assert queue_counts(sqs, queue_url) == (0, 0)
    assert running.thread.is_alive() and running.worker.lease.held

    # The valid signal still works after the poison ones.
    sqs.send_message(QueueUrl=queue_url, MessageBody=StartSignal(command=Command.SYNC_NOW, source=Source.CLI).to_json())
    wait_until(lambda: len(running.history()) == 2, 30, what="a second cycle")
    assert running.stop() == 0
    reasons = {r.reason for r in caplog.records if r.getMessage() == "rejected malformed signal"}
    assert any(r.startswith("command: Input should be 'start_sync'") for r in reasons)  # the reason is logged
    assert "v: Input should be 1" in reasons and any(r.startswith("body: Invalid JSON") for r in reasons)
    # 3 messages x 2 receives each before the redrive; every rejection emits SignalsRejected.
    assert running.worker.telemetry.signals_rejected == 6


def test_invalid_config_refuses_to_start_and_names_the_field(monkeypatch, capsys):
    monkeypatch.setenv("C2C_CONCURRENCY", "0")
    monkeypatch.setenv("C2C_MQTT_URL", "http://broker:1883")
    assert main(["validate-config"]) == 2
    err = capsys.readouterr().err
    assert "C2C_CONCURRENCY" in err and "greater than or equal to 1" in err
    assert "C2C_MQTT_URL" in err and "mqtt://" in err


@pytest.mark.integration  # starts the worker CLI as a process
def test_invalid_config_refuses_to_start_the_run_command(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "C2C_MODE": "sometimes",
        "C2C_STATUS_FILE": str(tmp_path / "s.json"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "functions.sync_worker", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "C2C_MODE" in proc.stderr and "per-signal" in proc.stderr
    assert not (tmp_path / "s.json").exists(), "it must refuse before starting anything"


def test_cli_flag_overrides_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("C2C_CONCURRENCY", "0")  # bad in the environment, fixed by the flag
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "super-secret")
    assert main(["validate-config", "--concurrency", "7", "--mqtt-url", "mqtts://broker.example:8883"]) == 0
    out = capsys.readouterr().out
    assert '"concurrency": 7' in out and "mqtts://broker.example:8883" in out
    assert "super-secret" not in out, "secrets are masked"


def test_validate_config_masks_passwords_written_into_urls(monkeypatch, capsys):
    monkeypatch.setenv("C2C_REDIS_URL", "rediss://:s3cret-redis@cache.example:6379/0")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://gateway:s3cret-mqtt@broker.example:8883")
    monkeypatch.setenv("C2C_SOURCE_URL", "https://api-user:s3cret-api@vendor.example/v1")
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "vendor-key")
    assert main(["validate-config"]) == 0
    printed = json.loads(capsys.readouterr().out)["settings"]
    assert "s3cret" not in json.dumps(printed), "a password in a URL was printed"
    assert printed["redis_url"] == "rediss://:**********@cache.example:6379/0"
    assert printed["mqtt_url"] == "mqtts://gateway:**********@broker.example:8883"
    assert printed["source_url"] == "https://api-user:**********@vendor.example/v1"


def test_plaintext_mqtt_to_a_remote_broker_needs_the_explicit_insecure_flag(monkeypatch, capsys):
    monkeypatch.setenv("C2C_MQTT_URL", "mqtt://broker.example:1883")
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "vendor-key")
    assert main(["validate-config"]) == 2
    assert "C2C_MQTT_URL" in capsys.readouterr().err
    assert main(["validate-config", "--mqtt-insecure"]) == 0


@pytest.mark.integration
def test_dry_run_prints_each_message_where_it_would_go_and_writes_nothing(
    simulator_factory, tmp_path, monkeypatch, capsys
):
    t0 = sim_clock_start()
    sim = simulator_factory(stations=3, clock=clock_spec(t0))
    for key in [k for k in os.environ if k.startswith("C2C_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "sim-key")
    # No Redis or broker is running: a dry run needs neither (no cursors: it starts at the backfill
    # window, which reaches ~3-4 readings behind the simulator's clock, frozen an hour ago).
    code = main(
        [
            "run",
            "--dry-run",
            "--env",
            "test",
            "--source-url",
            sim.url,
            "--backfill-window-s",
            "3800",
            "--stations",
            "site-00001,site-00002",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in captured.out.splitlines()]
    per_station = Counter(line["payload"]["station_id"] for line in lines)
    assert set(per_station) == {"site-00001", "site-00002"} and per_station["site-00001"] == per_station["site-00002"]
    assert per_station["site-00001"] >= 3
    assert all(line["topic"] == f"c2c/test/stations/{line['payload']['station_id']}/telemetry" for line in lines)
    assert json.loads(captured.err.splitlines()[-1])["dry_run_summary"]["readings_published"] == len(lines)
