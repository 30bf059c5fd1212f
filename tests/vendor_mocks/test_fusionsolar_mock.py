"""The FusionSolar Northbound mock enforces what Huawei documents, seen from a plain HTTP client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from vendor_mocks.base import MockServer
from vendor_mocks.fusionsolar import BATTERY, INVERTER, METER, FusionSolarMock, devices_of, station_code

pytestmark = pytest.mark.integration


def app(server: MockServer) -> FusionSolarMock:
    assert isinstance(server.app, FusionSolarMock)
    return server.app


class Client:
    """A bare Northbound client: log in, send the token, nothing else (no retries, no re-login)."""

    def __init__(self, server: MockServer) -> None:
        self.server, self.token = server, ""

    def login(self, system_code: str | None = None) -> dict[str, Any]:
        mock = app(self.server)
        body = {"userName": mock.user_name, "systemCode": system_code or mock.system_code}
        response = requests.post(f"{self.server.url}/thirdData/login", json=body, timeout=10)
        self.token = response.headers.get("xsrf-token", self.token)
        return response.json()

    def call(self, interface: str, **body: Any) -> dict[str, Any]:
        response = requests.post(
            f"{self.server.url}/thirdData/{interface}", json=body, headers={"XSRF-TOKEN": self.token}, timeout=10
        )
        assert response.status_code == 200  # errors travel inside HTTP 200 bodies
        return response.json()


@pytest.fixture
def client(fusionsolar_mock) -> Client:
    c = Client(fusionsolar_mock)
    assert c.login()["success"] is True
    return c


def test_login_returns_the_token_in_the_xsrf_token_header_and_refuses_a_wrong_system_code(fusionsolar_mock):
    c = Client(fusionsolar_mock)
    bad = c.login(system_code="wrong")
    assert (bad["success"], bad["failCode"], c.token) == (False, 20400, "")
    assert c.login()["success"] is True and len(c.token) > 16
    assert c.call("getStationList")["success"] is True


def test_a_call_without_a_valid_token_answers_failcode_305(fusionsolar_mock):
    c = Client(fusionsolar_mock)
    answer = c.call("getStationList")
    assert (answer["success"], answer["failCode"], answer["message"]) == (False, 305, "USER_MUST_RELOGIN")
    assert app(fusionsolar_mock).stats.refusals["token"] == 1


def test_the_token_expires_after_30_idle_minutes_each_call_extends_it_and_re_login_works(client):
    mock = app(client.server)
    codes = mock.station_codes()[0]
    mock.clock.advance(29 * 60)
    assert client.call("getDevList", stationCodes=codes)["success"] is True  # extends the session
    mock.clock.advance(29 * 60)
    assert client.call("getDevList", stationCodes=codes)["success"] is True
    mock.clock.advance(30 * 60 + 1)
    assert client.call("getDevList", stationCodes=codes)["failCode"] == 305
    assert client.login()["success"] is True
    assert client.call("getDevList", stationCodes=codes)["success"] is True


def test_a_new_login_invalidates_the_previous_token(fusionsolar_mock):
    first, second = Client(fusionsolar_mock), Client(fusionsolar_mock)
    first.login()
    second.login()
    assert first.call("getStationList")["failCode"] == 305
    assert second.call("getStationList")["success"] is True


def test_logins_are_flow_controlled(client):
    answers = [client.login() for _ in range(5)]  # the fixture's login was the first of five
    assert [a["failCode"] for a in answers] == [0, 0, 0, 0, 407]
    app(client.server).clock.advance(10 * 60)
    assert client.login()["success"] is True


def test_real_time_plant_kpis_allow_roundup_plants_over_100_calls_per_5_minutes(client):
    mock = app(client.server)  # 60 plants: one call per 5 minutes
    codes = ",".join(mock.station_codes())
    first = client.call("getStationRealKpi", stationCodes=codes)
    second = client.call("getStationRealKpi", stationCodes=codes)
    assert first["success"] is True and len(first["data"]) == 60
    assert (second["success"], second["failCode"], second["data"]) == (False, 407, "ACCESS_FREQUENCY_IS_TOO_HIGH")
    mock.clock.advance(299)
    assert client.call("getStationRealKpi", stationCodes=codes)["failCode"] == 407
    mock.clock.advance(1)
    assert client.call("getStationRealKpi", stationCodes=codes)["success"] is True
    assert mock.stats.refusals["budget:getStationRealKpi"] == 2


def test_real_time_device_kpis_have_a_budget_per_device_type(client):
    mock = app(client.server)
    by_type: dict[int, list[int]] = {}
    for device in mock.devices.values():
        by_type.setdefault(device.type_id, []).append(device.id)
    for type_id in (INVERTER, BATTERY, METER):
        ids = ",".join(map(str, by_type[type_id][:100]))
        assert client.call("getDevRealKpi", devIds=ids, devTypeId=type_id)["success"] is True
    again = client.call("getDevRealKpi", devIds=str(by_type[BATTERY][0]), devTypeId=BATTERY)
    assert again["failCode"] == 407
    assert mock.stats.refusals == {"budget:getDevRealKpi:39": 1}


def test_daily_interfaces_allow_roundup_plants_over_100_plus_24_calls_per_day(client):
    mock = app(client.server)
    code = mock.station_codes()[0]
    answers = [client.call("getDevList", stationCodes=code)["failCode"] for _ in range(26)]
    assert answers == [0] * 25 + [407]
    mock.clock.advance(24 * 3600)
    assert client.login()["success"] is True  # a day idle: the session is long gone
    assert client.call("getDevList", stationCodes=code)["success"] is True


def test_at_most_100_codes_per_call(client):
    codes = ",".join(f"NE={n}" for n in range(101))
    for interface in ("getStationRealKpi", "getDevList", "getKpiStationHour"):
        answer = client.call(interface, stationCodes=codes, collectTime=1)
        assert (answer["success"], answer["failCode"]) == (False, 20400)
    answer = client.call("getDevRealKpi", devIds=",".join(map(str, range(101))), devTypeId=1)
    assert answer["failCode"] == 20400
    assert app(client.server).stats.refusals["params"] == 4


def test_plant_list_pages_by_page_no_at_most_100_per_page(vendor_mock_factory):
    c = Client(vendor_mock_factory("fusionsolar", sites=150))
    c.login()
    first, second = c.call("stations", pageNo=1)["data"], c.call("stations", pageNo=2)["data"]
    assert (first["total"], first["pageCount"], len(first["list"]), len(second["list"])) == (150, 2, 100, 50)
    codes = [p["plantCode"] for p in first["list"] + second["list"]]
    assert len(set(codes)) == 150
    assert c.call("stations", pageNo=1, pageSize=101)["failCode"] == 20400
    assert c.call("stations")["failCode"] == 20400


def test_devices_are_listed_per_plant_some_plants_with_two_batteries(client):
    mock = app(client.server)
    two = next(s for s in mock.fleet.sites if s.batteries == 2)
    devices = client.call("getDevList", stationCodes=station_code(two))["data"]
    batteries = [d for d in devices if d["devTypeId"] == BATTERY]
    assert len(batteries) == 2 and len({d["id"] for d in batteries}) == 2
    answer = client.call("getDevRealKpi", devIds=",".join(str(d["id"]) for d in batteries), devTypeId=BATTERY)
    assert [item["devId"] for item in answer["data"]] == [d["id"] for d in batteries]
    assert all("battery_soc" in item["dataItemMap"] for item in answer["data"])


def test_a_device_type_that_does_not_match_the_devices_answers_20006(client):
    mock = app(client.server)
    inverter = devices_of(mock.fleet.sites[0])[0]
    answer = client.call("getDevRealKpi", devIds=str(inverter.id), devTypeId=BATTERY)
    assert (answer["success"], answer["failCode"]) == (False, 20006)


def test_real_time_answers_carry_only_the_envelope_time_and_refresh_every_5_minutes(client):
    mock = app(client.server)
    mock.clock.set("2024-03-31T10:02:00Z")  # midday in Berlin
    client.login()
    inverter = devices_of(mock.fleet.sites[0])[0]

    def read() -> tuple[int, dict[str, Any]]:
        answer = client.call("getDevRealKpi", devIds=str(inverter.id), devTypeId=INVERTER)
        (item,) = answer["data"]
        assert set(item) == {"devId", "sn", "dataItemMap"}  # no per-item time
        return answer["params"]["currentTime"], item["dataItemMap"]

    at, first = read()
    assert at == int(datetime(2024, 3, 31, 10, 2, tzinfo=UTC).timestamp() * 1000)
    mock.clock.advance(300)
    _, second = read()
    # The newest complete 5-minute interval at 10:02 is 09:55-10:00, at 10:07 it is 10:00-10:05.
    midpoints = (datetime(2024, 3, 31, 9, 57, 30, tzinfo=UTC), datetime(2024, 3, 31, 10, 2, 30, tzinfo=UTC))
    expected = [mock.fleet.pv_w(inverter.site, t.timestamp()) for t in midpoints]
    assert [first["active_power"], second["active_power"]] == [round(w / 1000, 3) for w in expected]


def test_hourly_history_is_null_until_reported_then_filled_with_epoch_ms_hour_starts(client):
    mock = app(client.server)
    berlin = next(s for s in mock.fleet.sites if s.zone_name == "Europe/Berlin")
    mock.clock.set("2024-03-31T10:30:00Z")  # 12:30 CEST, on the day Berlin skips 02:00-03:00
    client.login()
    mock.set_report_lag(station_code(berlin), 3600)
    collect = int(mock.clock.now() * 1000)
    hours = client.call("getKpiStationHour", stationCodes=station_code(berlin), collectTime=collect)["data"]
    starts = [h["collectTime"] for h in hours]
    midnight = int(datetime(2024, 3, 30, 23, 0, tzinfo=UTC).timestamp() * 1000)  # 00:00 CET
    assert starts == [midnight + i * 3_600_000 for i in range(12)]  # 00:00 .. 12:00 local = 11 UTC hours + 1
    energy = {h["collectTime"]: h["dataItemMap"]["inverter_power"] for h in hours}
    nine_utc = int(datetime(2024, 3, 31, 9, 0, tzinfo=UTC).timestamp() * 1000)
    assert energy[nine_utc] is None  # the 09-10 UTC hour ended 30 minutes ago, reported an hour late
    assert energy[nine_utc - 3_600_000] is not None

    mock.clock.advance(1800)
    later = client.call("getKpiStationHour", stationCodes=station_code(berlin), collectTime=collect)["data"]
    filled = {h["collectTime"]: h["dataItemMap"]["inverter_power"] for h in later}
    expected = mock.fleet.pv_energy_wh(berlin, nine_utc / 1000, nine_utc / 1000 + 3600) / 1000
    assert filled[nine_utc] == round(expected, 4) > 0


def test_hourly_history_of_a_dst_day_has_23_hours_in_the_plants_local_day(client):
    mock = app(client.server)
    berlin = next(s for s in mock.fleet.sites if s.zone_name == "Europe/Berlin")
    mock.clock.set("2024-04-01T12:00:00Z")
    client.login()
    a_time_that_day = int(datetime(2024, 3, 31, 20, 0, tzinfo=UTC).timestamp() * 1000)
    hours = client.call("getKpiStationHour", stationCodes=station_code(berlin), collectTime=a_time_that_day)["data"]
    starts = [h["collectTime"] for h in hours]
    midnight_cet = int(datetime(2024, 3, 30, 23, 0, tzinfo=UTC).timestamp() * 1000)
    assert starts == [midnight_cet + i * 3_600_000 for i in range(23)]
    assert all(h["dataItemMap"]["inverter_power"] is not None for h in hours)


def test_anything_but_post_is_refused(fusionsolar_mock):
    response = requests.get(f"{fusionsolar_mock.url}/thirdData/getStationList", timeout=10)
    assert response.status_code == 405


def test_the_snapshot_helper_agrees_with_get_dev_real_kpi(client):
    mock = app(client.server)
    mock.clock.set("2024-03-31T11:03:20Z")
    client.login()
    battery = next(d for d in mock.devices.values() if d.type_id == BATTERY)
    answer = client.call("getDevRealKpi", devIds=str(battery.id), devTypeId=BATTERY)
    at, items = mock.snapshot(battery.id)
    assert at == int(datetime(2024, 3, 31, 11, 0, tzinfo=UTC).timestamp() * 1000) <= answer["params"]["currentTime"]
    assert answer["data"][0]["dataItemMap"] == items


def test_time_scale_shrinks_budget_periods_and_the_token_idle_time(vendor_mock_factory):
    c = Client(vendor_mock_factory("fusionsolar", sites=10, time_scale=1 / 60))
    mock = app(c.server)
    c.login()
    codes = ",".join(mock.station_codes())
    assert [c.call("getStationRealKpi", stationCodes=codes)["failCode"] for _ in range(2)] == [0, 407]
    mock.clock.advance(5)  # five "minutes"
    assert c.call("getStationRealKpi", stationCodes=codes)["success"] is True
    mock.clock.advance(31)  # thirty idle "minutes"
    assert c.call("getStationRealKpi", stationCodes=codes)["failCode"] == 305
