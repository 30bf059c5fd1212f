"""The SolarEdge mock enforces what SolarEdge documents, seen from a plain HTTP client."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests

from vendor_mocks.base import MockServer
from vendor_mocks.solaredge import SITE_ID_BASE, SolarEdgeMock

pytestmark = pytest.mark.integration


def app(server: MockServer) -> SolarEdgeMock:
    assert isinstance(server.app, SolarEdgeMock)
    return server.app


def get(server: MockServer, path: str, **params: str | int) -> requests.Response:
    return requests.get(f"{server.url}{path}", params={"api_key": app(server).api_key, **params}, timeout=10)


def site_in(server: MockServer, zone: str) -> int:
    return next(SITE_ID_BASE + s.index for s in app(server).fleet.sites if s.zone_name == zone)


def test_a_wrong_or_missing_api_key_is_refused_with_403(solaredge_mock):
    wrong = requests.get(f"{solaredge_mock.url}/sites/list", params={"api_key": "nope"}, timeout=10)
    missing = requests.get(f"{solaredge_mock.url}/site/{SITE_ID_BASE + 1}/details", timeout=10)
    assert (wrong.status_code, missing.status_code) == (403, 403)
    assert app(solaredge_mock).stats.refusals["auth"] == 2


def test_site_list_pages_by_start_index_and_size_with_the_total_and_refuses_size_over_100(solaredge_mock):
    seen: list[int] = []
    for start in range(0, 60, 25):
        body = get(solaredge_mock, "/sites/list", startIndex=start, size=25).json()["sites"]
        assert body["count"] == 60
        seen += [site["id"] for site in body["site"]]
    assert seen == app(solaredge_mock).site_ids()
    too_big = get(solaredge_mock, "/sites/list", size=101)
    assert too_big.status_code == 400 and "size" in too_big.json()["String"]
    assert app(solaredge_mock).stats.refusals["paging"] == 1


def test_site_details_name_the_sites_time_zone_three_zones_with_dst(solaredge_mock):
    zones = {
        get(solaredge_mock, f"/site/{sid}/details").json()["details"]["location"]["timeZone"]
        for sid in app(solaredge_mock).site_ids()[:4]
    }
    assert {"Europe/Berlin", "America/New_York", "Australia/Sydney"} <= zones


def test_power_window_is_limited_to_one_month(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=3, start="2024-03-15T00:00:00Z")
    sid = SITE_ID_BASE + 1
    ok = get(server, f"/site/{sid}/power", startTime="2024-01-31 00:00:00", endTime="2024-02-29 00:00:00")
    too_long = get(server, f"/site/{sid}/power", startTime="2024-01-31 00:00:00", endTime="2024-02-29 00:15:00")
    details = get(server, f"/site/{sid}/powerDetails", startTime="2024-01-01 00:00:00", endTime="2024-02-02 00:00:00")
    assert ok.status_code == 200 and len(ok.json()["power"]["values"]) == 29 * 96 + 1
    assert (too_long.status_code, details.status_code) == (400, 400)
    assert app(server).stats.refusals["window"] == 2


def test_storage_window_is_limited_to_one_week_and_lists_each_battery_by_serial(solaredge_mock):
    mock = app(solaredge_mock)
    mock.clock.set("2024-03-31T12:00:00Z")
    two = next(s for s in mock.fleet.sites if s.batteries == 2)
    path = f"/site/{SITE_ID_BASE + two.index}/storageData"
    week = get(solaredge_mock, path, startTime="2024-03-24 12:00:00", endTime="2024-03-31 12:00:00")
    longer = get(solaredge_mock, path, startTime="2024-03-24 12:00:00", endTime="2024-03-31 12:05:00")
    assert week.status_code == 200 and longer.status_code == 400
    batteries = week.json()["storageData"]["batteries"]
    assert len({b["serialNumber"] for b in batteries}) == 2
    assert all(b["telemetryCount"] == len(b["telemetries"]) > 0 for b in batteries)
    one = get(
        solaredge_mock,
        path,
        startTime="2024-03-31 08:00:00",
        endTime="2024-03-31 09:00:00",
        serials=batteries[1]["serialNumber"],
    )
    assert [b["serialNumber"] for b in one.json()["storageData"]["batteries"]] == [batteries[1]["serialNumber"]]


def test_quarter_hours_not_yet_reported_are_null_and_filled_later(solaredge_mock):
    mock = app(solaredge_mock)
    sid = site_in(solaredge_mock, "Europe/Berlin")
    mock.clock.set("2024-03-31T10:00:00Z")  # 12:00 in Berlin (CEST)
    mock.set_report_lag(str(sid), 1800)
    window = {"startTime": "2024-03-31 10:30:00", "endTime": "2024-03-31 12:00:00"}
    before = {
        v["date"]: v["value"] for v in get(solaredge_mock, f"/site/{sid}/power", **window).json()["power"]["values"]
    }
    # 11:30-11:45 (09:30-09:45 UTC) closed 15 minutes ago but the site reports 30 minutes late.
    assert before["2024-03-31 11:15:00"] is not None
    assert before["2024-03-31 11:30:00"] is None and before["2024-03-31 11:45:00"] is None

    mock.clock.advance(900)
    after = {
        v["date"]: v["value"] for v in get(solaredge_mock, f"/site/{sid}/power", **window).json()["power"]["values"]
    }
    slot = datetime(2024, 3, 31, 9, 30, tzinfo=UTC)
    assert after["2024-03-31 11:30:00"] == mock.expected_power(sid, slot) is not None
    assert after["2024-03-31 11:15:00"] == before["2024-03-31 11:15:00"]
    assert after["2024-03-31 11:45:00"] is None


def test_energy_details_sum_the_quarter_hour_power_and_leave_unreported_periods_null(solaredge_mock):
    mock = app(solaredge_mock)
    sid = site_in(solaredge_mock, "Europe/Berlin")
    mock.clock.set("2024-03-31T10:50:00Z")  # 12:50 CEST
    window = {"startTime": "2024-03-31 11:00:00", "endTime": "2024-03-31 13:00:00", "meters": "PRODUCTION"}
    power = get(solaredge_mock, f"/site/{sid}/power", startTime=window["startTime"], endTime=window["endTime"])
    watts = [v["value"] for v in power.json()["power"]["values"]]
    quarters = get(solaredge_mock, f"/site/{sid}/energyDetails", timeUnit="QUARTER_OF_AN_HOUR", **window).json()
    hours = get(solaredge_mock, f"/site/{sid}/energyDetails", timeUnit="HOUR", **window).json()
    (production,) = quarters["energyDetails"]["meters"]
    assert production["type"] == "Production" and quarters["energyDetails"]["unit"] == "Wh"
    assert [v["value"] for v in production["values"]] == [
        None if w is None else round(w * 900 / 3600, 1) for w in watts
    ]  # 11:00-12:00 reported, 12:00-12:30 reported, 12:45 not over, 13:00 in the future
    assert watts[:7] != [None] * 7 and watts[7:] == [None, None]
    hourly = [v["value"] for v in hours["energyDetails"]["meters"][0]["values"]]
    assert hourly[0] == round(sum(w * 900 / 3600 for w in watts[:4]), 1) and hourly[1:] == [None, None]
    assert get(solaredge_mock, f"/site/{sid}/energyDetails", timeUnit="DAY", **window).status_code == 400


def test_site_local_times_across_dst_changes(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=4, start="2024-11-04T00:00:00Z")
    mock = app(server)
    berlin, new_york = site_in(server, "Europe/Berlin"), site_in(server, "America/New_York")

    spring = get(server, f"/site/{berlin}/power", startTime="2024-03-31 01:30:00", endTime="2024-03-31 03:15:00")
    dates = [v["date"] for v in spring.json()["power"]["values"]]
    # 02:00-03:00 does not exist in Berlin that night: 01:45 CET is followed by 03:00 CEST.
    assert dates == ["2024-03-31 01:30:00", "2024-03-31 01:45:00", "2024-03-31 03:00:00", "2024-03-31 03:15:00"]
    values = {v["date"]: v["value"] for v in spring.json()["power"]["values"]}
    assert values["2024-03-31 03:00:00"] == mock.expected_power(berlin, datetime(2024, 3, 31, 1, 0, tzinfo=UTC))

    autumn = get(server, f"/site/{new_york}/power", startTime="2024-11-03 00:45:00", endTime="2024-11-03 01:15:00")
    dates = [v["date"] for v in autumn.json()["power"]["values"]]
    # 01:00-02:00 happens twice in New York: EDT (05:00 UTC) then EST (06:00 UTC); endTime names the first.
    assert dates == ["2024-11-03 00:45:00", "2024-11-03 01:00:00", "2024-11-03 01:15:00"]
    whole = get(server, f"/site/{new_york}/power", startTime="2024-11-03 00:45:00", endTime="2024-11-03 02:00:00")
    dates = [v["date"] for v in whole.json()["power"]["values"]]
    assert dates.count("2024-11-03 01:15:00") == 2 and len(dates) == 1 + 4 + 4 + 1


def test_daily_quota_per_site_and_per_account_refuses_with_429_until_the_next_day(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=3, daily_quota=3)
    mock = app(server)
    a, b = SITE_ID_BASE + 1, SITE_ID_BASE + 2
    assert [get(server, f"/site/{a}/details").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert get(server, f"/site/{b}/details").status_code == 200  # each site has its own quota
    window = {"startTime": "2024-03-30 00:00:00", "endTime": "2024-03-30 01:00:00"}
    assert get(server, f"/sites/{a},{b}/power", **window).status_code == 429  # bulk charges every site in it
    assert [get(server, "/sites/list").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert mock.stats.refusals["daily_quota"] == 3

    mock.clock.set("2024-04-01T00:00:00Z")
    assert get(server, f"/site/{a}/details").status_code == 200


def test_a_fourth_concurrent_call_is_refused_with_429(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=3, latency_s=1.0)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(get(server, f"/site/{SITE_ID_BASE + 1}/details").status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    mock = app(server)
    assert sorted(set(statuses)) == [200, 429]
    assert mock.stats.max_in_flight == 3
    assert mock.stats.refusals["concurrency"] == statuses.count(429)


def test_bulk_power_takes_up_to_100_sites_each_in_its_own_local_time(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=120, start="2024-03-31T12:00:00Z")
    ids = app(server).site_ids()
    window = {"startTime": "2024-03-31 08:00:00", "endTime": "2024-03-31 08:15:00"}
    refused = get(server, "/sites/" + ",".join(map(str, ids[:101])) + "/power", **window)
    assert refused.status_code == 400
    answer = get(server, "/sites/" + ",".join(map(str, ids[:100])) + "/power", **window).json()
    series = answer["powerDateValuesList"]["siteEnergyList"]
    assert answer["powerDateValuesList"]["count"] == len(series) == 100
    berlin, tokyo = series[0], series[3]  # 08:00 is 06:00 UTC in Berlin, 23:00 UTC the day before in Tokyo
    assert berlin["powerDataValueSeries"]["values"][0]["date"] == "2024-03-31 08:00:00"
    assert berlin["powerDataValueSeries"]["values"][0]["value"] == app(server).expected_power(
        berlin["siteId"], datetime(2024, 3, 31, 6, 0, tzinfo=UTC)
    )
    assert tokyo["powerDataValueSeries"]["values"][0]["value"] == app(server).expected_power(
        tokyo["siteId"], datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    )


def test_ground_truth_helpers_agree_with_what_the_api_answers(solaredge_mock):
    mock = app(solaredge_mock)
    two = next(s for s in mock.fleet.sites if s.batteries == 2 and s.zone_name == "Europe/Berlin")
    sid = SITE_ID_BASE + two.index
    mock.clock.set("2024-03-31T12:07:00Z")
    since, until = datetime(2024, 3, 31, 11, 0, tzinfo=UTC), datetime(2024, 3, 31, 13, 0, tzinfo=UTC)
    power = mock.reported_power(sid, since, until)
    assert sorted(power) == [datetime(2024, 3, 31, 11, 15 * q, tzinfo=UTC) for q in range(4)]  # 12:00 not over
    local = {"startTime": "2024-03-31 13:00:00", "endTime": "2024-03-31 14:59:00"}  # Berlin, CEST
    values = get(solaredge_mock, f"/site/{sid}/power", **local).json()["power"]["values"]
    assert [v["value"] for v in values if v["value"] is not None] == list(power.values())
    storage = mock.reported_storage(sid, since, until)
    batteries = get(solaredge_mock, f"/site/{sid}/storageData", **local).json()["storageData"]["batteries"]
    answered = {(b["serialNumber"], t["timeStamp"]): t["power"] for b in batteries for t in b["telemetries"]}
    assert len(answered) == len(storage) == 2 * 13  # 11:00 .. 12:00 UTC, every 5 minutes, two batteries
    assert sorted(answered.values()) == sorted(storage.values())


def test_time_scale_shrinks_quarter_hours_and_the_quota_day_for_wall_clock_tests(vendor_mock_factory):
    server = vendor_mock_factory("solaredge", sites=2, start="2024-03-31T10:00:00Z", time_scale=1 / 60, daily_quota=2)
    mock, sid = app(server), SITE_ID_BASE + 1
    window = {"startTime": "2024-03-31 11:59:30", "endTime": "2024-03-31 12:00:00"}  # Berlin: 09:59:30-10:00 UTC
    values = get(server, f"/site/{sid}/power", **window).json()["power"]["values"]
    assert [v["date"] for v in values] == ["2024-03-31 11:59:30", "2024-03-31 11:59:45", "2024-03-31 12:00:00"]
    assert [v["value"] is None for v in values] == [False, False, True]  # the 15-second "quarter" at 10:00 is not over
    assert [get(server, f"/site/{sid}/details").status_code for _ in range(2)] == [200, 429]  # 2 a "day"
    mock.clock.advance(24 * 60)  # the next "day": a fresh quota
    values = get(server, f"/site/{sid}/power", **window).json()["power"]["values"]
    assert values[2]["value"] == mock.expected_power(sid, datetime(2024, 3, 31, 10, 0, tzinfo=UTC)) is not None
    assert mock.stats.refusals == {"daily_quota": 1}
