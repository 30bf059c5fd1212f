"""The engine against the SolarEdge mock (vendor_mocks/, written from SolarEdge's public docs,
not from our simulator): a vendor config of the shape the SolarEdge definition needs (GET, api_key
in the query, offset-paged site list, site-local times across the Berlin DST night, quarter-hours
listed null until reported, storage telemetries nested per battery serial, 3 calls at a time),
checked against the mock's own ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher, frozen

pytestmark = pytest.mark.integration

LOCAL = "%Y-%m-%d %H:%M:%S"
SOLAREDGE = {
    "name": "solaredge-fit",
    "auth": {"type": "api_key", "query_param": "api_key", "secret": "api_key"},
    "http": {
        "max_concurrency": 3,
        "retries": {"attempts": 2, "backoff_initial_s": 0.05},
        "errors": [{"status": [403, 400], "error": "permanent", "message": "String"}],
    },
    "stations": {
        "path": "/sites/list",
        "params": {"size": "{page_size}"},
        "pagination": {"type": "offset", "offset_param": "startIndex", "total": "sites.count"},
        "items": "sites.site",
        "id": "id",
        "attributes": {"timeZone": "location.timeZone"},
    },
    "readings": [
        {
            "name": "power",
            "path": "/site/{station_id}/power",
            "params": {"startTime": "{since}", "endTime": "{until}"},
            "time_format": LOCAL,
            "station_zone": "timeZone",
            "max_window_s": 7 * 86400,
            "items": "power.values",
            "timestamp": {"path": "date", "format": LOCAL},
            "values": {"power_w": {"path": "value", "type": "float", "required": True}},
            "lookback_s": 3600,
        },
        {
            "name": "storage",
            "path": "/site/{station_id}/storageData",
            "params": {"startTime": "{since}", "endTime": "{until}"},
            "time_format": LOCAL,
            "station_zone": "timeZone",
            "max_window_s": 7 * 86400,
            "items": "storageData.batteries",
            "nested": "telemetries",
            "series": "serialNumber",
            "timestamp": {"path": "timeStamp", "format": LOCAL},
            "values": {"power_w": {"path": "power", "type": "float"}},
            "lookback_s": 3600,
        },
    ],
}


def test_a_solaredge_shaped_config_delivers_exactly_what_the_mock_reports(vendor_mock_factory):
    mock = vendor_mock_factory("solaredge", sites=8)
    app = mock.app
    source = HttpJsonSource(VendorConfig.model_validate(SOLAREDGE), base_url=mock.url, secrets={"api_key": app.api_key})
    stations = source.list_stations()
    assert len(stations) == 8 and {s.attributes["timeZone"] for s in stations} >= {"Europe/Berlin", "America/New_York"}
    state = MemoryState()
    start = app.clock.now_dt()  # 2024-03-31 00:00 UTC: Berlin springs forward at 01:00 UTC
    for s in stations:
        for endpoint in ("power", "storage"):
            state.advance_cursor(s.station_id, start, endpoint=endpoint)
    latest: dict[str, dict] = {}
    for _ in range(4):  # four hourly cycles across the DST change
        app.clock.advance(3600)
        now = app.clock.now_dt()
        publisher = RecordingPublisher()
        runner = CycleRunner(source, publisher, state, concurrency=6, now=frozen(now))
        try:
            record = runner.run(stations).record
        finally:
            runner.close()
        assert record.stations_failed == 0, record
        latest.update({p["message_id"]: p for p in publisher.payloads})
    assert app.stats.refused_total() == 0, app.stats
    delivered = {p["series"].split("/")[0] for p in latest.values()}
    assert delivered == {"power", "storage"} and len(latest) > 8 * 4 * 4

    for s in stations:
        sid = int(s.station_id)
        power_cursor = state.cursors("power")[s.station_id]
        want = app.reported_power(sid, start, power_cursor + timedelta(microseconds=1))
        got = {
            datetime.fromisoformat(p["ts"].replace("Z", "+00:00")): p["values"]["power_w"]
            for p in latest.values()
            if p["station_id"] == s.station_id and p["series"] == "power"
        }
        # The lookback also reads the hour before the first cursor: only what follows it is compared.
        got = {t: v for t, v in got.items() if t > start}
        assert got == {t: v for t, v in want.items() if start < t <= power_cursor}, s.station_id
        storage_cursor = state.cursors("storage")[s.station_id]
        want_storage = app.reported_storage(sid, start, storage_cursor + timedelta(microseconds=1))
        got_storage = {
            (p["series"].split("/", 1)[1], datetime.fromisoformat(p["ts"].replace("Z", "+00:00"))): p["values"][
                "power_w"
            ]
            for p in latest.values()
            if p["station_id"] == s.station_id and p["series"].startswith("storage/")
        }
        got_storage = {k: v for k, v in got_storage.items() if k[1] > start}
        assert got_storage == {k: v for k, v in want_storage.items() if start < k[1] <= storage_cursor}, s.station_id
    assert datetime(2024, 3, 31, 4, tzinfo=UTC) == app.clock.now_dt()
    source.close()
