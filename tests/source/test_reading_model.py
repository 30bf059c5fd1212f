"""Late values, several devices per station and unsorted pages, through the real cycle runner, the
generic source and a real Redis, against a small vendor over real HTTP (tests/support/vendor_stub).

The uplink is replaced by a recorder that acknowledges at once: what is asserted here is which
readings the runner hands to the uplink and where the cursor goes (the uplink's own behaviour is
covered with a real broker in tests/worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.common.state import StateKeys
from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import Lease, StateStore, connect_redis
from tests.source.conftest import RecordingPublisher
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


def config(**readings: Any) -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "stub",
            "auth": {"type": "api_key", "secret": "api_key"},
            "http": {"retries": {"attempts": 1}},
            "stations": {"path": "/sites", "items": "sites", "id": "id"},
            "readings": {
                "path": "/sites/{station_id}/data",
                "params": {"from": "{since}", "to": "{until}", "size": "{limit}"},
                "items": "items",
                "timestamp": {"path": "time"},
                "values": {"power_w": {"path": "power", "type": "float", "required": True}},
                **readings,
            },
        }
    )


@pytest.fixture
def stub() -> Iterator[VendorStub]:
    with VendorStub() as server:
        yield server


@pytest.fixture
def state(redis_server) -> Iterator[StateStore]:
    client = connect_redis(redis_server.url)
    keys = StateKeys.for_env("test")
    lease = Lease(client, keys, "test-worker")
    assert lease.try_acquire()
    yield StateStore(client, keys, lease)
    lease.release()


def run_cycle(
    source: HttpJsonSource, state: StateStore, now: datetime, page_size: int = 500
) -> tuple[RecordingPublisher, Any]:
    publisher = RecordingPublisher()
    runner = CycleRunner(source, publisher, state, concurrency=2, page_size=page_size, now=lambda: now)
    try:
        result = runner.run([Station("S1")])
    finally:
        runner.close()
    return publisher, result


def window(request: StubRequest) -> tuple[datetime, datetime]:
    parse = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))  # noqa: E731 - two uses, one line
    return parse(request.query["from"]), parse(request.query["to"])


def test_a_value_reported_late_is_published_when_it_arrives(stub, state):
    # The vendor lists each quarter-hour as soon as it starts, with power null until reported.
    reported: dict[datetime, float | None] = {T0 + i * STEP: float(i) for i in range(4)}
    reported[T0 + 4 * STEP] = None

    def data(request: StubRequest):
        since, until = window(request)
        items = [{"time": t.isoformat(), "power": v} for t, v in sorted(reported.items()) if since < t <= until]
        return 200, {"items": items}

    stub.route("GET", "/sites/S1/data", data)
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "k"})
    state.advance_cursor("S1", T0 - STEP)
    first, _ = run_cycle(source, state, T0 + 4 * STEP + timedelta(minutes=1))
    assert len(first.payloads) == 4, "the four reported quarter-hours"

    reported[T0 + 4 * STEP] = 44.0  # reported now, after the cycle had seen it as null
    second, _ = run_cycle(source, state, T0 + 4 * STEP + timedelta(minutes=6))
    assert [p["values"]["power_w"] for p in second.payloads] == [44.0], "the late value, and only it"
    source.close()


def test_two_devices_of_one_station_at_one_time_get_two_message_ids(stub, state):
    stub.route(
        "GET",
        "/sites/S1/data",
        lambda r: (200, {"items": [{"time": T0.isoformat(), "power": 1.0, "sn": sn} for sn in ("BAT-1", "BAT-2")]}),
    )
    source = HttpJsonSource(config(series="sn"), base_url=stub.url, secrets={"api_key": "k"})
    state.advance_cursor("S1", T0 - STEP)
    published, _ = run_cycle(source, state, T0 + STEP)
    assert len(published.payloads) == 2 and len(set(published.ids())) == 2
    assert {p["series"] for p in published.payloads} == {"readings/BAT-1", "readings/BAT-2"}
    source.close()


def test_a_truncated_page_of_one_device_then_another_loses_nothing(stub, state):
    # The vendor sorts by device, then time: device A's whole hour, then device B's (a minute
    # later each), 4 per page. A runner resuming from the latest time seen skips B's first items.
    times = {
        "A": [T0 + i * STEP for i in range(1, 7)],
        "B": [T0 + i * STEP + timedelta(minutes=1) for i in range(1, 7)],
    }
    rows = [{"time": t.isoformat(), "power": float(i), "sn": sn} for sn in ("A", "B") for i, t in enumerate(times[sn])]

    def data(request: StubRequest):
        since, until = window(request)
        matching = [r for r in rows if since < datetime.fromisoformat(str(r["time"])) <= until]
        start = int(request.query.get("page", "0"))
        nxt = start + 4 if start + 4 < len(matching) else None
        return 200, {"items": matching[start : start + 4], "next": None if nxt is None else str(nxt)}

    stub.route("GET", "/sites/S1/data", data)
    source = HttpJsonSource(
        config(pagination={"type": "cursor", "param": "page", "next": "next"}),
        base_url=stub.url,
        secrets={"api_key": "k"},
    )
    state.advance_cursor("S1", T0)
    end = times["B"][-1]
    published, _ = run_cycle(source, state, end, page_size=4)
    assert sorted(p["ts"] for p in published.payloads) == sorted(
        t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for sn in ("A", "B") for t in times[sn]
    )
    assert state.cursors()["S1"] == end
    source.close()


def test_a_revised_value_is_published_again_under_its_id_and_unchanged_ones_are_not(stub, state):
    reported = {T0 + i * STEP: float(i) for i in range(4)}

    def data(request: StubRequest):
        since, until = window(request)
        return 200, {"items": [{"time": t.isoformat(), "power": v} for t, v in reported.items() if since < t <= until]}

    stub.route("GET", "/sites/S1/data", data)
    source = HttpJsonSource(config(lookback_s=3600), base_url=stub.url, secrets={"api_key": "k"})
    state.advance_cursor("S1", T0 - STEP)
    first, _ = run_cycle(source, state, T0 + 3 * STEP)
    assert len(first.payloads) == 4
    reported[T0 + STEP] = 10.5  # the vendor corrects a value inside the lookback
    second, result = run_cycle(source, state, T0 + 3 * STEP + timedelta(minutes=5))
    assert [(p["message_id"], p["values"]) for p in second.payloads] == [
        (first.payloads[1]["message_id"], {"power_w": 10.5})
    ]
    assert result.outcomes[0].unchanged == 3
    source.close()
