"""The local world the demo runs against: Redis, the MQTT broker, moto's server and the vendor API
(the simulator, or a vendor mock with `--vendor`), started here on free ports (each stopped by the
teardown) or external ones (MQTT_URL, REDIS_URL), and the clients the orchestration (run.py) uses on
them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import redis

from c2c_sync.demo import topology
from c2c_sync.demo.lifecycle import Teardown
from c2c_sync.demo.observer import DemoObserver
from c2c_sync.demo.options import DemoOptions
from c2c_sync.demo.services import DEFAULT_API_KEY, MosquittoBroker, MotoProcess, RedisServer, SimulatorService
from c2c_sync.demo.vendors import MockVendor
from functions.common.state import StateKeys

#: How far in the past the simulator's clock starts: within the worker's default 24 h backfill
#: window, and far enough that an accelerated clock stays behind real time for hours.
BASELINE_AGE = timedelta(hours=12)
SIMULATOR_API_KEY = DEFAULT_API_KEY
#: The vendor config's read timeout is 10 s; a simulated timeout must outlast it to be one.
SIMULATED_TIMEOUT_S = 11.0


@dataclass(frozen=True)
class LocalServices:
    """The services the demo runs against: started here, or external ones (MQTT_URL, REDIS_URL)."""

    redis_url: str
    redis_password: str | None
    mqtt_url: str
    #: None when the broker is external (no log to count its connections from).
    broker: MosquittoBroker | None
    moto: MotoProcess
    #: Exactly one of the two: the simulator (the default) or a vendor mock (`--vendor`).
    simulator: SimulatorService | None
    mock: MockVendor | None
    #: Where the simulator's clock starts; every cursor is set to it before the worker runs.
    baseline: datetime


def start_services(opts: DemoOptions, display: DemoObserver, workdir: Path, teardown: Teardown) -> LocalServices:
    redis_password: str | None = None
    if opts.redis_url:
        parts = urlsplit(opts.redis_url)
        redis_password = parts.password
        netloc = f"{parts.hostname}:{parts.port or 6379}"
        redis_url = f"{parts.scheme}://{netloc}{parts.path or '/0'}"
        display.step(f"Redis: external {redis_url} (REDIS_URL)")
    else:
        (workdir / "redis").mkdir(exist_ok=True)
        server = RedisServer(workdir / "redis", die_with_parent=True).start()
        teardown.push("redis-server", server.stop)
        redis_url = server.url
        display.step(f"redis-server on 127.0.0.1:{server.port}")
    broker: MosquittoBroker | None = None
    if opts.mqtt_url:
        mqtt_url = opts.mqtt_url
        display.step(f"MQTT broker: external {opts.mqtt_url} (MQTT_URL)")
    else:
        broker = MosquittoBroker(workdir / "mosquitto", die_with_parent=True).start()
        teardown.push("mosquitto", broker.stop)
        mqtt_url = broker.url
        display.step(f"mosquitto on 127.0.0.1:{broker.port}")
    moto = MotoProcess(workdir / "moto", die_with_parent=True).start()
    teardown.push("moto server", moto.stop)
    display.step(f"moto server (SNS, SQS, KMS) on {moto.url}")
    if opts.vendor != "simulator":
        mock = MockVendor(opts.vendor, opts.stations, opts.interval_s, workdir / "vendor").start()
        teardown.push(f"{opts.vendor} mock", mock.stop)
        display.step(mock.describe())
        return LocalServices(redis_url, redis_password, mqtt_url, broker, moto, None, mock, mock.baseline())
    start = (datetime.now(UTC) - BASELINE_AGE).replace(second=0, microsecond=0)
    simulator = SimulatorService(
        workdir=workdir / "simulator",
        stations=opts.stations,
        api_key=SIMULATOR_API_KEY,
        clock=f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}@{opts.speed:g}",
        latency_ms=opts.latency_ms,
        error_rate=opts.error_rate,
        timeout_rate=opts.timeout_rate,
        throttle_rate=opts.throttle_rate,
        timeout_s=SIMULATED_TIMEOUT_S,
        die_with_parent=True,
    ).start()
    teardown.push("vendor simulator", simulator.stop)
    display.step(
        f"vendor simulator on {simulator.url}: {opts.stations} stations, latency {opts.latency_ms:g} ms, "
        f"faults error {opts.error_rate:g} / timeout {opts.timeout_rate:g} / throttle {opts.throttle_rate:g}, "
        f"clock ×{opts.speed:g}"
    )
    return LocalServices(redis_url, redis_password, mqtt_url, broker, moto, simulator, None, start)


def connect_state(services: LocalServices, keys: StateKeys, teardown: Teardown) -> redis.Redis:
    state = redis.Redis.from_url(
        services.redis_url,
        password=services.redis_password,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
    )

    def delete_demo_keys() -> None:
        # Every key of the run's prefix: cursors of each endpoint, budgets, digests, history, lease.
        names = list(state.scan_iter(match=f"{keys.prefix}:*", count=1000))
        if names:
            state.delete(*names)

    teardown.push("demo keys in Redis", delete_demo_keys)
    state.ping()
    return state


def moto_clients(endpoint_url: str) -> Callable[[str], Any]:
    """boto3 clients against moto's server, one per service name (named at run time, so untyped)."""
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(  # type: ignore[call-overload]  # the stubs type literal names only
                service,
                endpoint_url=endpoint_url,
                region_name=topology.REGION,
                aws_access_key_id="demo",
                aws_secret_access_key="demo",
            )
        return cache[service]

    return client
