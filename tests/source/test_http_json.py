"""The generic HTTP JSON source, configured by vendors/simulator.yaml, against the real simulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest

from functions.sync_worker.errors import AuthError
from functions.sync_worker.source.base import Reading, ReadingBatch, SourceAdapter, Station
from functions.sync_worker.source.http_json import HttpJsonSource, VendorConfigError, load_source, load_vendor_config
from tests.source.conftest import NOW, make_source
from tests.support.simulator import DEFAULT_API_KEY

pytestmark = pytest.mark.integration

SITE = Station("site-00001")


def test_load_source_builds_a_source_adapter_from_the_shipped_config(sim):
    source = load_source("simulator", sim.url, {"api_key": DEFAULT_API_KEY}, pool_size=4)
    try:
        assert isinstance(source, SourceAdapter)
        assert source.base_url == sim.url and source.config.name == "simulator"
        assert len(source.list_stations()) == 250
    finally:
        source.close()


def test_list_stations_follows_page_numbers(sim):
    source = make_source(sim)
    stations = source.list_stations()
    assert [s.station_id for s in stations] == [f"site-{i:05d}" for i in range(1, 251)]
    assert stations[0].name and set(stations[0].attributes) == {
        "capacity_kwh",
        "max_power_kw",
        "latitude",
        "longitude",
        "utc_offset_s",
    }
    assert sim.stats()["by_endpoint"] == {"sites": 3}  # 250 stations at page size 100


def test_list_stations_follows_next_links(sim):
    source = make_source(
        sim,
        stations={
            "page_size": 40,
            "params": {"page_size": "{page_size}"},
            "pagination": {"type": "link", "next": "links.next"},
        },
    )
    assert len(source.list_stations()) == 250
    assert sim.stats()["by_endpoint"] == {"sites": 7}  # ceil(250 / 40)


def test_list_stations_page_number_without_total_stops_on_a_short_page(sim):
    source = make_source(sim, stations={"pagination": {"type": "page_number", "page_param": "page"}})
    assert len(source.list_stations()) == 250
    assert sim.stats()["by_endpoint"] == {"sites": 3}


def test_readings_window_excludes_since_and_includes_until(sim):
    source = make_source(sim)
    since, until = NOW - timedelta(minutes=60), NOW - timedelta(minutes=50)
    batch = source.fetch_readings(SITE, since, until, limit=100)
    assert isinstance(batch, ReadingBatch)
    assert all(isinstance(r, Reading) for r in batch)
    assert [r.ts for r in batch] == [since + timedelta(minutes=m) for m in range(1, 11)]
    assert batch.resume is None and batch.skipped == 0 and batch.complete_through == until
    assert all(r.ts.tzinfo is not None and r.ts.utcoffset() == timedelta(0) for r in batch)


def test_an_empty_window_costs_no_vendor_call(sim):
    source = make_source(sim)
    assert (
        source.fetch_readings(SITE, NOW, NOW, 10) == []
        and source.fetch_readings(SITE, NOW, NOW - timedelta(1), 10) == []
    )
    assert sim.stats()["requests_total"] == 0


def test_readings_page_by_the_vendors_token_and_the_window_completes_on_the_last_page(sim):
    source = make_source(sim, readings={"max_page_size": 40})
    since = NOW - timedelta(hours=3)
    pages = [source.fetch_readings(SITE, since, NOW, limit=150)]
    while pages[-1].resume is not None:
        pages.append(source.fetch_readings(SITE, since, NOW, limit=150, resume=pages[-1].resume))
    assert [len(p) for p in pages] == [40, 40, 40, 40, 20]
    assert sim.stats(["site-00001"])["stations"]["site-00001"]["requests"] == 5
    # Oldest first across pages (`ordered`): complete up to just before each page's last reading.
    assert [p.complete_through for p in pages[:-1]] == [p[-1].ts - timedelta(microseconds=1) for p in pages[:-1]]
    assert pages[-1].complete_through == NOW
    timeline = [r.ts for p in pages for r in p]
    assert timeline == [since + timedelta(minutes=m) for m in range(1, 181)]


def test_unordered_pages_are_complete_only_after_the_last_one(sim):
    source = make_source(sim, readings={"max_page_size": 40, "ordered": False})
    first = source.fetch_readings(SITE, NOW - timedelta(hours=1), NOW, limit=40)
    assert first.resume is not None and first.complete_through is None
    last = source.fetch_readings(SITE, NOW - timedelta(hours=1), NOW, limit=40, resume=first.resume)
    assert last.resume is None and last.complete_through == NOW


def test_readings_are_deterministic_and_ids_stable(sim):
    source = make_source(sim)
    window = (NOW - timedelta(minutes=30), NOW)
    one, two = source.fetch_readings(SITE, *window, 100), source.fetch_readings(SITE, *window, 100)
    assert [(r.message_id, r.values) for r in one] == [(r.message_id, r.values) for r in two]
    assert one[-1].message_id == "site-00001:readings:2024-06-01T12:00:00.000000Z"


def test_values_follow_the_mapping_names_and_types(sim):
    source = make_source(sim)
    reading = source.fetch_readings(Station("site-00002"), NOW - timedelta(minutes=1), NOW, 10)[0]
    assert set(reading.values) == set(load_vendor_config("simulator").readings[0].values)
    assert isinstance(reading.values["status_code"], int) and isinstance(reading.values["soc_pct"], float)
    assert isinstance(reading.values["status"], str)
    assert 0 <= reading.values["soc_pct"] <= 100


def test_concurrent_fetches_share_one_keep_alive_pool(sim):
    source = make_source(sim, pool_size=4)
    stations = [Station(f"site-{i:05d}") for i in range(1, 61)]
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda s: source.fetch_readings(s, NOW - timedelta(minutes=5), NOW, 10), stations))
    assert [len(b) for b in batches] == [5] * 60
    stats = sim.stats()
    assert stats["by_endpoint"] == {"telemetry": 60}
    # 60 requests from 8 threads over a pool of 4: at most 4 connections (+1 for this stats call).
    assert stats["connections_total"] - 1 <= 4


def test_epoch_time_format_and_strptime_timestamps_are_supported(sim):
    # The simulator only speaks ISO; this checks the rendering/parsing helpers on a config variant.
    from functions.sync_worker.source.config import TimestampSpec
    from functions.sync_worker.source.mapping import timestamp_parser

    assert timestamp_parser(TimestampSpec(format="epoch_ms"))(1717243200000, UTC) == NOW
    assert timestamp_parser(TimestampSpec(format="epoch_s"))("1717243200", UTC) == NOW
    plus_two = timezone(timedelta(hours=2))
    assert timestamp_parser(TimestampSpec(format="%Y-%m-%d %H:%M"))("2024-06-01 14:00", plus_two) == NOW


def test_config_errors_name_the_field(tmp_path: Path):
    with pytest.raises(VendorConfigError, match=r"readings\.values\.soc_pct\.path") as bad_path:
        vendor_config_file(tmp_path, "readings", {"values": {"soc_pct": "battery.[soc"}})
    assert "invalid JMESPath" in str(bad_path.value)
    with pytest.raises(VendorConfigError, match=r"unknown placeholder.*'nope'"):
        vendor_config_file(tmp_path, "readings", {"params": {"since": "{nope}"}})
    with pytest.raises(VendorConfigError, match=r"auth\.api_key\.colour"):
        vendor_config_file(tmp_path, "auth", {"colour": "blue"})
    with pytest.raises(
        VendorConfigError,
        match=r"not found.*shipped vendors: \['huawei_fusionsolar', 'simulator', 'simulator_v2', 'solaredge'\]",
    ):
        load_source("no-such-vendor", "http://127.0.0.1:1", {})


def vendor_config_file(tmp_path: Path, section: str, patch: dict) -> HttpJsonSource:
    import yaml

    raw = load_vendor_config("simulator").model_dump(mode="json", exclude_none=True)
    raw["readings"] = raw["readings"][0]  # one endpoint, written as a mapping like the shipped file
    raw[section] = {**raw[section], **patch}
    path = tmp_path / "vendor.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_source(path, "http://127.0.0.1:1", {"api_key": "x"})


def test_a_missing_secret_is_an_auth_error_at_load():
    with pytest.raises(AuthError, match="'api_key' is not set"):
        load_source("simulator", "http://127.0.0.1:1", {})


def test_bearer_auth_against_the_simulator_in_bearer_mode(simulator_factory):
    sim = simulator_factory(auth="bearer", api_key="static-token", stations=3)
    source = make_source(sim, auth={"type": "bearer", "secret": "api_token"}, secrets={"api_token": "static-token"})
    assert len(source.list_stations()) == 3
    assert sim.stats()["auth_failures"] == 0
