"""Batched requests and snapshot endpoints, through the shipped huawei_fusionsolar.yaml against a stub
answering only what each case needs: a POST-only vendor with a session login,
up to 100 station codes per call comma-joined in the body, real-time values with no per-item time
(the answer's `params.currentTime`), errors as `success: false` + `failCode` in HTTP 200."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource, load_vendor_config
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

NOW_MS = int(datetime(2024, 6, 1, 12, 7, 31, tzinfo=UTC).timestamp() * 1000)
CODES = [f"NE={33554000 + i}" for i in range(250)]


def vendor(stub: VendorStub) -> dict[str, Any]:
    state: dict[str, Any] = {"token": None, "now_ms": NOW_MS, "power": 1.0}

    def login(request: StubRequest):
        state["token"] = "xsrf-abcdef"
        return 200, {"success": True, "failCode": 0}, {"xsrf-token": state["token"]}

    def real_kpi(request: StubRequest):
        if request.headers.get("xsrf-token") != state["token"]:
            return 200, {"success": False, "failCode": 305, "message": "USER_MUST_RELOGIN", "data": None}
        codes = request.json()["stationCodes"].split(",")
        if len(codes) > 100:
            return 200, {"success": False, "failCode": 20400, "message": "too many codes", "data": None}
        data = [{"stationCode": c, "dataItemMap": {"day_power": state["power"], "real_health_state": 3}} for c in codes]
        return 200, {"success": True, "failCode": 0, "data": data, "params": {"currentTime": state["now_ms"]}}

    stub.route("POST", "/thirdData/login", login)
    stub.route("POST", "/thirdData/getStationRealKpi", real_kpi)
    return state


def shipped() -> VendorConfig:
    """The shipped huawei_fusionsolar.yaml without its call budget (the worker counts budgets on the
    wall clock; these cycles run on a frozen one)."""
    config = load_vendor_config("huawei_fusionsolar")
    return config.model_copy(update={"readings": [config.readings[0].model_copy(update={"budget": []})]})


@pytest.fixture
def stub() -> Iterator[VendorStub]:
    with VendorStub() as server:
        yield server


def run(source: HttpJsonSource, state: MemoryState, now: datetime) -> tuple[RecordingPublisher, Any]:
    publisher = RecordingPublisher()
    runner = CycleRunner(source, publisher, state, concurrency=4, now=lambda: now)
    try:
        return publisher, runner.run([Station(c) for c in CODES]).record
    finally:
        runner.close()


def test_250_stations_in_three_batched_snapshot_requests_fanned_out_by_station_code(stub):
    vendor_state = vendor(stub)
    source = HttpJsonSource(shipped(), base_url=stub.url, secrets={"user": "api", "system_code": "pw"})
    state = MemoryState()
    now = datetime(2024, 6, 1, 12, 8, tzinfo=UTC)
    first, record = run(source, state, now)
    calls = stub.calls("/thirdData/getStationRealKpi")
    assert len(calls) == 3 and sorted(len(c.json()["stationCodes"].split(",")) for c in calls) == [50, 100, 100]
    assert record.stations_synced == 250 and len(first.payloads) == 250
    assert {p["station_id"] for p in first.payloads} == set(CODES)
    # The answer's time, floored to 5 minutes: 12:07:31 -> 12:05:00, the same for every station.
    assert {p["ts"] for p in first.payloads} == {"2024-06-01T12:05:00.000000Z"}
    # The same 5 minutes read again, values unchanged: nothing new. A new step: every station again.
    again, _ = run(source, state, datetime(2024, 6, 1, 12, 9, tzinfo=UTC))
    assert again.payloads == []
    vendor_state["now_ms"] += 5 * 60 * 1000
    vendor_state["power"] = 2.0
    later, _ = run(source, state, datetime(2024, 6, 1, 12, 13, tzinfo=UTC))
    assert len(later.payloads) == 250 and {p["values"]["day_energy_kwh"] for p in later.payloads} == {2.0}
    assert len(stub.calls("/thirdData/login")) == 1
    source.close()


def test_a_batch_placeholder_outside_a_batched_endpoint_is_a_config_error():
    raw = shipped().model_dump(by_alias=True)
    raw["readings"][0]["batch"] = None
    with pytest.raises(ValueError, match=r"unknown placeholder.*station_ids"):
        VendorConfig.model_validate(raw)
