"""`c2c-sync status` against a real Redis holding a worker's state and a DLQ with messages in moto.

The state is written with the models of functions/common/state.py, the contract the worker writes.
"""

from __future__ import annotations

import json
import re
import statistics
from datetime import UTC, datetime, timedelta

import pytest
import redis

from functions.common.state import HEARTBEAT_STALE_AFTER_S, CycleRecord, Heartbeat, StateKeys
from tests.cli.conftest import ENV

pytestmark = pytest.mark.integration

#: station -> how far behind "now" its cursor is, in seconds
CURSOR_LAGS = {"st-a": 30, "st-b": 95, "st-c": 600, "st-d": 4000, "st-e": 180}
# The CLI reads the clock a little after the fixture wrote the state.
SLACK_S = 15


def write_worker_state(url: str, heartbeat_age_s: float | None) -> datetime:
    client = redis.Redis.from_url(url)
    keys = StateKeys.for_env(ENV)
    now = datetime.now(UTC)
    client.set(keys.lease, "worker-7f3a", px=30_000)
    client.set(keys.fencing_counter, 7)
    if heartbeat_age_s is not None:
        beat = Heartbeat(
            worker_id="worker-7f3a",
            fencing_token=7,
            at=now - timedelta(seconds=heartbeat_age_s),
            mqtt_connected=True,
            cycle_running=False,
            mode="per-signal",
        )
        client.set(keys.heartbeat, beat.model_dump_json(), ex=300)
    cycles = [  # oldest first; LPUSH makes the list newest first, as the worker keeps it
        CycleRecord(
            signal_id="s1",
            started_at=now - timedelta(minutes=9),
            finished_at=now - timedelta(minutes=8),
            duration_ms=61_000,
            stations_total=5,
            stations_synced=5,
            stations_failed=0,
            readings_published=120,
        ),
        CycleRecord(
            signal_id="s2",
            started_at=now - timedelta(minutes=6),
            finished_at=now - timedelta(minutes=5),
            duration_ms=45_500,
            stations_total=5,
            stations_synced=3,
            stations_failed=2,
            readings_published=80,
            errors_by_class={"transient": 1, "throttled": 1},
        ),
        CycleRecord(
            signal_id="s3",
            started_at=now - timedelta(minutes=3),
            finished_at=now - timedelta(minutes=2),
            duration_ms=30_250,
            stations_total=5,
            stations_synced=4,
            stations_failed=1,
            readings_published=95,
            errors_by_class={"transient": 1, "permanent": 0},
        ),
    ]
    for record in cycles:
        client.lpush(keys.history, record.model_dump_json())
    client.hset(
        keys.cursors,
        mapping={station: (now - timedelta(seconds=lag)).isoformat() for station, lag in CURSOR_LAGS.items()},
    )
    client.close()
    return now


@pytest.fixture
def dlq_with_two_messages(deployed):
    sqs = deployed.moto.client("sqs")
    for body in ("poison-1", "poison-2"):
        sqs.send_message(QueueUrl=deployed.dlq_url, MessageBody=body)
    return deployed


def status_json(cli, deployed, redis_url: str) -> dict:
    result = cli("status", "--env", ENV, "--json", "--redis-url", redis_url, *deployed.aws_args())
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_json_reports_lease_heartbeat_cycles_lag_and_dlq(dlq_with_two_messages, redis_server, cli):
    write_worker_state(redis_server.url, heartbeat_age_s=120)

    status = status_json(cli, dlq_with_two_messages, redis_server.url)

    assert set(status) == {"env", "generated_at", "redis", "lease", "heartbeat", "cycles", "cursors", "queues"}
    assert status["lease"]["holder"] == "worker-7f3a" and status["lease"]["fencing_token"] == 7
    assert 0 < status["lease"]["ttl_s"] <= 30
    beat = status["heartbeat"]
    assert beat["present"] is True and beat["stale"] is True and beat["stale_after_s"] == HEARTBEAT_STALE_AFTER_S
    assert 120 <= beat["age_s"] < 120 + SLACK_S and beat["worker_id"] == "worker-7f3a"
    cycles = status["cycles"]
    assert cycles["recorded"] == 3 and [c["signal_id"] for c in cycles["last"]] == ["s3", "s2", "s1"]
    assert cycles["errors_by_class"] == {"permanent": 0, "throttled": 1, "transient": 2}
    assert cycles["readings_published"] == 295 and cycles["last"][0]["duration_ms"] == 30_250
    lag = status["cursors"]
    assert lag["stations"] == 5 and lag["unreadable"] == []
    assert 30 <= lag["newest_lag_s"] < 30 + SLACK_S
    assert statistics.median(CURSOR_LAGS.values()) <= lag["median_lag_s"] < 180 + SLACK_S
    assert 4000 <= lag["oldest_lag_s"] < 4000 + SLACK_S
    assert [s["station"] for s in lag["worst"]] == ["st-d", "st-c", "st-e", "st-b", "st-a"]
    assert status["queues"]["dlq_depth"] == 2 and status["queues"]["start_queue_depth"] == 0


@pytest.mark.parametrize(
    "age, present, stale", [(10, True, False), (HEARTBEAT_STALE_AFTER_S + 30, True, True), (None, False, True)]
)
def test_heartbeat_staleness_follows_the_shared_threshold(deployed, redis_server, cli, age, present, stale):
    write_worker_state(redis_server.url, heartbeat_age_s=age)

    beat = status_json(cli, deployed, redis_server.url)["heartbeat"]

    assert (beat["present"], beat["stale"]) == (present, stale)


def test_status_table_is_readable(dlq_with_two_messages, redis_server, cli):
    write_worker_state(redis_server.url, heartbeat_age_s=120)

    result = cli(
        "status",
        "--env",
        ENV,
        "--cycles",
        "2",
        "--worst",
        "2",
        "--redis-url",
        redis_server.url,
        *dlq_with_two_messages.aws_args(),
    )

    assert result.exit_code == 0, result.output
    lines = {line.strip("│ ").split("│")[0].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "worker-7f3a" in lines["lease holder"]
    assert "7" in lines["fencing token"].split("│")[2]
    beat_age = re.search(r"(\d+)m (\d+)s ago", lines["heartbeat age"])
    assert beat_age, lines["heartbeat age"]
    assert 120 <= 60 * int(beat_age[1]) + int(beat_age[2]) < 120 + SLACK_S
    assert "STALE > 90s" in lines["heartbeat age"]
    assert lines["DLQ depth"].split("│")[2].strip() == "2"
    assert "last 2 of 3 cycles — errors: throttled 1, transient 2" in result.stdout
    newest = re.search(r"cursor lag over 5 stations — newest (\d+\.\d)s", result.stdout)
    assert newest, result.stdout
    assert 30 <= float(newest[1]) < 30 + SLACK_S
    assert "oldest 1h 06m" in result.stdout
    assert "st-d" in lines and "st-c" in lines and "st-e" not in lines  # --worst 2
