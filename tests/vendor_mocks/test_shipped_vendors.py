"""The shipped vendor definitions (functions/sync_worker/source/vendors/solaredge.yaml and
huawei_fusionsolar.yaml) against the vendor mocks, cycle by cycle on the mocks' clock: every value
the mock reports arrives at its exact UTC time, and the vendor refuses nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.source.http_json import HttpJsonSource, load_vendor_config
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher
from vendor_mocks.fusionsolar import FusionSolarMock
from vendor_mocks.solaredge import SolarEdgeMock

pytestmark = pytest.mark.integration


def run_cycle(
    source: HttpJsonSource, stations: list[Any], state: MemoryState, now: datetime, backfill_s: float = 86_400
) -> list[dict]:
    publisher = RecordingPublisher()
    runner = CycleRunner(source, publisher, state, concurrency=6, now=lambda: now, backfill_window_s=backfill_s)
    try:
        record = runner.run(stations).record
    finally:
        runner.close()
    assert record.stations_failed == 0, record
    return list(publisher.payloads)


def utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_solaredge_definition_delivers_every_reported_quarter_hour_and_battery_value(vendor_mock_factory):
    mock = vendor_mock_factory("solaredge", sites=12)
    app = mock.app
    assert isinstance(app, SolarEdgeMock)
    source = HttpJsonSource(load_vendor_config("solaredge"), base_url=mock.url, secrets={"api_key": app.api_key})
    stations = source.list_stations()
    assert len(stations) == 12
    state = MemoryState()
    start = app.clock.now_dt()  # 2024-03-31 00:00 UTC: Berlin springs forward at 01:00 UTC
    for s in stations:
        for endpoint in ("power", "storage"):
            state.advance_cursor(s.station_id, start, endpoint=endpoint)
    latest: dict[str, dict] = {}
    for _ in range(6):  # six hourly cycles across the DST change
        app.clock.advance(3600)
        latest.update({p["message_id"]: p for p in run_cycle(source, stations, state, app.clock.now_dt())})
    source.close()
    assert app.stats.refused_total() == 0, app.stats
    assert len({(p["station_id"], p["series"], p["ts"]) for p in latest.values()}) == len(latest)

    for s in stations:
        sid = int(s.station_id)
        cursor = state.cursors("power")[s.station_id]
        want = {t: v for t, v in app.reported_power(sid, start, cursor + timedelta(seconds=1)).items() if t > start}
        got = {
            utc(p["ts"]): p["values"]["power_w"]
            for p in latest.values()
            if p["station_id"] == s.station_id and p["series"] == "power" and utc(p["ts"]) > start
        }
        assert got == {t: v for t, v in want.items() if t <= cursor} and got, s.station_id
        cursor = state.cursors("storage")[s.station_id]
        want_storage = app.reported_storage(sid, start, cursor + timedelta(seconds=1))
        got_storage = {
            (p["series"].split("/", 1)[1], utc(p["ts"])): p["values"]["power_w"]
            for p in latest.values()
            if p["station_id"] == s.station_id and p["series"].startswith("storage/") and utc(p["ts"]) > start
        }
        assert got_storage == {k: v for k, v in want_storage.items() if start < k[1] <= cursor}, s.station_id


def test_solaredge_backfills_30_days_of_downtime_in_windows_the_vendor_accepts_across_spring_forward(
    vendor_mock_factory,
):
    # Berlin (one battery) and New York (none). The clock stays on 2024-04-03 00:00 UTC; Berlin
    # sprang forward on 03-31, New York on 03-10.
    mock = vendor_mock_factory("solaredge", sites=2, start="2024-04-03T00:00:00Z")
    app = mock.app
    assert isinstance(app, SolarEdgeMock)
    source = HttpJsonSource(load_vendor_config("solaredge"), base_url=mock.url, secrets={"api_key": app.api_key})
    stations = source.list_stations()
    now = app.clock.now_dt()
    down = {  # (power, storage) downtime per site: power over a month; storage over a week where
        # a battery's week of data is cheap enough for a fast test (New York has none: empty weeks)
        "100001": (30, 8),
        "100002": (30, 30),
    }
    state = MemoryState()
    for sid, (power_days, storage_days) in down.items():
        state.advance_cursor(sid, now - timedelta(days=power_days), endpoint="power")
        state.advance_cursor(sid, now - timedelta(days=storage_days), endpoint="storage")
    payloads = run_cycle(source, stations, state, now, backfill_s=45 * 86_400)
    source.close()
    # Power in windows of at most 28 days (2 per site), storage in windows of a week less the hour a
    # spring-forward night adds to its local span (SolarEdge measures the week in site-local time).
    assert app.stats.refused_total() == 0, app.stats.snapshot()
    assert app.stats.calls["site/power"] == 2 * 2
    assert app.stats.calls["site/storageData"] == 2 + 5
    got = {p["message_id"]: p["values"]["power_w"] for p in payloads}
    assert len(got) == len(payloads)
    lookback = timedelta(hours=1, seconds=-1)  # read again before each cursor: (cursor - 1 h, now]
    for sid, (power_days, storage_days) in down.items():
        for t, value in app.reported_power(int(sid), now - timedelta(days=power_days) - lookback, now).items():
            assert got.pop(f"{sid}:power:{t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}") == value
        for (serial, t), value in app.reported_storage(
            int(sid), now - timedelta(days=storage_days) - lookback, now
        ).items():
            assert got.pop(f"{sid}:storage/{serial}:{t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}") == value
    assert got == {}  # nothing but the reported values
    for sid in down:  # caught up (the quarter starting now is listed as null: not over yet)
        assert state.cursors("storage")[sid] == now
        assert state.cursors("power")[sid] == now - timedelta(microseconds=1)


def fusionsolar_source(app: FusionSolarMock, url: str, with_budget: bool = True) -> HttpJsonSource:
    config = load_vendor_config("huawei_fusionsolar")
    if not with_budget:
        # The worker counts its budget on the wall clock; a test on the mock's clock goes without it.
        config = config.model_copy(update={"readings": [config.readings[0].model_copy(update={"budget": []})]})
    secrets = {"user": app.user_name, "system_code": app.system_code}
    return HttpJsonSource(config, base_url=url, secrets=secrets)


def test_fusionsolar_definition_reads_every_plant_each_5_minutes_in_one_batched_call(vendor_mock_factory):
    mock = vendor_mock_factory("fusionsolar", sites=60)
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    app.clock.set("2024-03-31T10:02:00Z")
    source = fusionsolar_source(app, mock.url, with_budget=False)
    stations = source.list_stations()
    assert len(stations) == 60
    state = MemoryState()
    seen: set[str] = set()
    for _ in range(6):
        payloads = run_cycle(source, stations, state, app.clock.now_dt())
        floored = datetime.fromtimestamp(app.clock.now() // 300 * 300, UTC)
        assert {p["station_id"] for p in payloads} == {s.station_id for s in stations}
        assert {utc(p["ts"]) for p in payloads} == {floored}  # the envelope's time, floored to 5 minutes
        seen |= {p["message_id"] for p in payloads}
        app.clock.advance(300)
    source.close()
    assert len(seen) == 6 * 60  # new values every cycle, no id shared by two plants or two cycles
    assert app.stats.refused_total() == 0, app.stats
    assert app.stats.calls["getStationRealKpi"] == 6


def test_fusionsolar_definition_defers_a_cycle_its_budget_has_no_room_for(vendor_mock_factory):
    mock = vendor_mock_factory("fusionsolar", sites=60)
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    source = fusionsolar_source(app, mock.url)
    stations = source.list_stations()
    state = MemoryState()
    first = run_cycle(source, stations, state, app.clock.now_dt())
    again = run_cycle(source, stations, state, app.clock.now_dt())  # inside the same 5 minutes
    source.close()
    assert len(first) == 60 and again == []
    assert app.stats.calls["getStationRealKpi"] == 1 and app.stats.refused_total() == 0
