"""The plug-in seam: `source.adapter` names a class; the README's example adapter (CSV meters)
runs through the real cycle runner against a vendor over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.settings import WorkerSettings
from functions.sync_worker.source.examples.csv_meter import CsvMeterSource
from functions.sync_worker.source.plugins import AdapterError, load_adapter_class
from functions.sync_worker.store import MemoryState
from functions.sync_worker.wiring import build_source, required_source_secret_env
from tests.source.conftest import RecordingPublisher, frozen
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

ADAPTER = "functions.sync_worker.source.examples.csv_meter:CsvMeterSource"
T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def meters() -> Iterator[tuple[VendorStub, dict[int, str]]]:
    kwh: dict[int, str] = {int((T0 + timedelta(minutes=15 * i)).timestamp()): f"{i}.5" for i in range(1, 5)}

    def readings(request: StubRequest):
        if request.headers.get("x-meter-token") != "tok-123456":
            return 401, b"denied"
        lo, hi = int(request.query["from"]), int(request.query["to"])
        rows = "".join(f"{t},{v}\n" for t, v in sorted(kwh.items()) if lo < t <= hi)
        return 200, ("epoch_s,kwh\n" + rows).encode()

    with VendorStub() as stub:
        stub.route("GET", "/meters", lambda r: (200, b"meter_id\nm-1\nm-2\n"))
        stub.route("GET", "/meters/m-1/readings.csv", readings)
        stub.route("GET", "/meters/m-2/readings.csv", readings)
        yield stub, kwh


def settings(monkeypatch: pytest.MonkeyPatch, url: str) -> WorkerSettings:
    monkeypatch.setenv("C2C_SOURCE_ADAPTER", ADAPTER)
    monkeypatch.setenv("C2C_SOURCE_SETTINGS", '{"token_header": "X-Meter-Token"}')
    monkeypatch.setenv("C2C_SOURCE_URL", url)
    monkeypatch.setenv("C2C_SOURCE_METER_TOKEN", "tok-123456")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtt://127.0.0.1:1883")
    return WorkerSettings()


def test_the_example_adapter_is_chosen_by_settings_and_syncs_late_values(meters, monkeypatch):
    stub, kwh = meters
    source = build_source(settings(monkeypatch, stub.url))
    assert isinstance(source, CsvMeterSource)
    stations = source.list_stations()
    assert [s.station_id for s in stations] == ["m-1", "m-2"]
    last = max(kwh)
    kwh[last] = ""  # not reported yet
    state = MemoryState()
    for sid in ("m-1", "m-2"):
        state.advance_cursor(sid, T0)
    first, second = RecordingPublisher(), RecordingPublisher()
    for publisher, now in ((first, T0 + timedelta(hours=1)), (second, T0 + timedelta(hours=1, minutes=5))):
        runner = CycleRunner(source, publisher, state, concurrency=2, now=frozen(now))
        try:
            record = runner.run(stations).record
        finally:
            runner.close()
        assert record.stations_synced == 2
        kwh[last] = "4.5"
    assert len(first.payloads) == 6 and len(second.payloads) == 2
    assert {p["values"]["energy_kwh"] for p in second.payloads} == {4.5}
    assert {p["series"] for p in first.payloads} == {"meter"}
    source.close()


def test_required_secret_env_vars_come_from_the_adapter_or_the_vendor_auth(meters, monkeypatch):
    stub, _ = meters
    assert required_source_secret_env(settings(monkeypatch, stub.url)) == ["C2C_SOURCE_METER_TOKEN"]
    monkeypatch.delenv("C2C_SOURCE_ADAPTER")
    assert required_source_secret_env(WorkerSettings()) == ["C2C_SOURCE_API_KEY"]
    monkeypatch.setenv("C2C_SOURCE_CONFIG", str(_session_vendor_file(stub)))
    assert required_source_secret_env(WorkerSettings()) == ["C2C_SOURCE_USER", "C2C_SOURCE_PASSWORD"]


def _session_vendor_file(stub: VendorStub):
    import tempfile
    from pathlib import Path

    import yaml

    path = Path(tempfile.mkdtemp()) / "session.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "session",
                "auth": {
                    "type": "session",
                    "login": {"path": "/login", "json": {"u": "{user}", "p": "{password}"}},
                    "secrets": ["user", "password"],
                    "token": {"from": "header", "name": "x-token"},
                    "send": {"as": "header", "name": "x-token"},
                },
                "stations": {"path": "/s"},
                "readings": {"path": "/r/{station_id}", "values": {"v": "v"}},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon_here", "expected package.module:Class"),
        ("functions.nope:Thing", "cannot import"),
        ("functions.sync_worker.source.examples.csv_meter:Nope", "has no 'Nope'"),
        ("entrypoint:nothing-installed", "no 'c2c_sync.sources' entry point"),
    ],
)
def test_a_bad_adapter_spec_is_a_clear_error(spec, message):
    with pytest.raises(AdapterError, match=message):
        load_adapter_class(spec)
