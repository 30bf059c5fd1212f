"""Unit tests of the worker's small parts (no network unless a real Redis is named)."""

from __future__ import annotations

import json
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from functions.common.signal import Command, Source, StartSignal
from functions.common.state import CycleRecord, StateKeys
from functions.common.telemetry import PUBACK_LATENCY_SAMPLES
from functions.sync_worker.cli import _settings as cli_settings
from functions.sync_worker.cli import build_parser
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.health import check
from functions.sync_worker.observability import WorkerTelemetry
from functions.sync_worker.settings import ConfigError, load_settings
from functions.sync_worker.signals import ReceivedSignal, unwrap_body
from functions.sync_worker.source.base import DEFAULT_ENDPOINT, Reading
from functions.sync_worker.store import FENCED, CursorWrite, Lease, LeaseLost, StateStore, cursor_group
from functions.sync_worker.transform import to_message
from functions.sync_worker.uplink.profile import OutboundMessage
from functions.sync_worker.uplink.profiles import build_profile
from functions.sync_worker.uplink.profiles.generic import GenericProfile
from functions.sync_worker.wiring import build_uplink
from functions.sync_worker.worker import Job

TS = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


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
    message = to_message(Reading("site-1", TS, {"soc_pct": 51.5}, series="battery/BAT-2"))
    body = json.loads(message.payload)
    assert body == {
        "schema": 2,
        "message_id": "site-1:battery/BAT-2:2024-06-01T12:00:00.000000Z",
        "station_id": "site-1",
        "series": "battery/BAT-2",
        "ts": "2024-06-01T12:00:00.000000Z",
        "values": {"soc_pct": 51.5},
    }
    assert message.message_id == body["message_id"]


def test_message_ids_differ_per_device_and_cannot_run_into_each_other():
    # Two batteries of one station at one time: one id each (schema 1 gave both "site-1:<ts>").
    ids = {Reading("site-1", TS, {}, series=f"battery/{d}").message_id for d in ("BAT-1", "BAT-2")}
    assert len(ids) == 2
    # `:` inside a station id or a series is escaped, so ("a:b", "c") and ("a", "b:c") stay apart.
    assert Reading("a:b", TS, {}, series="c").message_id != Reading("a", TS, {}, series="b:c").message_id
    assert Reading("NE=1:%", TS, {}, series="s").message_id == "NE=1%3A%25:s:2024-06-01T12:00:00.000000Z"


@pytest.mark.parametrize("values", [{"x": math.nan}, {"x": object()}])
def test_a_reading_that_cannot_be_encoded_is_a_permanent_error(values):
    with pytest.raises(PermanentError):
        to_message(Reading("site-1", TS, values))


@pytest.fixture
def no_c2c_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("C2C_"):
            monkeypatch.delenv(key)


def test_generic_profile_from_settings_routes_by_template_checks_limits_and_verifies_tls(no_c2c_env):
    profile = build_profile(
        load_settings(
            mqtt_url="mqtts://broker.example", mqtt_client_id="gw-1", env="prod", mqtt_username="u", mqtt_password="p"
        )
    )
    assert isinstance(profile, GenericProfile)
    spec = profile.connection_spec(profile.identity_for("site-9"))
    assert (spec.host, spec.port, spec.client_id, spec.username, spec.password) == (
        "broker.example",
        8883,
        "gw-1",
        "u",
        "p",
    )
    assert spec.tls is not None and spec.will is not None
    assert spec.tls.verify_mode == ssl.CERT_REQUIRED and spec.tls.check_hostname
    assert (spec.will.topic, spec.will.payload, spec.will.retain) == ("c2c/prod/status/gw-1", b"offline", True)
    message = OutboundMessage("site-9", "m", b"{}")
    assert profile.topic_for("gw-1", message) == "c2c/prod/stations/site-9/telemetry"
    profile.check(message, qos=1, retain=False)
    with pytest.raises(PermanentError, match="over the configured 262144-byte limit"):
        profile.check(OutboundMessage("site-9", "m", b"x" * (256 * 1024 + 1)), qos=1, retain=False)
    insecure = build_profile(load_settings(mqtt_url="mqtts://h", mqtt_insecure=True)).connection_spec("c").tls
    assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE
    assert build_profile(load_settings(mqtt_url="mqtt://127.0.0.1")).connection_spec("c").tls is None


