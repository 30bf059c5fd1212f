"""Helpers for the worker tests: an independent MQTT subscriber, an in-process worker, cursor seeding.

Clock recipe (deterministic readings): the simulator's clock is frozen an hour in the past
(`sim_clock()`), so every reading it serves lies before the worker's own "now"; cursors are seeded
a few reading intervals before that frozen time, so the first cycle publishes exactly that many
readings per station; advancing the simulator's clock by one interval makes exactly one new reading
per station appear for the next cycle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.common.state import CycleRecord, StateKeys, as_text
from functions.sync_worker.settings import WorkerSettings, load_settings
from functions.sync_worker.source.base import Reading
from functions.sync_worker.store import format_cursor
from functions.sync_worker.wiring import build_worker
from functions.sync_worker.worker import Worker
from tests.support.mqtt import MqttCapture

REPO_ROOT = Path(__file__).resolve().parents[2]
INTERVAL_S = 60
#: The readings' topics only: the generic profile also publishes plain-text `online`/`offline`
#: presence under c2c/{env}/status/, which is not a reading.


def sim_clock_start() -> datetime:
    """A minute boundary one hour ago: the simulator's frozen 'now'."""
    now = datetime.now(UTC) - timedelta(hours=1)
    return now.replace(second=0, microsecond=0)


def clock_spec(start: datetime) -> str:
    return start.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"


def station_ids(n: int) -> list[str]:
    return [f"site-{i:05d}" for i in range(1, n + 1)]


def seed_cursors(redis_url: str, env: str, stations: list[str], ts: datetime) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset(StateKeys.for_env(env).cursors, mapping={s: format_cursor(ts) for s in stations})


def read_cursors(redis_url: str, env: str) -> dict[str, str]:
    raw = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(StateKeys.for_env(env).cursors)
    return {as_text(station): as_text(cursor) for station, cursor in raw.items()}


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def subscriber_factory():
    subs: list[MqttCapture] = []

    def make(port: int, **kwargs) -> MqttCapture:
        kwargs.setdefault("persistent", True)
        sub = MqttCapture(port, **kwargs).start()
        subs.append(sub)
        return sub

    yield make
    for s in subs:
        s.stop()


def expected_ids(stations: list[str], after: datetime, upto: datetime) -> set[str]:
    """Message ids of readings with after < ts <= upto on the simulator's 60 s grid."""
    out = set()
    t = after + timedelta(seconds=INTERVAL_S)
    while t <= upto:
        for s in stations:
            out.add(Reading(s, t, {}).message_id)
        t += timedelta(seconds=INTERVAL_S)
    return out


