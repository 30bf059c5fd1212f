"""Shared parts of the source tests: one simulator per module where tests can share it, and the
simulator's vendor config with retry/timeout settings shrunk so fault tests stay fast."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource, load_vendor_config
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.profile import OutboundMessage
from tests.support.simulator import DEFAULT_API_KEY, FROZEN_NOW, SimulatorProcess

NOW = datetime.fromisoformat(FROZEN_NOW.replace("Z", "+00:00"))

FAST_HTTP: dict[str, Any] = {
    "connect_timeout_s": 1.0,
    "read_timeout_s": 2.0,
    "retries": {
        "attempts": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "jitter_s": 0.05,
        "max_retry_after_s": 5,
        "max_elapsed_s": 10,
    },
}


def vendor_config(**overrides: Any) -> VendorConfig:
    """The shipped simulator config with sections overridden: `http`, `stations` and `readings` merge
    one level deep; anything else (e.g. `auth`) is replaced whole."""
    raw = load_vendor_config("simulator").model_dump(mode="json", exclude_none=True)
    raw["readings"] = raw["readings"][0]  # the simulator has one reading endpoint
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if key in ("http", "stations", "readings") else value
    return VendorConfig.model_validate(raw)


def frozen(now: datetime) -> Callable[[], datetime]:
    """A clock for the cycle runner that always answers `now` (the vendor's simulated time)."""
    return lambda: now


class RecordingPublisher:
    """Takes the place of the MQTT uplink in source-level cycle tests: keeps every payload and
    acknowledges at once (the uplink itself is tested against a real broker in tests/worker)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def new_batch(self) -> PublishBatch:
        return PublishBatch()

    def publish_page(self, messages: list[OutboundMessage], batch: PublishBatch) -> list[Any]:
        self.payloads.extend(json.loads(m.payload) for m in messages)
        return []

    def ids(self) -> list[str]:
        return [p["message_id"] for p in self.payloads]


_OPEN_SOURCES: list[HttpJsonSource] = []


def make_source(
    sim: SimulatorProcess | str, *, http: dict | None = None, secrets: Any = None, pool_size: int = 8, **overrides: Any
) -> HttpJsonSource:
    """An adapter on the simulator (or a base URL), closed after the test by `_close_sources`."""
    config = vendor_config(http={**FAST_HTTP, **(http or {})}, **overrides)
    source = HttpJsonSource(
        config,
        base_url=sim if isinstance(sim, str) else sim.url,
        secrets=secrets if secrets is not None else {"api_key": DEFAULT_API_KEY},
        pool_size=pool_size,
    )
    _OPEN_SOURCES.append(source)
    return source


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _OPEN_SOURCES:
        _OPEN_SOURCES.pop().close()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimulatorProcess]:
    """250 stations, frozen clock; faults and stats are reset before each test that uses it."""
    with SimulatorProcess(stations=250, timeout_s=5.0) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: SimulatorProcess) -> SimulatorProcess:
    shared_sim.clear_faults()
    shared_sim.set_faults(latency_ms=0, retry_after_s=1, timeout_s=5.0)
    shared_sim.set_clock(FROZEN_NOW)
    shared_sim.reset_stats()
    return shared_sim
