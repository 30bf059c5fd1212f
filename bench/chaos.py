"""`make chaos`: the worker under fault injection, one scenario at a time, each with its own services,
its own independent MQTT subscriber and its own ground truth; one table at the end.

    .venv/bin/python bench/chaos.py [--only broker_kill,soak] [--soak-cycles 300] [--outages 10]

Everything is real: the worker runs as its own process (`python -m functions.sync_worker run`),
against redis-server, Mosquitto (persistence on, so a broker restart keeps what it acknowledged),
the vendor simulator, and moto's server for SQS and DynamoDB. Ground truth: the simulator's clock is
frozen and moved one reading interval per cycle, so every cycle adds exactly one reading per
station; the expected set is every (station, time) between the starting cursor and the last clock.
The subscriber is a plain paho client with a persistent session; a reading it never got is *lost*,
one it got twice is a *duplicate* (broker redeliveries of its own QoS 1 deliveries not counted).

Columns: lost, duplicates, broker connections per worker client id (from Mosquitto's own log),
reconnect times (worker's `mqtt connected` log line minus the moment the broker's port answered
again), the worker's RSS at its first and last cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3
import psutil
import redis

from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.common.state import StateKeys
from functions.sync_worker.store import format_cursor
from tests.support.mqtt import MqttCapture
from tests.support.services import MosquittoBroker, RedisServer, free_port, wait_for_port
from tests.support.simulator import SimulatorProcess

ENV = "chaos"
CLIENT_ID = "c2c-sync-chaos"
INTERVAL_S = 60
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass
class Row:
    scenario: str
    lost: int | str = "-"
    duplicates: int | str = "-"
    connections: str = "-"
    reconnect_s: str = "-"
    rss_mb: str = "-"
    notes: str = ""


@dataclass
class World:
    """One scenario's services, worker processes and subscriber."""

    tmp: Path
    stations: int = 20
    latency_ms: float = 5
    sim_options: dict[str, object] = field(default_factory=dict)
    transport: str = "redis"  # or "sqs"
    checkpoint: bool = True
    worker_env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    broker: MosquittoBroker | None = None
    sim: SimulatorProcess | None = None
    moto: subprocess.Popen | None = None
    moto_url: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    sub: MqttCapture | None = None
    workers: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)
    t0: datetime = field(
        default_factory=lambda: (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    )
    clock: datetime | None = None
    since: datetime | None = None

    # -- services ---------------------------------------------------------------------------

    def start(self, backlog: int = 1) -> World:
        (self.tmp / "redis").mkdir()
        self.redis = RedisServer(self.tmp / "redis").start()
        self.broker = MosquittoBroker(
            self.tmp / "mosquitto",
            extra_config=f"persistence true\npersistence_location {self.tmp / 'mosquitto'}/\nautosave_interval 1\n",
        ).start()
        self.sim = SimulatorProcess(
            stations=self.stations,
            latency_ms=self.latency_ms,
            clock=self.t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0",
            **self.sim_options,  # type: ignore[arg-type]  # SimulatorProcess's own keyword arguments
        ).start()
        self.clock = self.t0
        self.since = self.t0 - timedelta(seconds=backlog * INTERVAL_S)
        keys = StateKeys.for_env(ENV)
        redis.Redis.from_url(self.redis.url).hset(
            keys.cursors, mapping={s: format_cursor(self.since) for s in self.station_ids()}
        )
        if self.transport == "sqs" or self.checkpoint:
            self._start_moto()
        self.sub = MqttCapture(self.broker.port, client_id=f"chaos-subscriber-{os.getpid()}", persistent=True)
        self.sub.client.reconnect_delay_set(min_delay=1, max_delay=1)  # our own reconnects must not lose time
        self.sub.start()
        return self

    def _start_moto(self) -> None:
        port = free_port()
        self.moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, timeout=30)
        self.moto_url = f"http://127.0.0.1:{port}"
        if self.checkpoint:
            self.aws("dynamodb").create_table(
                TableName="cursors",
                KeySchema=[{"AttributeName": "env", "KeyType": "HASH"}, {"AttributeName": "shard", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "env", "AttributeType": "S"},
                    {"AttributeName": "shard", "AttributeType": "N"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        if self.transport == "sqs":
            sqs = self.aws("sqs")
            self.dlq_url = sqs.create_queue(QueueName="start-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.queue_url = sqs.create_queue(
                QueueName="start",
                Attributes={
                    "VisibilityTimeout": "120",
                    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}),
                },
            )["QueueUrl"]

    def aws(self, service: Any) -> Any:  # boto3's overloads want a literal service name
        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name="eu-west-1",
            aws_access_key_id="chaos",
            aws_secret_access_key="chaos",
        )

    def station_ids(self) -> list[str]:
        return [f"site-{i:05d}" for i in range(1, self.stations + 1)]

    # -- the worker ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.redis and self.broker and self.sim
        env = {k: v for k, v in os.environ.items() if not k.startswith("C2C_")}
        env.update(
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",  # log lines reach the file as written: the bench counts cycles in them
            AWS_ACCESS_KEY_ID="chaos",
            AWS_SECRET_ACCESS_KEY="chaos",
            AWS_REGION="eu-west-1",
            AWS_DEFAULT_REGION="eu-west-1",
            C2C_ENV=ENV,
            C2C_MQTT_URL=self.broker.url,
            C2C_MQTT_CLIENT_ID=CLIENT_ID,
            C2C_REDIS_URL=self.redis.url,
            C2C_SOURCE_URL=self.sim.url,
            C2C_SOURCE_CONFIG="simulator",
            C2C_SOURCE_API_KEY="sim-key",
            C2C_SIGNAL_URL=self.queue_url if self.transport == "sqs" else "redis",
            C2C_CONCURRENCY="8",
            C2C_PUBACK_TIMEOUT_S="5",
            C2C_LEASE_TTL_S="10",  # shorter than the 30 s default so a SIGKILL'd holder's lease expires sooner
            C2C_HEARTBEAT_INTERVAL_S="2",
            C2C_SQS_WAIT_S="5",
            C2C_BACKFILL_WINDOW_S=str(6 * 3600),
            C2C_LOG_LEVEL="INFO",
            C2C_STATUS_FILE=str(self.tmp / f"status-{len(self.workers)}.json"),
        )
        if self.moto_url:
            env["AWS_ENDPOINT_URL_SQS"] = self.moto_url
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.moto_url
        if self.checkpoint:
            env["C2C_CHECKPOINT_TABLE"] = "cursors"
        env.update(self.worker_env)
        return env

    def start_worker(self) -> subprocess.Popen:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "functions.sync_worker", "run"],
            cwd=ROOT,
            env=self.env(),
            stdout=open(log, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        self.workers.append((proc, log))
        return proc

    def log_lines(self, index: int = -1) -> list[dict]:
        out = []
        for line in self.workers[index][1].read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def count(self, message: str, index: int | None = None) -> int:
        indexes = range(len(self.workers)) if index is None else [index]
        return sum(1 for i in indexes for rec in self.log_lines(i) if rec.get("message") == message)

    def more_than(self, message: str, n: int) -> Callable[[], bool]:
        return lambda: self.count(message) > n

    def received_more_than(self, n: int) -> Callable[[], bool]:
        assert self.sub is not None
        sub = self.sub
        return lambda: sub.count() > n

    def wait_serving(self, index: int = -1, timeout: float = 60) -> None:
        wait(
            lambda: any(r.get("message") == "worker serving" for r in self.log_lines(index)), timeout, "worker serving"
        )
        if self.transport == "redis":
            client = redis.Redis.from_url(self.redis.url)  # type: ignore[union-attr]  # World.start() set it
            wait(lambda: client.pubsub_numsub(REDIS_SIGNAL_CHANNEL)[0][1] >= 1, timeout, "subscribed")

    def signal(self, command: Command = Command.SYNC_NOW) -> StartSignal:
        sig = StartSignal(command=command, source=Source.CLI)
        if self.transport == "sqs":
            self.aws("sqs").send_message(QueueUrl=self.queue_url, MessageBody=sig.to_json())
        else:
            redis.Redis.from_url(self.redis.url).publish(REDIS_SIGNAL_CHANNEL, sig.to_json())  # type: ignore[union-attr]  # World.start() set it
        return sig

    def advance(self) -> None:
        """One new reading per station for the next cycle."""
        assert self.sim and self.clock
        self.sim.advance_clock(INTERVAL_S)
        self.clock += timedelta(seconds=INTERVAL_S)

    def cycle(self, timeout: float = 120) -> None:
        """Advance the clock, signal, wait until a cycle that started after the signal finished."""
        self.advance()
        done = self.count("cycle finished")
        self.signal()
        wait(lambda: self.count("cycle finished") > done, timeout, "cycle finished")

    def deliver_all(self, timeout: float = 180) -> None:
        """Signal cycles until the subscriber has every expected reading (or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.missing():
            done = self.count("cycle finished")
            self.signal()
            wait(self.more_than("cycle finished", done), max(1, deadline - time.monotonic()), "cycle")
            time.sleep(0.5)

    # -- ground truth ---------------------------------------------------------------------------

    def expected(self) -> set[tuple[str, str]]:
        assert self.since and self.clock
        out: set[tuple[str, str]] = set()
        t = self.since + timedelta(seconds=INTERVAL_S)
        while t <= self.clock:
            out.update((s, t.strftime(TS_FORMAT)) for s in self.station_ids())
            t += timedelta(seconds=INTERVAL_S)
        return out

    def received(self) -> dict[tuple[str, str], int]:
        assert self.sub
        got: dict[tuple[str, str], int] = {}
        with self.sub._lock:
            payloads = list(self.sub.payloads)
            redelivered = sum(self.sub.redeliveries.values())
        for p in payloads:
            key = (str(p.get("station_id")), str(p.get("ts")))
            got[key] = got.get(key, 0) + 1
        got[("__redeliveries__", "")] = redelivered
        return got

    def missing(self) -> int:
        got = self.received()
        return len(self.expected() - got.keys())

    def tally(self) -> tuple[int, int]:
        got = self.received()
        redeliveries = got.pop(("__redeliveries__", ""))
        lost = len(self.expected() - got.keys())
        duplicates = sum(n - 1 for n in got.values() if n > 1) - redeliveries
        return lost, max(0, duplicates)

    def row(self, scenario: str, rss_start: float, proc: subprocess.Popen, notes: str, reconnect: str = "-") -> Row:
        """The table row of a finished scenario: the tally against the ground truth, the broker's
        count of this client id's connections, and the worker's RSS then and now."""
        lost, duplicates = self.tally()
        rss = f"{rss_start:.0f} / {self.rss(proc):.0f}"
        return Row(scenario, lost, duplicates, self.connections(), reconnect, rss, notes)

    def dlq_depth(self) -> int:
        attrs = self.aws("sqs").get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    def queue_depth(self) -> int:
        """Messages in the start queue, visible, in flight or delayed."""
        attrs = self.aws("sqs").get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        kinds = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        return sum(int(attrs.get(k, 0)) for k in kinds)

    def connections(self) -> str:
        assert self.broker
        return str(self.broker.connections_from(CLIENT_ID))

    def rss(self, proc: subprocess.Popen) -> float:
        try:
            return psutil.Process(proc.pid).memory_info().rss / 1e6
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.workers:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.sub:
            self.sub.stop()
        for part in (self.sim, self.broker, self.redis):
            if part is not None:
                part.stop()
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait(10)


def wait(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def log_time(record: dict) -> float:
    """Powertools' `timestamp` (e.g. `2026-12-02 01:19:13,123+0000`) as epoch seconds."""
    return datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p95 = statistics.median(values), percentile(values, 0.95)
    return f"p50 {p50:.2f} / p95 {p95:.2f} / max {max(values):.2f} (n={len(values)})"


# -- scenarios ------------------------------------------------------------------------------------


def broker_kill(tmp: Path, outages: int) -> Row:
    """Outages of 10-20 s mid-cycle; the broker stops with SIGTERM (it saves its persistence file)."""
    world = World(tmp, stations=30, latency_ms=20).start()
    rng = random.Random(7)
    try:
        proc = world.start_worker()
        world.wait_serving()
        world.cycle()
        rss_start = world.rss(proc)
        back_at: list[float] = []
        for _ in range(outages):
            world.advance()
            published = world.sub.count()  # type: ignore[union-attr]  # World.start() set it
            world.signal()
            wait(world.received_more_than(published), 30, "cycle under way")
            world.broker.stop()  # type: ignore[union-attr]  # World.start() set it
            time.sleep(rng.uniform(10, 20))
            world.broker.start()  # type: ignore[union-attr]  # World.start() set it
            back_at.append(time.time())
            outages_so_far = len(back_at)
            wait(world.more_than("mqtt connected", outages_so_far), 60, "reconnect")
            time.sleep(1)
        world.deliver_all()
        connected = [log_time(r) for r in world.log_lines() if r.get("message") == "mqtt connected"][1:]
        reconnects = [c - b for b, c in zip(back_at, connected, strict=False)]
        return world.row(
            f"broker kill x{outages} (10-20 s each)",
            rss_start,
            proc,
            "broker persistence on; SIGTERM'd broker",
            reconnect=seconds(reconnects),
        )
    finally:
        world.stop()


def redis_empty_restart(tmp: Path) -> Row:
    """Redis killed mid-cycle and started again empty; cursors come back from the DynamoDB checkpoint."""
    world = World(tmp, stations=200, latency_ms=30).start(backlog=1)
    try:
        proc = world.start_worker()
        world.wait_serving()
        world.cycle()
        rss_start = world.rss(proc)
        world.cycle()
        received_before = world.sub.count()  # type: ignore[union-attr]  # World.start() set it
        world.advance()
        world.signal()
        wait(world.received_more_than(received_before + 20), 30, "cycle under way")
        world.redis.stop()  # type: ignore[union-attr]  # World.start() set it
        time.sleep(2)
        world.redis.start()  # type: ignore[union-attr]  # the same port, empty: no persistence
        world.wait_serving()
        for _ in range(3):
            world.cycle()
        world.deliver_all()
        return world.row(
            "redis kill, empty restart",
            rss_start,
            proc,
            f"one cycle = {world.stations} readings; restored from checkpoint: "
            f"{world.count('cursors restored from the checkpoint')}",
        )
    finally:
        world.stop()


def vendor_chaos(tmp: Path) -> Row:
    options: dict[str, object] = {
        "error_rate": 0.05,
        "timeout_rate": 0.02,
        "malformed_rate": 0.03,
        "throttle_rate": 0.05,
        "timeout_s": 3,
    }
    world = World(tmp, stations=50, latency_ms=10, sim_options=options).start()
    try:
        proc = world.start_worker()
        world.wait_serving()
        world.cycle()
        rss_start = world.rss(proc)
        for _ in range(8):
            world.cycle()
        world.sim.clear_faults()  # type: ignore[union-attr]  # World.start() set it
        world.deliver_all()
        return world.row(
            "vendor chaos (5% 503, 2% timeout, 3% bad JSON, 5% 429) x 9 cycles",
            rss_start,
            proc,
            "faults cleared for the catch-up cycle",
        )
    finally:
        world.stop()


def stop_mid_cycle(tmp: Path, how: signal.Signals) -> Row:
    world = World(tmp, stations=120, latency_ms=60, transport="sqs").start(backlog=5)
    try:
        proc = world.start_worker()
        world.wait_serving()
        rss_start = world.rss(proc)
        world.signal()
        wait(lambda: world.sub.count() > 100, 60, "cycle under way")  # type: ignore[union-attr]  # World.start() set it
        proc.send_signal(how)
        proc.wait(60)
        successor = world.start_worker()
        world.wait_serving()
        world.deliver_all()
        dlq = world.dlq_depth()
        return world.row(
            f"{how.name} mid-cycle (SQS)",
            rss_start,
            successor,
            f"exit {proc.returncode}; DLQ {dlq}",
        )
    finally:
        world.stop()


def signal_storm(tmp: Path) -> Row:
    world = World(tmp, stations=50, latency_ms=20).start()
    try:
        proc = world.start_worker()
        world.wait_serving()
        rss_start = world.rss(proc)
        world.advance()
        for _ in range(100):
            world.signal()
        wait(lambda: world.count("cycle finished") >= 1, 60, "a cycle")
        time.sleep(5)
        cycles = world.count("cycle finished")
        world.deliver_all()
        return world.row(
            "100-signal storm",
            rss_start,
            proc,
            f"{cycles} cycles for 100 signals",
        )
    finally:
        world.stop()


def poison(tmp: Path, transport: str, count: int = 200) -> Row:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.support.signal_bodies import poison_bytes, poison_text

    drawn: list[list] = []
    strategy = poison_text(huge_max=100_000) if transport == "sqs" else poison_bytes()

    @settings(max_examples=1, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=count, max_size=count))
    def draw(bodies: list) -> None:
        drawn.append(bodies)

    draw()
    bodies = drawn[-1]
    world = World(tmp, stations=10, transport=transport).start()
    try:
        proc = world.start_worker()
        world.wait_serving()
        rss_start = world.rss(proc)
        valid: list[str] = []
        for i, body in enumerate(bodies):
            if transport == "sqs":
                world.aws("sqs").send_message(QueueUrl=world.queue_url, MessageBody=body)
            else:
                redis.Redis.from_url(world.redis.url).publish(REDIS_SIGNAL_CHANNEL, body)  # type: ignore[union-attr]  # World.start() set it
            if i % 20 == 19:
                world.advance()
                valid.append(str(world.signal().id))
        world.deliver_all()
        if transport == "sqs":  # every poison body in the DLQ, every valid signal run and deleted
            wait(lambda: world.dlq_depth() >= count, 180, "poison in the DLQ", interval=1)
            wait(lambda: world.queue_depth() == 0, 60, "the start queue empty", interval=1)
        received = {
            r.get("signal_id")
            for i in range(len(world.workers))
            for r in world.log_lines(i)
            if r.get("message") == "signal received"
        }
        rejected = {
            (r.get("sqs_message_id") or i)
            for i, r in enumerate(world.log_lines())
            if r.get("message") == "rejected malformed signal"
        }
        alive = proc.poll() is None
        return world.row(
            f"{count} poison signals ({transport})",
            rss_start,
            proc,
            f"rejected {len(rejected)}/{count}; valid served {len(set(valid) & received)}/{len(valid)}; "
            f"worker {'alive' if alive else 'DEAD'}",
        )
    finally:
        world.stop()


