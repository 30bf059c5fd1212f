"""The FusionSolar adapter (functions/sync_worker/source/fusionsolar.py) against the Northbound mock,
cycle by cycle on the mock's clock: plant KPIs from the shipped YAML, and the real-time KPIs of every
inverter, battery and meter the device list names, 100 device ids per call per device type, each
device its own series (`battery/<esn>`), at the answer's time floored to 5 minutes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
import yaml

from functions.common.state import CycleRecord
from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.fusionsolar import DEVICE_TYPES, HOUR_VALUES, FusionSolarSource, list_refresh_s
from functions.sync_worker.source.http_json import VENDORS_DIR
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher, frozen
from vendor_mocks.fleet import ZONES
from vendor_mocks.fusionsolar import BATTERY, INVERTER, METER, FusionSolarMock

pytestmark = pytest.mark.integration

KINDS = {INVERTER: "inverter", BATTERY: "battery", METER: "meter"}
VALUES = {k.endpoint: k.values for k in DEVICE_TYPES}


def adapter(app: FusionSolarMock, url: str, tmp_path) -> FusionSolarSource:
    # The worker counts budgets on the wall clock, which this test does not let pass: no budget here
    # (the mock still refuses any call over the vendor's; the end-to-end test runs with budgets).
    raw = yaml.safe_load((VENDORS_DIR / "huawei_fusionsolar.yaml").read_text())
    del raw["readings"]["budget"]
    raw["auth"]["min_login_interval_s"] = 0  # the mock's clock jumps past the token's idle expiry
    path = tmp_path / "huawei_fusionsolar.yaml"
    path.write_text(yaml.safe_dump(raw))
    secrets = {"user": app.user_name, "system_code": app.system_code}
    return FusionSolarSource(settings={"config": str(path)}, secrets=secrets.__getitem__, base_url=url, pool_size=4)


def run_cycle(
    source: FusionSolarSource, stations: list[Station], state: MemoryState, app: FusionSolarMock
) -> tuple[RecordingPublisher, CycleRecord]:
    """One cycle at the mock's (frozen) time."""
    publisher = RecordingPublisher()
    runner = CycleRunner(source, publisher, state, concurrency=4, now=frozen(app.clock.now_dt()))
    try:
        return publisher, runner.run(stations).record
    finally:
        runner.close()


def test_every_device_of_150_plants_each_cycle_100_ids_per_call_per_device_type(vendor_mock_factory, tmp_path):
    mock = vendor_mock_factory("fusionsolar", sites=150)
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    app.clock.set("2024-03-31T00:47:00Z")  # Berlin's clocks go forward at 01:00 UTC, inside the run
    source = adapter(app, mock.url, tmp_path)
    stations = source.list_stations()
    assert len(stations) == 150 and app.stats.calls["getDevList"] == 2  # 100 plants per call
    by_type = {t: [d for d in app.devices.values() if d.type_id == t] for t in KINDS}
    assert len(by_type[BATTERY]) == 150 and any(d.number == 2 for d in by_type[BATTERY])
    state = MemoryState()
    seen: set[str] = set()
    for cycle in range(3):
        publisher, record = run_cycle(source, stations, state, app)
        assert record.stations_synced == 150 and record.stations_failed == 0, (cycle, record)
        payloads = [p for p in publisher.payloads if p["series"] != "hour"]  # the history's own test below
        got = {(p["station_id"], p["series"]): p for p in payloads}
        assert len(got) == len(payloads)  # one reading per device per cycle
        for type_id, kind in KINDS.items():
            for device in by_type[type_id]:
                ts_ms, items = app.snapshot(device.id)
                p = got[(f"NE={33_554_000 + device.site.index}", f"{kind}/{device.esn}")]
                assert p["ts"] == datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                mapped = {k: float(items[v.removeprefix("dataItemMap.")]) for k, v in VALUES[kind].items()}
                assert p["values"] == mapped, (kind, p)
        plants = [p for p in payloads if p["series"] == "plant"]
        assert len(plants) == 150 and len(payloads) == 150 + sum(len(d) for d in by_type.values())
        assert not seen & {p["message_id"] for p in payloads}  # new values every cycle
        seen |= {p["message_id"] for p in payloads}
        app.clock.advance(300)
    source.close()
    assert app.stats.refused_total() == 0, app.stats.snapshot()
    # Roundup(150/100) = 2 calls per device type per cycle, 3 types, 3 cycles: never more.
    assert app.stats.calls["getDevRealKpi"] == 3 * 3 * 2 and app.stats.calls["getStationRealKpi"] == 3 * 2
    assert app.stats.calls["getDevList"] == 2  # the lists are re-read only as their budget allows


