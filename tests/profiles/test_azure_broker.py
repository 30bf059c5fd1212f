"""Azure IoT Hub profile against a real Mosquitto that plays IoT Hub's MQTT front door.

IoT Hub itself cannot run here. Mosquitto stands in for it:
- auth: a `password_file` (hashed by `mosquitto_passwd`) whose only accepted password for the
  hub-style username `{hub}/{device}/?api-version=...` is the SAS token computed by the
  *independent* implementation in test_sas.py for fixed inputs (the profile's wall clock is pinned
  so its token expiry is known in advance). The broker admits the device only if both agree.
- an ACL shaped like IoT Hub's: a device may publish only under `devices/{its client id}/messages/events/`.
Mosquitto does not check SAS expiry; token renewal is covered in test_azure_renewal.py.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import pytest

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import OutboundMessage
from functions.sync_worker.uplink.profiles.azure_iot_hub import AZURE_DEVICE_ID, AzureCredentials, AzureIotHubProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from functions.sync_worker.uplink.profiles.tls import TlsMaterial
from functions.sync_worker.uplink.uplink import MqttUplink
from tests.profiles.conftest import DEVICE_KEY, message
from tests.profiles.test_sas import independent_sas_token

pytestmark = pytest.mark.integration

HUB = "c2c-test-hub.azure-devices.net"
API = "2021-04-12"
PINNED_WALL = 1_900_000_000.0  # the profile's wall clock, pinned: token expiry = PINNED_WALL + TTL
TTL = 3600


def hub_username(device_id: str) -> str:
    return f"{HUB}/{device_id}/?api-version={API}"


def azure_profile(pki, port: int, *, mode=IdentityMode.GATEWAY, credentials=None, **kw) -> AzureIotHubProfile:
    return AzureIotHubProfile(
        hostname=HUB,
        connect_host="127.0.0.1",
        port=port,
        api_version=API,
        token_ttl_s=TTL,
        identities=IdentityMapping(mode, "gw-1", "ess-{station_id}", AZURE_DEVICE_ID),
        credentials=credentials or AzureCredentials(device_keys={"gw-1": DEVICE_KEY}),
        tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem),
        wall_clock=lambda: PINNED_WALL,
        **kw,
    )


def iot_hub_view(topic: str, device_id: str) -> dict[str, str]:
    """What IoT Hub makes of a telemetry topic: the property bag after `messages/events/`, decoded."""
    prefix = f"devices/{device_id}/messages/events/"
    assert topic.startswith(prefix), topic
    return dict(parse_qsl(topic[len(prefix) :], keep_blank_values=True, strict_parsing=True))


def test_device_token_admitted_and_topic_properties_as_iot_hub_expects(auth_mosquitto_factory, pki, capture_factory):
    token = independent_sas_token(f"{HUB}/devices/gw-1", DEVICE_KEY, int(PINNED_WALL + TTL))
    broker = auth_mosquitto_factory({hub_username("gw-1"): token})
    capture = capture_factory(
        broker.plain_port, "devices/#", username=broker.subscriber_user, password=broker.subscriber_password
    )
    uplink = MqttUplink(azure_profile(pki, broker.tls_port), puback_timeout_s=5).start()
    sent = [
        OutboundMessage(
            station_id=sid,
            message_id=f"{sid}:2026-01-01T00:00:00.000000Z",
            payload=b'{"soc_pct": 80}',
            properties={"schema": "1", "site": "Roof & Co / 2"},
        )
        for sid in ("st-1", "st 2", "st/3")
    ]
    try:
        assert uplink.wait_connected(10), uplink.totals().reconnects
        batch = uplink.new_batch()
        for msg in sent:
            uplink.publish(msg, batch)
        batch.wait(5)
        received = capture.wait_for(3)
    finally:
        uplink.close(5)
    assert broker.broker.connections_from("gw-1") == 1
    assert f"u'{hub_username('gw-1')}'" in broker.broker.log_text()
    for msg, (topic, payload, retain) in zip(sent, received, strict=True):
        assert payload == msg.payload and retain is False
        assert iot_hub_view(topic, "gw-1") == {
            "$.mid": msg.message_id,
            "$.ct": "application/json",
            "$.ce": "utf-8",
            "schema": "1",
            "site": "Roof & Co / 2",
            "station_id": msg.station_id,
        }
    # Percent-encoded on the wire, as IoT Hub requires ('/' would otherwise split the topic).
    assert received[2][0] == (
        "devices/gw-1/messages/events/$.mid=st%2F3%3A2026-01-01T00%3A00%3A00.000000Z"
        "&$.ct=application%2Fjson&$.ce=utf-8&schema=1&site=Roof%20%26%20Co%20%2F%202"
        "&station_id=st%2F3"
    )


def test_wrong_key_is_refused_by_the_broker(auth_mosquitto_factory, pki):
    token = independent_sas_token(f"{HUB}/devices/gw-1", DEVICE_KEY, int(PINNED_WALL + TTL))
    broker = auth_mosquitto_factory({hub_username("gw-1"): token})
    import base64

    other_key = base64.b64encode(b"a different device key, 32 bytes").decode()
    uplink = MqttUplink(
        azure_profile(pki, broker.tls_port, credentials=AzureCredentials(device_keys={"gw-1": other_key})),
        puback_timeout_s=2,
        reconnect_max_s=0.5,
    ).start()
    try:
        assert not uplink.wait_connected(2)
    finally:
        uplink.close(2)
    assert broker.broker.connections_from("gw-1") == 0
    assert "disconnected, not authorised" in broker.broker.log_text()


def test_qos2_retain_and_oversize_refused_before_the_wire(auth_mosquitto_factory, pki, capture_factory):
    token = independent_sas_token(f"{HUB}/devices/gw-1", DEVICE_KEY, int(PINNED_WALL + TTL))
    broker = auth_mosquitto_factory({hub_username("gw-1"): token})
    capture = capture_factory(
        broker.plain_port, "devices/#", username=broker.subscriber_user, password=broker.subscriber_password
    )
    profile = azure_profile(pki, broker.tls_port)
    cases = [
        (MqttUplink(profile, qos=2), message(), "QoS 2 is not supported"),
        (MqttUplink(profile, retain=True), message(), "retained messages are not supported"),
        (MqttUplink(profile), message(payload=b"x" * (256 * 1024)), "over IoT Hub's 262144-byte limit"),
    ]
    for uplink, msg, reason in cases:
        uplink.start()
        try:
            assert uplink.wait_connected(10)
            with pytest.raises(PermanentError, match=reason):
                uplink.publish(msg, uplink.new_batch())
        finally:
            uplink.close(2)
    time.sleep(0.3)
    assert capture.snapshot() == []
    assert "Received PUBLISH from gw-1" not in broker.broker.log_text()