def two_workers(tmp: Path) -> Row:
    world = World(tmp, stations=60, latency_ms=30).start()
    try:
        first = world.start_worker()
        world.wait_serving(0)
        second = world.start_worker()
        time.sleep(3)
        world.cycle()
        rss_start = world.rss(first)
        served_by_first = world.count("worker serving", 0)
        standby = world.count("worker serving", 1) == 0
        world.advance()
        published = world.sub.count()  # type: ignore[union-attr]  # World.start() set it
        world.signal()
        wait(lambda: world.sub.count() > published + 10, 30, "cycle under way")  # type: ignore[union-attr]  # World.start() set it
        first.kill()  # the holder dies without releasing the lease: the standby takes over after its TTL
        wait(lambda: world.count("worker serving", 1) >= 1, 60, "the standby takes over")
        world.deliver_all()
        return world.row(
            "two workers, one identity (holder SIGKILLed)",
            rss_start,
            second,
            f"standby idle while the first served: {standby and served_by_first == 1}",
        )
    finally:
        world.stop()


def soak(tmp: Path, cycles: int) -> Row:
    # Each cycle moves the simulator's clock a minute: start it far enough back that the last
    # cycle's readings still lie before the worker's own now (readings after it are not fetched yet).
    start = (datetime.now(UTC) - timedelta(minutes=cycles + 30)).replace(second=0, microsecond=0)
    world = World(tmp, stations=20, latency_ms=2, t0=start).start()
    try:
        proc = world.start_worker()
        world.wait_serving()
        world.cycle()
        rss_start = world.rss(proc)
        for _ in range(cycles - 1):
            world.cycle()
        ran = world.count("cycle finished")
        world.deliver_all()  # only signals more cycles if a reading is still missing
        return world.row(
            f"{cycles}-cycle soak",
            rss_start,
            proc,
            f"{ran} cycles, {world.count('cycle finished') - ran} catch-up cycles",
        )
    finally:
        world.stop()