def base_env(*, mqtt_url: str, redis_url: str, source_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "C2C_ENV": "test",
        "C2C_MQTT_URL": mqtt_url,
        "C2C_REDIS_URL": redis_url,
        "C2C_SOURCE_URL": source_url,
        "C2C_SOURCE_CONFIG": "simulator",
        "C2C_SOURCE_API_KEY": "sim-key",
        "C2C_MQTT_CLIENT_ID": "c2c-sync-test",
        "C2C_CONCURRENCY": "16",
        "C2C_PUBACK_TIMEOUT_S": "3",
        "C2C_MQTT_RECONNECT_MAX_S": "1",
        "C2C_STATUS_FILE": str(tmp_path / "status.json"),
        "C2C_LEASE_TTL_S": "3",
        "C2C_HEARTBEAT_INTERVAL_S": "1",
        "C2C_SQS_WAIT_S": "1",
        "C2C_LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    for key in list(os.environ):
        if key.startswith("C2C_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@dataclass
class RunningWorker:
    worker: Worker
    thread: threading.Thread
    result: list[int] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> int:
        self.worker.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        return self.result[0]

    def history(self):
        return self.worker.state.history()


@pytest.fixture
def worker_factory():
    """Start `Worker`s in threads of the test process; each is stopped after the test."""
    running: list[RunningWorker] = []

    def start(settings: WorkerSettings, **kwargs) -> RunningWorker:
        worker = build_worker(settings, **kwargs)
        rw = RunningWorker(worker, threading.Thread(target=lambda: None))
        rw.thread = threading.Thread(target=lambda: rw.result.append(worker.run()), daemon=True)
        rw.thread.start()
        running.append(rw)
        return rw

    yield start
    for rw in running:
        if rw.thread.is_alive():
            rw.worker.request_stop()
            rw.thread.join(30)


def publish_signal(redis_url: str, command: Command = Command.SYNC_NOW, **kw) -> StartSignal:
    signal = StartSignal(command=command, source=Source.CLI, **kw)
    receivers = redis.Redis.from_url(redis_url).publish(REDIS_SIGNAL_CHANNEL, signal.to_json())
    assert receivers == 1, "the worker is not subscribed"
    return signal


def wait_subscribed(redis_url: str) -> None:
    """Until the worker listens on the Redis signal channel (a PUBLISH before that is lost)."""
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: client.pubsub_numsub(REDIS_SIGNAL_CHANNEL)[0][1] >= 1, 15, what="worker subscription")


@dataclass
class SyncSetup:
    """A worker serving signals over a simulator whose cursors are seeded `backlog` readings back."""

    t0: datetime  # the simulator's frozen clock
    stations: list[str]
    since: datetime  # every station's cursor before the first cycle
    sim: object
    settings: WorkerSettings
    running: RunningWorker

    def expected(self, upto: datetime | None = None) -> set[str]:
        """Message ids of every station's readings after its starting cursor, up to `upto` (default t0)."""
        return expected_ids(self.stations, self.since, upto or self.t0)


@pytest.fixture
def sync_worker(redis_server, simulator_factory, worker_factory, tmp_path, monkeypatch):
    """The usual start of an end-to-end worker test, in one call: a simulator with `n_stations`
    frozen at `sim_clock_start()`, cursors of the first `seeded` stations (default: all) seeded
    `backlog` intervals before it, settings from `base_env` plus `env` (C2C_* overrides), the worker
    started in-process and waited for: subscribed to the Redis channel when C2C_SIGNAL_URL is
    `redis`, otherwise MQTT connected. Start the test's own subscriber before it."""

    def start(
        n_stations: int,
        *,
        mqtt_url: str,
        backlog: int,
        seeded: int | None = None,
        sim_options: dict | None = None,
        profile=None,
        **env: str,
    ) -> SyncSetup:
        t0 = sim_clock_start()
        sim = simulator_factory(stations=n_stations, clock=clock_spec(t0), **(sim_options or {}))
        since = t0 - timedelta(seconds=backlog * INTERVAL_S)
        seed_cursors(redis_server.url, "test", station_ids(seeded or n_stations), since)
        settings = settings_from(
            base_env(mqtt_url=mqtt_url, redis_url=redis_server.url, source_url=sim.url, tmp_path=tmp_path, **env),
            monkeypatch,
        )
        running = worker_factory(settings, **({"profile": profile} if profile is not None else {}))
        if env.get("C2C_SIGNAL_URL") == "redis":
            wait_subscribed(redis_server.url)
        else:
            wait_until(lambda: running.worker.uplink.connected, 15, what="worker connected")
        return SyncSetup(t0, station_ids(n_stations), since, sim, settings, running)

    return start


def start_worker_process(
    env: dict[str, str], log_path: Path, *args: str, clock_offset_s: float | None = None
) -> subprocess.Popen:
    """The worker CLI's `run` in a new process; `clock_offset_s` shifts its wall clock
    (tests/support/shifted_clock.py) to meet a vendor mock started as far from now."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("C2C_")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    shifted = [] if clock_offset_s is None else ["-m", "tests.support.shifted_clock", repr(clock_offset_s)]
    return subprocess.Popen(
        [
            sys.executable,
            *shifted,
            *(["functions.sync_worker"] if shifted else ["-m", "functions.sync_worker"]),
            "run",
            *args,
        ],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


def cycle_history(client: redis.Redis, keys: StateKeys) -> list[CycleRecord]:
    """The worker's run records in Redis, oldest first."""
    return [CycleRecord.model_validate_json(r) for r in client.lrange(keys.history, 0, -1)][::-1]


def run_worker_for_cycles(
    env: dict[str, str], cycles: int, log_path: Path, timeout: float = 120, clock_offset_s: float | None = None
) -> int:
    """Start a worker process, signal it, wait for `cycles` more run records, SIGTERM it (it must exit 0).
    Returns the index of its first record."""
    redis_url = env["C2C_REDIS_URL"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = StateKeys.for_env(env["C2C_ENV"])
    before = len(cycle_history(client, keys))
    proc = start_worker_process(env, log_path, clock_offset_s=clock_offset_s)
    try:
        wait_subscribed(redis_url)
        publish_signal(redis_url, Command.START_SYNC)
        wait_until(lambda: len(cycle_history(client, keys)) >= before + cycles, timeout, 0.2, what=f"{cycles} cycles")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()[-3000:]
    return before


def continuous_vendor_env(
    *, mqtt_url: str, redis_url: str, source_url: str, tmp_path: Path, config: str, interval_s: float, **extra: str
) -> dict[str, str]:
    """A worker reading vendor `config` in continuous mode every `interval_s`, signalled over Redis."""
    return base_env(
        mqtt_url=mqtt_url,
        redis_url=redis_url,
        source_url=source_url,
        tmp_path=tmp_path,
        C2C_SOURCE_CONFIG=config,
        C2C_MODE="continuous",
        C2C_INTERVAL_S=str(interval_s),
        C2C_CONCURRENCY="4",
        C2C_SIGNAL_URL="redis",
        **extra,
    )


def run_cycles_with_a_restart(
    env: dict[str, str], log_path: Path, cycles: int = 6, timeout: float = 180, clock_offset_s: float | None = None
) -> int:
    """`cycles` cycles in one worker process, then as many in a new one (from the state in Redis).
    Returns the index of the new process's first run record."""
    run_worker_for_cycles(env, cycles, log_path, timeout, clock_offset_s)
    return run_worker_for_cycles(env, cycles, log_path, timeout, clock_offset_s)