def test_the_lists_are_re_read_no_more_often_than_their_daily_budget_allows():
    # Roundup(plants/100) calls per read of a Roundup(plants/100)+24 a day budget.
    for plants in (60, 150, 1000, 10_000):
        blocks = math.ceil(plants / 100)
        reads_per_day = 86_400 / list_refresh_s(plants, 86_400)
        assert reads_per_day * blocks <= blocks + 24
        assert reads_per_day * blocks > (blocks + 24) * 0.8  # and not far less


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown.*'day'"):
        FusionSolarSource(settings={"day": 1}, secrets=lambda _: "x", base_url="http://127.0.0.1:1", pool_size=1)


def test_hours_missed_by_an_outage_are_read_once_from_the_hourly_history(vendor_mock_factory, tmp_path):
    mock = vendor_mock_factory("fusionsolar", sites=24)
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    app.clock.set("2026-10-24T22:02:00Z")  # midnight in Berlin; its clocks go back at 01:00 UTC
    source = adapter(app, mock.url, tmp_path)
    stations = source.list_stations()
    state = MemoryState()
    hours: list[dict] = []

    def cycle() -> None:
        publisher, record = run_cycle(source, stations, state, app)
        assert record.stations_failed == 0, record
        hours.extend(p for p in publisher.payloads if p["series"] == "hour")

    cycle()  # the first answer tells the vendor's clock
    app.clock.advance(300)
    cycle()  # a worker's start: the last day's reported hours
    first_pass = app.stats.calls["getKpiStationHour"]
    assert 1 <= first_pass <= 1 + len(ZONES) and hours  # one day per call: a call per zone at most
    for _ in range(3):  # steady 5-minute steps: nothing missed, no history call
        app.clock.advance(300)
        cycle()
    assert app.stats.calls["getKpiStationHour"] == first_pass
    outage_from = app.clock.now()
    app.clock.advance(3 * 3600 + 600)  # down across Berlin's DST change
    cycle()  # sees the missed steps
    app.clock.advance(300)
    cycle()  # reads the hours over since, leaves the current one pending
    app.clock.set(datetime.fromtimestamp((app.clock.now() // 3600 + 1) * 3600 + 120, UTC))
    cycle()  # notes the step gap of the jump
    app.clock.advance(300)
    cycle()  # the last missed hour, now over and reported
    source.close()
    # The jump outlives the session token (305, one re-login each time); nothing else refused.
    assert set(app.stats.refusals) <= {"token"}, app.stats.snapshot()

    ids = [p["message_id"] for p in hours]
    assert len(ids) == len(set(ids))  # each hour once
    end = app.clock.now() // 3600 * 3600  # the hour in progress is not reported yet
    for code in (s.station_id for s in stations):
        got = {
            datetime.strptime(p["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp(): p
            for p in hours
            if p["station_id"] == code
        }
        times = sorted(got)
        # Contiguous UTC hours from a day back to the last hour over: every hour of the outage.
        assert times == [times[0] + 3600 * i for i in range(len(times))], code
        assert times[0] <= outage_from - 3 * 3600 and times[-1] == end - 3600, (code, times[-1], end)
        for t, p in got.items():
            items = app.hour_values(code, t)
            assert p["values"] == {k: items[v.removeprefix("dataItemMap.")] for k, v in HOUR_VALUES.items()}
