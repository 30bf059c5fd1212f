"""Unit tests of the worker's small parts (no network unless a real Redis is named)."""

from __future__ import annotations

import json
import math
import os
import ssl
import time
from datetime import datetime, timezone

import pytest
import redis

from functions.common.signal import Command, Source, StartSignal
from functions.common.state import CycleRecord, StateKeys
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.health import check
from functions.sync_worker.observability import WorkerTelemetry
from functions.sync_worker.settings import load_settings
from functions.sync_worker.signals import ReceivedSignal, unwrap_body
from functions.sync_worker.source.base import Reading
from functions.sync_worker.store import Lease, LeaseLost, StateStore
from functions.sync_worker.transform import to_message
from functions.sync_worker.uplink.generic import GenericProfile
from functions.sync_worker.uplink.profile import OutboundMessage
from functions.sync_worker.worker import Job

TS = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def received(stations=None) -> ReceivedSignal:
    return ReceivedSignal(StartSignal(command=Command.SYNC_NOW, source=Source.CLI, stations=stations))


def test_coalesced_job_runs_the_union_of_subsets_or_everything_if_any_signal_says_all():
    job = Job()
    job.absorb(received(["a", "b"]))
    job.absorb(received(["c"]))
    assert job.stations == {"a", "b", "c"} and len(job.signals) == 2
    job.absorb(received(None))
    job.absorb(received(["d"]))
    assert job.stations is None


def test_payload_has_schema_version_stable_id_and_values():
    message = to_message(Reading("site-1", TS, {"soc_pct": 51.5}))
    body = json.loads(message.payload)
    assert body == {"schema": 1, "message_id": "site-1:2024-06-01T12:00:00.000000Z", "station_id": "site-1",
                    "ts": "2024-06-01T12:00:00.000000Z", "values": {"soc_pct": 51.5}}
    assert message.message_id == body["message_id"]


@pytest.mark.parametrize("values", [{"x": math.nan}, {"x": object()}])
def test_a_reading_that_cannot_be_encoded_is_a_permanent_error(values):
    with pytest.raises(PermanentError):
        to_message(Reading("site-1", TS, values))


def test_generic_profile_routes_by_template_checks_limits_and_verifies_tls():
    profile = GenericProfile.from_url("mqtts://broker.example", "gw-1", env="prod", username="u", password="p")
    spec = profile.connection_spec(profile.identity_for("site-9"))
    assert (spec.host, spec.port, spec.client_id, spec.username) == ("broker.example", 8883, "gw-1", "u")
    assert spec.tls.verify_mode == ssl.CERT_REQUIRED and spec.tls.check_hostname
    message = OutboundMessage("site-9", "m", b"{}")
    assert profile.topic_for("gw-1", message) == "c2c/prod/stations/site-9/telemetry"
    profile.check(message, qos=1, retain=False)
    with pytest.raises(PermanentError, match="exceeds"):
        profile.check(OutboundMessage("site-9", "m", b"x" * (256 * 1024 + 1)), qos=1, retain=False)
    insecure = GenericProfile.from_url("mqtts://h", "c", insecure=True).connection_spec("c").tls
    assert insecure.verify_mode == ssl.CERT_NONE
    assert GenericProfile.from_url("mqtt://h", "c").connection_spec("c").tls is None


def test_settings_read_c2c_env_vars_and_mask_secrets(monkeypatch):
    monkeypatch.setenv("C2C_STATIONS", "site-1, site-2,")
    monkeypatch.setenv("C2C_MQTT_PASSWORD", "hunter2")
    settings = load_settings(env="prod")
    assert settings.stations == ["site-1", "site-2"]
    assert settings.client_id == "c2c-sync-prod" and settings.state_keys.prefix == "c2c:prod"
    assert settings.redacted()["mqtt_password"] == "**********"
    assert "hunter2" not in json.dumps(settings.redacted())


def test_sns_envelope_is_unwrapped():
    inner = StartSignal(command=Command.RELOAD, source=Source.HTTP).to_json()
    assert unwrap_body(json.dumps({"Type": "Notification", "Message": inner})) == inner
    assert unwrap_body(inner) == inner


def test_cycle_metrics_use_the_contract_namespace_names_and_dimensions(capsys):
    now = datetime.now(timezone.utc)
    record = CycleRecord(started_at=now, finished_at=now, duration_ms=12.5, stations_total=3, stations_synced=2,
                         stations_failed=1, readings_published=7, errors_by_class={"transient": 1})
    from collections import Counter
    WorkerTelemetry("prod").cycle(record, readings_skipped=1, connections_opened=1,
                                  reconnects=Counter({"connection_lost": 2}), planned_reconnects=0,
                                  puback_latencies_ms=[1.0, 3.0])
    doc = json.loads([line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line][0])
    meta = doc["_aws"]["CloudWatchMetrics"][0]
    assert meta["Namespace"] == "C2CSync" and meta["Dimensions"] == [["Environment", "service"]]
    assert (doc["Environment"], doc["service"]) == ("prod", "sync-worker")
    names = {m["Name"] for m in meta["Metrics"]}
    assert {"CycleDuration", "CyclesCompleted", "StationsSynced", "StationsFailed", "StationsFailed_transient",
            "ReadingsPublished", "ReadingsSkipped", "MqttConnectionsOpened", "MqttReconnects",
            "MqttPlannedReconnects", "PubackLatency"} <= names
    assert doc["MqttReconnects"] == [2.0] and doc["ReadingsPublished"] == [7.0]


def test_health_needs_a_live_process_mqtt_connected_and_a_fresh_heartbeat(tmp_path):
    path = tmp_path / "status.json"
    assert check(str(path))[0] is False
    base = {"worker_id": "w", "pid": os.getpid(), "at": time.time(), "lease_held": True}
    path.write_text(json.dumps({**base, "mqtt_connected": True, "heartbeat_at": time.time()}))
    assert check(str(path))[0] is True
    path.write_text(json.dumps({**base, "mqtt_connected": False, "heartbeat_at": time.time()}))
    assert check(str(path)) == (False, "MQTT not connected")
    path.write_text(json.dumps({**base, "mqtt_connected": True, "heartbeat_at": time.time() - 600}))
    assert "stale" in check(str(path))[1]


@pytest.mark.integration
def test_lease_is_exclusive_fenced_and_a_stale_holder_cannot_write_cursors(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = StateKeys("c2c:unit")
    first, second = Lease(client, keys, "w1", ttl_s=1), Lease(client, keys, "w2", ttl_s=1)
    assert first.try_acquire() and not second.try_acquire()
    store = StateStore(client, keys, first)
    store.advance_cursor("site-1", TS)
    first._stop.set()  # simulate a paused worker: its renewals stop...
    first._renewer.join()
    time.sleep(1.1)  # ...and the lease expires
    assert second.try_acquire() and second.token == first.token + 1
    first._held.set()
    first._valid_until = time.monotonic() + 10  # it still believes it holds the lease
    with pytest.raises(LeaseLost):
        store.advance_cursor("site-1", TS.replace(hour=13))
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:00:00.000000Z"
    StateStore(client, keys, second).advance_cursor("site-1", TS.replace(hour=11))
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:00:00.000000Z", "cursors never move backwards"
    second.release()
    assert client.get(keys.lease) is None
