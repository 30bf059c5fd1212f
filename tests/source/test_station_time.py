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
from functions.sync_worker.source.timezones import UnknownZone, local_to_utc, request_instant, zone_of
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


def test_one_window_is_asked_in_each_stations_own_local_time(stub):
    """Request times are remembered per instant: the same window for sites in three zones (and the
    same instants written with another offset) must still be asked in each site's own local time."""
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "key-1234"})
    since = datetime(2024, 6, 1, 10, tzinfo=UTC)
    elsewhere = ZoneInfo("Asia/Tokyo")
    for site, zone in [*STATIONS.items(), *STATIONS.items()]:
        station = Station(site, attributes={"timeZone": zone})
        source.fetch_readings(station, since.astimezone(elsewhere), (since + QUARTER * 4).astimezone(elsewhere), 100)
    asked = [(call.path.split("/")[2], call.query["startTime"], call.query["endTime"]) for call in stub.requests]
    expected = [
        (
            site,
            since.astimezone(zone_of(zone)).strftime(LOCAL),
            (since + QUARTER * 4).astimezone(zone_of(zone)).strftime(LOCAL),
        )
        for site, zone in STATIONS.items()
    ]
    assert asked == expected * 2
    assert expected[0][1] == "2024-06-01 12:00:00" and expected[1][1] == "2024-06-01 06:00:00"
    source.close()


#: Berlin falls back at 01:00 UTC on 2024-10-27: local 02:00-02:59 happens twice (CEST, then CET).
FALL_BACK = datetime(2024, 10, 27, 1, tzinfo=UTC)


@pytest.mark.parametrize("hours_before", [2, 1, 0.5])
def test_the_repeated_autumn_hour_is_read_in_answer_order_at_exact_utc(stub, hours_before):
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "key-1234"})
    station = Station("berlin", attributes={"timeZone": "Europe/Berlin"})
    since = FALL_BACK - timedelta(hours=hours_before)
    batch = source.fetch_readings(station, since, FALL_BACK + timedelta(hours=2), 1000)
    # The answer lists 02:00..02:45 twice; each must land on its own instant, once.
    locals_ = [r.ts.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") for r in batch]
    assert locals_.count("02:45") == 2
    assert [r.ts for r in batch] == [since + QUARTER * i for i in range(1, int((hours_before + 2) * 4) + 1)]
    assert all(r.ts.timestamp() == r.values["epoch"] for r in batch)
    assert len({r.message_id for r in batch}) == len(batch)
    source.close()


def test_a_window_ending_in_the_second_occurrence_is_asked_past_it_and_answered_to_its_end(stub):
    source = HttpJsonSource(config(), base_url=stub.url, secrets={"api_key": "key-1234"})
    station = Station("berlin", attributes={"timeZone": "Europe/Berlin"})
    since, until = FALL_BACK - timedelta(minutes=30), FALL_BACK + timedelta(minutes=30)
    batch = source.fetch_readings(station, since, until, 1000)
    # "02:30" alone would mean 00:30 UTC (the first occurrence): the window would end where it starts.
    assert stub.calls("/site/berlin/energy")[-1].query["endTime"] == "2024-10-27 03:30:00"
    assert [r.ts for r in batch] == [since + QUARTER * i for i in range(1, 5)]
    assert batch.complete_through == until
    source.close()


def test_local_time_rules_in_the_repeated_hour_and_the_spring_gap():
    berlin = ZoneInfo("Europe/Berlin")
    repeated = datetime(2024, 10, 27, 2, 30)
    first, second = FALL_BACK - timedelta(minutes=30), FALL_BACK + timedelta(minutes=30)
    assert local_to_utc(repeated, berlin) == first
    assert local_to_utc(repeated, berlin, not_before=first) == first  # the same instant again: no jump
    assert local_to_utc(repeated, berlin, not_before=first + QUARTER) == second
    # Not ambiguous: read as written even when it goes back in time.
    assert local_to_utc(datetime(2024, 10, 27, 1), berlin, not_before=second) == datetime(2024, 10, 26, 23, tzinfo=UTC)
    # A spring-forward gap time is never moved earlier (fold=1 there is the earlier instant).
    gap = datetime(2024, 3, 31, 2, 30)
    assert local_to_utc(gap, berlin, not_before=datetime(2024, 3, 31, 2, tzinfo=UTC)) == datetime(
        2024, 3, 31, 1, 30, tzinfo=UTC
    )
    assert request_instant(second, berlin, upper=True) == second + timedelta(hours=1)
    assert request_instant(second, berlin, upper=False) == second
    assert request_instant(first, berlin, upper=True) == first
    assert request_instant(second, zone_of("+01:00"), upper=True) == second


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