def test_cli_flags_reach_the_generic_profile_and_the_connection_pool(no_c2c_env):
    args = build_parser().parse_args(
        [
            "run",
            "--env",
            "prod",
            "--mqtt-url",
            "mqtts://broker.example:8884",
            "--mqtt-client-id",
            "gw-2",
            "--mqtt-username",
            "u",
            "--mqtt-topic",
            "t/{env}/{station_id}/{message_id}",
            "--mqtt-protocol",
            "5",
            "--mqtt-status-topic",
            "",
            "--mqtt-identity-mode",
            "per-device",
            "--mqtt-max-connections",
            "7",
        ]
    )
    settings = cli_settings(args)
    profile = build_profile(settings)
    assert isinstance(profile, GenericProfile)
    assert profile.per_device and profile.identity_for("site-3") == "site-3"
    spec = profile.connection_spec("site-3")
    assert (spec.host, spec.port, spec.protocol, spec.username, spec.will) == ("broker.example", 8884, 5, "u", None)
    assert profile.online_message("site-3") is None  # an empty status topic disables presence
    assert profile.topic_for("site-3", OutboundMessage("site-3", "m-1", b"{}")) == "t/prod/site-3/m-1"
    uplink = build_uplink(settings, profile)  # nothing connects before a station publishes (per-device)
    assert uplink._pool.max_connections == 7


def test_a_page_asks_for_its_stations_identity_once_and_refuses_every_message_of_an_invalid_one(no_c2c_env):
    profile = build_profile(load_settings(mqtt_identity_mode="per-device"))
    asked: list[str] = []
    identity_for = profile.identity_for

    def counting(station_id: str) -> str:
        asked.append(station_id)
        return identity_for(station_id)

    profile.identity_for = counting  # type: ignore[method-assign]  # count the calls of one page
    uplink = build_uplink(load_settings(mqtt_identity_mode="per-device"), profile)
    page = [to_message(Reading("site/1", TS.replace(minute=m), {"x": m})) for m in range(3)]
    refused = uplink.publish_page(page, uplink.new_batch())  # '/' is no MQTT client id: nothing connects
    assert [m.message_id for m, _ in refused] == [m.message_id for m in page]
    assert all("site/1" in str(exc) and exc.station_id == "site/1" for _, exc in refused)
    assert asked == ["site/1"]


def test_a_publish_batch_waits_for_its_last_resolution_keeps_the_permanent_error_and_times_out():
    from functions.sync_worker.errors import ThrottledError, TransientError
    from functions.sync_worker.uplink.batch import PublishBatch

    empty = PublishBatch()
    empty.wait(0.0)  # nothing queued: settled at once

    batch = PublishBatch()
    batch.added(3)

    def resolve() -> None:
        time.sleep(0.05)
        batch.acked()
        batch.failed(ThrottledError("quota"))
        batch.acked()

    resolver = threading.Thread(target=resolve)
    resolver.start()
    with pytest.raises(ThrottledError):
        batch.wait(10.0)  # woken by the third resolution, not before
    resolver.join()

    mixed = PublishBatch()
    mixed.added(3)
    mixed.failed(TransientError("first"))
    mixed.failed(PermanentError("refused"))
    mixed.failed(TransientError("later"))
    with pytest.raises(PermanentError, match="refused"):
        mixed.wait(1.0)

    late = PublishBatch()
    late.added(2)
    late.acked()
    with pytest.raises(TransientError, match="1 PUBACK"):
        late.wait(0.05)
    late.acked()  # the PUBACK after the deadline wakes no one and breaks nothing
    late.wait(0.0)  # and the batch now reads as settled
    late.added(1)  # a batch can take more after settling and be waited for again
    threading.Timer(0.05, late.acked).start()
    late.wait(10.0)


def test_max_connections_comes_from_the_environment(no_c2c_env, monkeypatch):
    monkeypatch.setenv("C2C_MQTT_MAX_CONNECTIONS", "42")
    assert load_settings().mqtt_max_connections == 42
    assert build_uplink(load_settings(mqtt_identity_mode="per-device"))._pool.max_connections == 42
    monkeypatch.setenv("C2C_MQTT_MAX_CONNECTIONS", "0")
    with pytest.raises(ConfigError, match="C2C_MQTT_MAX_CONNECTIONS"):
        load_settings()


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
    now = datetime.now(UTC)
    record = CycleRecord(
        started_at=now,
        finished_at=now,
        duration_ms=12.5,
        stations_total=3,
        stations_synced=2,
        stations_failed=1,
        readings_published=7,
        errors_by_class={"transient": 1},
    )
    from collections import Counter

    WorkerTelemetry("prod").cycle(
        record,
        readings_skipped=1,
        connections_opened=1,
        reconnects=Counter({"connection_lost": 2}),
        planned_reconnects=0,
        puback_latencies_ms=[1.0, 3.0],
    )
    doc = json.loads(next(line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line))
    meta = doc["_aws"]["CloudWatchMetrics"][0]
    assert meta["Namespace"] == "C2CSync" and meta["Dimensions"] == [["Environment", "service"]]
    assert (doc["Environment"], doc["service"]) == ("prod", "sync-worker")
    names = {m["Name"] for m in meta["Metrics"]}
    assert {
        "CycleDuration",
        "CyclesCompleted",
        "StationsSynced",
        "StationsFailed",
        "StationsFailed_transient",
        "ReadingsPublished",
        "ReadingsSkipped",
        "MqttConnectionsOpened",
        "MqttReconnects",
        "MqttPlannedReconnects",
        "PubackLatency",
    } <= names
    assert doc["MqttReconnects"] == [2.0] and doc["ReadingsPublished"] == [7.0]
    assert sorted(doc["PubackLatency"]) == [1.0, 3.0], "raw latencies, not derived statistics"