def fuzz(examples: int) -> Row:
    """The in-process fuzz of tests/worker/test_signal_fuzz.py at `examples` x 10 bodies per path."""
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/worker/test_signal_fuzz.py",
            "-k",
            "path",
        ],
        cwd=ROOT,
        env={**os.environ, "C2C_FUZZ_EXAMPLES": str(examples)},
        capture_output=True,
        text=True,
    )
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else result.stderr[-200:]
    errors = [line for line in lines if line.startswith(("E ", "FAILED"))]
    if errors:  # what failed, in the table itself
        summary += " | " + " / ".join(errors[:3])[:400]
    return Row(
        f"fuzz: {examples * 10 * 2:,} bodies (SQS receive path, Redis receive path)",
        notes=f"{summary}; {time.monotonic() - started:.0f} s; exit {result.returncode}",
    )


SCENARIOS: dict[str, Callable[[Path, argparse.Namespace], Row]] = {
    "broker_kill": lambda tmp, a: broker_kill(tmp, a.outages),
    "redis_empty": lambda tmp, a: redis_empty_restart(tmp),
    "vendor_chaos": lambda tmp, a: vendor_chaos(tmp),
    "sigterm": lambda tmp, a: stop_mid_cycle(tmp, signal.SIGTERM),
    "sigkill": lambda tmp, a: stop_mid_cycle(tmp, signal.SIGKILL),
    "storm": lambda tmp, a: signal_storm(tmp),
    "poison_sqs": lambda tmp, a: poison(tmp, "sqs"),
    "poison_redis": lambda tmp, a: poison(tmp, "redis"),
    "two_workers": lambda tmp, a: two_workers(tmp),
    "soak": lambda tmp, a: soak(tmp, a.soak_cycles),
    "fuzz": lambda tmp, a: fuzz(a.fuzz_examples),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--outages", type=int, default=10)
    parser.add_argument("--soak-cycles", type=int, default=300)
    parser.add_argument("--fuzz-examples", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (worker logs)")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    rows: list[Row] = []
    for name in chosen:
        started = time.monotonic()
        prefix = f"chaos-{name}-"
        place = (
            nullcontext(tempfile.mkdtemp(prefix=prefix)) if args.keep else tempfile.TemporaryDirectory(prefix=prefix)
        )
        with place as tmp:
            try:
                row = SCENARIOS[name](Path(tmp), args)
            except Exception as exc:
                row = Row(name, notes=f"FAILED: {type(exc).__name__}: {exc}")
            if args.keep:
                print(f"{name}: logs kept in {tmp}", file=sys.stderr)
        row.notes = f"{row.notes}; {time.monotonic() - started:.0f} s".lstrip("; ")
        rows.append(row)
        print(f"done: {row}", file=sys.stderr, flush=True)
    print(
        "| scenario | lost | duplicates | broker connections (client id) "
        "| reconnect after the broker is back (s) | RSS start / end (MB) | notes |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.lost} | {r.duplicates} | {r.connections} | {r.reconnect_s} | {r.rss_mb} | {r.notes} |"
        )
    failed = any((isinstance(r.lost, int) and r.lost > 0) or "FAILED" in r.notes for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
