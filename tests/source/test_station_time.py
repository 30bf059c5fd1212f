"""Site-local vendor times: asked and read in each station's zone (IANA or offset), across DST."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.source.timezones import UnknownZone, zone_of
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher, frozen
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

LOCAL = "%Y-%m-%d %H:%M:%S"
#: Three zones, two of them changing to summer time inside the window asked for below.
STATIONS = {
    "berlin": "Europe/Berlin",  # 2024-03-31 02:00 -> 03:00 local
    "newyork": "America/New_York",  # 2024-03-10 02:00 -> 03:00 local
    "mumbai": "+05:30",
}
QUARTER = timedelta(minutes=15)


def local_vendor(stub: VendorStub) -> None:
    """Quarter-hour values at every UTC quarter, written in the site's local time, answered for the
    site-local window [startTime, endTime] (the way SolarEdge's energyDetails works)."""

    def data(request: StubRequest):
        site = request.path.split("/")[2]
        zone = zone_of(STATIONS[site])
        start = datetime.strptime(request.query["startTime"], LOCAL).replace(tzinfo=zone).astimezone(UTC)
        end = datetime.strptime(request.query["endTime"], LOCAL).replace(tzinfo=zone).astimezone(UTC)
        t = start.replace(minute=start.minute - start.minute % 15, second=0)
        values = []
        while t <= end:
            if t > start:
                values.append({"date": t.astimezone(zone).strftime(LOCAL), "value": t.timestamp()})
            t += QUARTER
        return 200, {"values": values}

    stub.route("GET", "/site/berlin/energy", data)
    stub.route("GET", "/site/newyork/energy", data)
    stub.route("GET", "/site/mumbai/energy", data)


@pytest.fixture
def stub() -> Iterator[VendorStub]:
    with VendorStub() as server:
        local_vendor(server)
        yield server


def config(**readings: object) -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "local",
            "auth": {"type": "api_key", "query_param": "api_key"},
            "stations": {"path": "/sites", "items": "sites", "attributes": {"timeZone": "location.timeZone"}},
            "readings": {
                "path": "/site/{station_id}/energy",
                "params": {"startTime": "{since}", "endTime": "{until}"},
                "time_format": LOCAL,
                "station_zone": "timeZone",
                "items": "values",
                "timestamp": {"path": "date", "format": LOCAL},
                "values": {"epoch": {"path": "value", "type": "float", "required": True}},
                "lookback_s": 0,
                **readings,
            },
        }
    )


@pytest.mark.parametrize("site", list(STATIONS))
@pytest.mark.parametrize(
    "utc_start",
    [datetime(2024, 3, 30, 22, tzinfo=UTC), datetime(2024, 3, 10, 4, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)],
    ids=["berlin-dst", "newyork-dst", "summer"],
)
def test_site_local_times_are_exact_utc_across_dst_in_three_zones(stub, site, utc_start):
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "key-1234"})
    station = Station(site, attributes={"timeZone": STATIONS[site]})
    until = utc_start + timedelta(hours=6)
    batch = source.fetch_readings(station, utc_start, until, 1000)
    # Each value carries its own UTC instant: a reading's time must equal it exactly.
    assert [r.ts for r in batch] == [utc_start + QUARTER * i for i in range(1, 25)]
    assert all(r.ts.timestamp() == r.values["epoch"] for r in batch)
    request = stub.calls(f"/site/{site}/energy")[-1].query
    assert request["startTime"] == utc_start.astimezone(zone_of(STATIONS[site])).strftime(LOCAL)
    source.close()


def test_a_site_west_of_utc_keeps_getting_data_cycle_after_cycle(stub):
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "key-1234"})
    station = Station("newyork", attributes={"timeZone": "America/New_York"})
    state = MemoryState()
    state.advance_cursor("newyork", datetime(2024, 6, 1, tzinfo=UTC))
    counts = []
    for hour in (1, 2, 3):
        now = datetime(2024, 6, 1, hour, tzinfo=UTC)
        publisher = RecordingPublisher()
        runner = CycleRunner(source, publisher, state, concurrency=1, now=frozen(now))
        try:
            runner.run([station])
        finally:
            runner.close()
        counts.append(len(publisher.payloads))
    assert counts == [4, 4, 4]
    assert state.cursors()["newyork"] == datetime(2024, 6, 1, 3, tzinfo=UTC)
    source.close()


def test_a_long_window_is_split_into_requests_of_at_most_max_window(stub):
    source = HttpJsonSource(config(max_window_s=3600), base_url=stub.url, secrets={"api_key": "key-1234"})
    station = Station("mumbai", attributes={"timeZone": "+05:30"})
    start = datetime(2024, 6, 1, tzinfo=UTC)
    batches = [source.fetch_readings(station, start, start + timedelta(hours=3), 1000)]
    while batches[-1].resume is not None:
        batches.append(
            source.fetch_readings(station, start, start + timedelta(hours=3), 1000, resume=batches[-1].resume)
        )
    assert [len(b) for b in batches] == [4, 4, 4]
    assert [b.complete_through for b in batches] == [start + timedelta(hours=h) for h in (1, 2, 3)]
    assert len(stub.calls("/site/mumbai/energy")) == 3
    source.close()


def test_zone_values_and_a_station_without_a_zone():
    assert zone_of("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert zone_of("UTC+8").utcoffset(None) == timedelta(hours=8)
    assert zone_of("-03:00").utcoffset(None) == timedelta(hours=-3)
    assert zone_of(19800).utcoffset(None) == timedelta(hours=5, minutes=30)
    for bad in ("Mars/Olympus", "+25:00", None, True):
        with pytest.raises(UnknownZone):
            zone_of(bad)
    source = HttpJsonSource(config(), base_url="http://127.0.0.1:1", secrets={"api_key": "key-1234"})
    with pytest.raises(PermanentError, match="timeZone"):
        source.fetch_readings(
            Station("berlin"), datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 1, 1, tzinfo=UTC), 10
        )
    source.close()