def test_puback_latency_is_a_uniform_sample_of_raw_values_within_one_emf_document(capsys):
    now = datetime.now(UTC)
    record = CycleRecord(
        started_at=now,
        finished_at=now,
        duration_ms=1.0,
        stations_total=1,
        stations_synced=1,
        stations_failed=0,
        readings_published=5000,
    )
    latencies = [float(i) for i in range(5000)]
    from collections import Counter

    WorkerTelemetry("prod").cycle(
        record,
        readings_skipped=0,
        connections_opened=0,
        reconnects=Counter(),
        planned_reconnects=0,
        puback_latencies_ms=latencies,
    )
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(docs) == 1, "the cycle's metrics must stay in one EMF document"
    sample = docs[0]["PubackLatency"]
    assert len(sample) == PUBACK_LATENCY_SAMPLES < 100
    assert len(set(sample)) == len(sample) and set(sample) <= set(latencies), "distinct raw values"
    # Uniform over the cycle, not its first or last values: the sample spans the range.
    assert min(sample) < 1000 and max(sample) > 4000


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
    stale_value = first.value
    assert first._renewal_stop is not None and first._renewer is not None
    first._renewal_stop.set()  # simulate a paused worker: its renewals stop...
    first._renewer.join()
    time.sleep(1.1)  # ...and the lease expires
    assert second.try_acquire()
    assert second.token is not None and first.token is not None and second.token > first.token
    first._value = stale_value
    first._valid_until = time.monotonic() + 10  # it still believes it holds the lease
    with pytest.raises(LeaseLost):
        store.advance_cursor("site-1", TS.replace(hour=13))
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:00:00.000000Z"
    StateStore(client, keys, second).advance_cursor("site-1", TS.replace(hour=11))
    assert client.hget(keys.cursors, "site-1") == "2024-06-01T12:00:00.000000Z", "cursors never move backwards"
    second.release()
    assert client.get(keys.lease) is None


def test_the_cli_applies_c2c_log_level_to_the_worker_logger(no_c2c_env, monkeypatch):
    from functions.sync_worker.cli import main
    from functions.sync_worker.observability import logger

    before = logger.log_level
    monkeypatch.setenv("C2C_LOG_LEVEL", "ERROR")
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "vendor-key")
    try:
        assert main(["validate-config"]) == 0
        assert logger.log_level == logging.ERROR
        stdlib_logger = logging.getLogger(logger.name)  # the logging.Logger Powertools writes through
        assert not stdlib_logger.isEnabledFor(logging.WARNING) and stdlib_logger.isEnabledFor(logging.ERROR)
    finally:
        logger.setLevel(before)


def _script_calls(client: redis.Redis) -> int:
    """EVALSHA calls Redis ran (NOSCRIPT refusals not among them)."""
    calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    return calls - int(client.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))


