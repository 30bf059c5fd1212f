"""The whole worker on the platform profiles, against real Mosquitto, Redis and the vendor simulator:
per-device mode keeps exactly one connection per identity across cycles, and Azure SAS renewal
happens by planned reconnects without losing a reading.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from functions.sync_worker.health import check
from functions.sync_worker.uplink.profile import ConnectionSpec, PlatformProfile
from functions.sync_worker.uplink.profiles.aws_iot_core import AWS_THING_NAME, AwsIotCoreProfile
from functions.sync_worker.uplink.profiles.azure_iot_hub import AZURE_DEVICE_ID, AzureCredentials, AzureIotHubProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from functions.sync_worker.uplink.profiles.tls import TlsMaterial
from tests.profiles.conftest import DEVICE_KEY
from tests.profiles.test_azure_broker import API, HUB, PINNED_WALL, TTL, hub_username
from tests.profiles.test_sas import fields_of, independent_sas_token
from tests.worker.conftest import INTERVAL_S, expected_ids, publish_signal, station_ids, wait_until

pytestmark = pytest.mark.integration

N_DEVICES = 50
N_CYCLES = 10


def received_ids(capture) -> list[str]:
    return [json.loads(payload)["message_id"] for _, payload, _ in capture.snapshot()]


def run_cycles(redis_url: str, running, sim, cycles: int, *, first: int = 1, advance: bool = True) -> None:
    for cycle in range(first, first + cycles):
        if advance and cycle > 1:
            sim.advance_clock(INTERVAL_S)  # one new reading per station
        publish_signal(redis_url)
        wait_until(lambda n=cycle: len(running.history()) >= n, 60, what=f"cycle {cycle}")


def start_worker(sync_worker, n_stations: int, profile, *, backlog: int = 1):
    """The worker on `profile`, signalled over Redis pub/sub; C2C_MQTT_URL is unused by these
    profiles (the profile object carries the endpoint)."""
    return sync_worker(
        n_stations,
        mqtt_url="mqtt://127.0.0.1:1",
        backlog=backlog,
        profile=profile,
        C2C_SIGNAL_URL="redis",
        C2C_PLATFORM_PROFILE=profile.name,
        C2C_CONCURRENCY="16",
    )


def azure_per_device_profile(tls_port: int, pki) -> AzureIotHubProfile:
    """Per-device IoT Hub profile (`ess-{station_id}`) signed by one DeviceConnect policy key."""
    return AzureIotHubProfile(
        hostname=HUB,
        connect_host="127.0.0.1",
        port=tls_port,
        api_version=API,
        token_ttl_s=TTL,
        identities=IdentityMapping(IdentityMode.PER_DEVICE, None, "ess-{station_id}", AZURE_DEVICE_ID),
        credentials=AzureCredentials(policy_name="device", policy_key=DEVICE_KEY),
        tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem),
        wall_clock=lambda: PINNED_WALL,
    )


@pytest.mark.parametrize("platform", ["azure_iot_hub", "aws_iot_core"])
def test_per_device_50_identities_10_cycles_50_connections(
    platform, pki, auth_mosquitto_factory, tls_mosquitto, redis_server, capture_factory, sync_worker
):
    stations = station_ids(N_DEVICES)
    devices = [f"ess-{s}" for s in stations]
    profile: PlatformProfile
    if platform == "azure_iot_hub":
        # One shared access policy with DeviceConnect signs every device's token (skn=device).
        users = {
            hub_username(d): independent_sas_token(f"{HUB}/devices/{d}", DEVICE_KEY, int(PINNED_WALL + TTL), "device")
            for d in devices
        }
        broker = auth_mosquitto_factory(users)
        mosquitto = broker.broker
        capture = capture_factory(
            broker.plain_port, "devices/#", username=broker.subscriber_user, password=broker.subscriber_password
        )
        profile = azure_per_device_profile(broker.tls_port, pki)
    else:
        # One fleet certificate attached to every thing; the client id is the thing name.
        fleet = pki["ca"].client_certificate("c2c-fleet")
        mosquitto = tls_mosquitto.broker
        capture = capture_factory(tls_mosquitto.plain_port, "c2c/+/stations/+/telemetry")
        profile = AwsIotCoreProfile(
            endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
            connect_host="127.0.0.1",
            port=tls_mosquitto.mtls_port,
            identities=IdentityMapping(IdentityMode.PER_DEVICE, None, "ess-{station_id}", AWS_THING_NAME),
            tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem, cert_pem=fleet.cert_pem, key_pem=fleet.key_pem),
            env="test",
        )

    setup = start_worker(sync_worker, N_DEVICES, profile)
    running = setup.running
    assert mosquitto.client_ids_connected() == [capture.client_id]  # per-device: nothing opened before a cycle

    run_cycles(redis_server.url, running, setup.sim, N_CYCLES)

    expected = setup.expected(upto=setup.t0 + timedelta(seconds=9 * INTERVAL_S))
    assert len(expected) == N_DEVICES * N_CYCLES
    wait_until(lambda: set(received_ids(capture)) >= expected, 20, what="every reading at the subscriber")
    assert set(received_ids(capture)) == expected
    connected = [c for c in mosquitto.client_ids_connected() if c != capture.client_id]
    # Counted by the broker: exactly one CONNECT per identity in 10 cycles, never stations x cycles.
    assert len(connected) == N_DEVICES and sorted(connected) == sorted(devices)
    totals = running.worker.uplink.totals()
    assert totals.connections_opened == N_DEVICES and totals.reconnects.total() == 0
    assert all(r.stations_failed == 0 for r in running.history())
    print(
        f"\n{platform} per-device: broker saw {len(connected)} connections for {N_DEVICES} identities "
        f"over {N_CYCLES} cycles ({len(expected)} readings)"
    )
    assert running.stop() == 0


def test_azure_sas_renewal_by_planned_reconnects_loses_no_reading(
    pki, tls_mosquitto, redis_server, capture_factory, sync_worker
):
    """TTL 3 s: the token is renewed about every 2.4 s by a clean, planned reconnect.

    Auth here: Mosquitto's password_file holds one fixed password per user and cannot follow a
    token that changes on every renewal, so this broker's TLS listener admits anonymous clients
    (the hub-style username still shows in its log). Each token the profile issued is checked
    instead against the independent implementation, with a fresh, later expiry each time;
    test_azure_broker.py proves the broker-side acceptance of the token with a password file.
    """
    stations = station_ids(20)
    capture = capture_factory(tls_mosquitto.plain_port, "devices/#")
    issued: list[str] = []

    class TokenRecordingProfile(AzureIotHubProfile):
        """The profile under test, recording the SAS token of every connect."""

        def connection_spec(self, identity: str) -> ConnectionSpec:
            spec = super().connection_spec(identity)
            assert spec.password is not None
            issued.append(spec.password)
            return spec

    profile = TokenRecordingProfile(
        hostname=HUB,
        connect_host="127.0.0.1",
        port=tls_mosquitto.tls_port,
        api_version=API,
        token_ttl_s=3,
        identities=IdentityMapping(IdentityMode.GATEWAY, "gw-1", "{station_id}", AZURE_DEVICE_ID),
        credentials=AzureCredentials(device_keys={"gw-1": DEVICE_KEY}),
        tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem),
    )

    setup = start_worker(sync_worker, len(stations), profile)
    t0, sim, running = setup.t0, setup.sim, setup.running

    cycles, started = 0, time.monotonic()
    while time.monotonic() - started < 8.5:  # ~3 token lifetimes of cycles back to back
        cycles += 1
        run_cycles(redis_server.url, running, sim, 1, first=cycles)
        time.sleep(0.1)
    # One more cycle with no new readings: anything a renewal interrupted is retried now.
    cycles += 1
    run_cycles(redis_server.url, running, sim, 1, first=cycles, advance=False)

    expected = setup.expected(upto=t0 + timedelta(seconds=(cycles - 2) * INTERVAL_S))
    wait_until(lambda: set(received_ids(capture)) >= expected, 20, what="every reading at the subscriber")
    ids = received_ids(capture)
    assert set(ids) == expected, "a reading was lost across a renewal"
    totals = running.worker.uplink.totals()
    planned, faults = totals.planned_reconnects, totals.reconnects.total()
    print(
        f"\nrenewal: {cycles} cycles, {len(expected)} readings, planned reconnects {planned}, "
        f"fault reconnects {faults}, duplicates {len(ids) - len(set(ids))}, "
        f"failed station-cycles {sum(r.stations_failed for r in running.history())}"
    )
    assert planned >= 2 and faults == 0
    assert tls_mosquitto.broker.connections_from("gw-1") == 1 + planned == totals.connections_opened
    assert tls_mosquitto.broker.log_text().count(f"u'{hub_username('gw-1')}'") == 1 + planned
    expiries = [int(fields_of(token)["se"]) for token in issued]
    assert expiries == sorted(expiries) and len(set(expiries)) == len(expiries), "every connect got a new token"
    for token, expiry in zip(issued, expiries, strict=True):
        assert token == independent_sas_token(f"{HUB}/devices/gw-1", DEVICE_KEY, expiry)
    assert running.stop() == 0


def test_per_device_one_refused_identity_fails_its_station_only_and_health_stays_ok(
    pki, auth_mosquitto_factory, redis_server, capture_factory, sync_worker
):
    """Per-device mode against a broker whose password file admits every device but one: the other
    stations sync, the refused one is counted failed with the auth class, and the worker stays
    healthy (one refused device must not make ECS replace the task that serves all the others)."""
    stations = station_ids(5)
    devices = [f"ess-{s}" for s in stations]
    refused_station, refused_device = stations[2], devices[2]
    # The refused device is missing from the password file: Mosquitto answers its CONNECT "not authorised".
    users = {
        hub_username(d): independent_sas_token(f"{HUB}/devices/{d}", DEVICE_KEY, int(PINNED_WALL + TTL), "device")
        for d in devices
        if d != refused_device
    }
    broker = auth_mosquitto_factory(users)
    capture = capture_factory(
        broker.plain_port, "devices/#", username=broker.subscriber_user, password=broker.subscriber_password
    )
    profile = azure_per_device_profile(broker.tls_port, pki)
    setup = start_worker(sync_worker, len(stations), profile, backlog=2)
    settings, running = setup.settings, setup.running

    run_cycles(redis_server.url, running, setup.sim, 1)
    record = running.history()[0]
    assert (record.stations_synced, record.stations_failed) == (4, 1)
    assert record.errors_by_class == {"auth": 1}, record.errors_by_class
    synced = [s for s in stations if s != refused_station]
    expected = expected_ids(synced, setup.since, setup.t0)
    wait_until(lambda: set(received_ids(capture)) >= expected, 20, what="the other stations' readings")
    assert set(received_ids(capture)) == expected, "nothing of the refused station may arrive"
    assert running.worker.uplink.totals().reconnects["not_authorized"] >= 1
    assert "disconnected, not authorised" in broker.broker.log_text()

    # Health: the status file the container check reads, rewritten after the cycle by the heartbeat.
    after_cycle = time.time()
    wait_until(
        lambda: json.loads(Path(settings.status_file).read_text())["at"] > after_cycle + 0.5,
        10,
        what="a heartbeat after the cycle",
    )
    ok, reason = check(settings.status_file)
    assert ok, reason
    assert running.worker.uplink.connected
    assert running.stop() == 0