@pytest.mark.integration
def test_cursor_writes_of_concurrent_lanes_share_one_script_call_and_each_lane_gets_its_own_answer(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = StateKeys("c2c:group")
    lease = Lease(client, keys, "w1", ttl_s=10)
    assert lease.try_acquire()
    store = StateStore(client, keys, lease)
    client.script_flush()  # the first group's call meets NOSCRIPT and loads the script
    sizes: list[int] = []
    flush = store._cursor_writes._flush

    def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))  # each round trip's size
        flush(batch)

    store._cursor_writes._flush = counted  # type: ignore[method-assign]  # records each round trip's size
    start = threading.Barrier(16)

    def lane(i: int) -> None:
        start.wait()
        for minute in range(10):
            store.advance_cursor(
                f"site-{i}", TS.replace(minute=minute), published_through=TS.replace(minute=minute + 1)
            )

    before = _script_calls(client)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lane, range(16)))
    calls = _script_calls(client) - before
    assert client.hgetall(keys.cursors) == {f"site-{i}": "2024-06-01T12:09:00.000000Z" for i in range(16)}
    assert all(
        v == "2024-06-01T12:10:00.000000Z" for v in client.hgetall(keys.published_through(DEFAULT_ENDPOINT)).values()
    )
    assert sum(sizes) == 160 and max(sizes) > 1 and len(sizes) < 160, sizes
    assert calls == len(sizes), f"one script call per group: {calls} calls for {len(sizes)} groups"
    # A lost lease: every lane's next write is refused on its own, none hangs.
    client.delete(keys.lease)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(lambda i: _raises(lambda: store.advance_cursor(f"site-{i}", TS.replace(hour=13))), range(4))
        )
    assert outcomes == [LeaseLost] * 4
    assert client.hget(keys.cursors, "site-0") == "2024-06-01T12:09:00.000000Z"
    lease.release()


def _raises(call: Callable[[], object]) -> type[BaseException] | None:
    try:
        call()
    except BaseException as exc:
        return type(exc)
    return None


@pytest.mark.integration
def test_one_script_call_gives_each_write_of_a_group_its_own_outcome(redis_server):
    """Written, stale (never backwards), a write's own error, and a write carrying a lease value
    that is no longer current (fenced out, nothing of it written), all in one group."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = StateKeys("c2c:mix")
    lease = Lease(client, keys, "w1", ttl_s=10)
    assert lease.try_acquire()
    store = StateStore(client, keys, lease)
    stale_value = f"w0:{(lease.token or 0) - 1}"
    client.hset(keys.cursors, "site-2", "2024-06-01T13:00:00.000000Z")
    client.set(keys.cursors_of("broken"), "not a hash")  # every HGET on it fails with WRONGTYPE
    marks = keys.published_through(DEFAULT_ENDPOINT)

    def write(
        station: str,
        cursor: str,
        *,
        lease_value: str = lease.value,
        endpoint: str = DEFAULT_ENDPOINT,
        published: str = "",
        digests: list[tuple[str, str]] | None = None,
    ) -> CursorWrite:
        return CursorWrite(
            lease_value,
            keys.cursors_of(endpoint),
            keys.published_through(endpoint),
            station,
            cursor,
            published,
            [(keys.seen(m), d) for m, d in digests or []],
            600,
        )

    writes = [
        write("site-1", "2024-06-01T12:00:00.000000Z", digests=[("m1", "d1")]),
        write("site-2", "2024-06-01T12:30:00.000000Z"),  # behind what is stored
        write("site-3", "2024-06-01T12:00:00.000000Z", endpoint="broken", digests=[("m3", "d3")]),
        write("site-4", "2024-06-01T12:00:00.000000Z", lease_value=stale_value, digests=[("m4", "d4")]),
        write("site-5", "2024-06-01T12:00:00.000000Z", published="2024-06-01T12:05:00.000000Z"),
    ]
    before = _script_calls(client)
    outcomes = cursor_group(store._set_cursors, keys.lease, writes)
    assert _script_calls(client) - before == 2, "one call per lease value in the group"
    assert outcomes[0] == 1 and outcomes[1] == 0 and outcomes[3] == FENCED and outcomes[4] == 1, outcomes
    assert isinstance(outcomes[2], redis.ResponseError) and "WRONGTYPE" in str(outcomes[2])
    assert client.hgetall(keys.cursors) == {
        "site-1": "2024-06-01T12:00:00.000000Z",
        "site-2": "2024-06-01T13:00:00.000000Z",
        "site-5": "2024-06-01T12:00:00.000000Z",
    }
    assert client.hgetall(marks) == {"site-5": "2024-06-01T12:05:00.000000Z"}
    assert client.get(keys.seen("m1")) == "d1" and 0 < client.ttl(keys.seen("m1")) <= 600
    assert client.get(keys.seen("m3")) == "d3", "the failing write's digests went before its cursor"
    assert client.get(keys.seen("m4")) is None, "a fenced-out write writes nothing"
    # Through the lanes' entry point: the error and the fence reach the caller as before.
    with pytest.raises(redis.ResponseError):
        store.advance_cursor("site-3", TS, endpoint="broken")
    assert store.advance_cursor("site-6", TS) is True and store.advance_cursor("site-6", TS) is False
    client.delete(keys.lease)
    with pytest.raises(LeaseLost):
        store.advance_cursor("site-7", TS, digests=[("m7", "d7")], digest_ttl_s=600)
    assert client.hget(keys.cursors, "site-7") is None and client.get(keys.seen("m7")) is None
    lease.release()
