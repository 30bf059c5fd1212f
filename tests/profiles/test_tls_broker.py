"""TLS and mTLS against a real Mosquitto with certificates from a test CA: AWS IoT Core's mTLS
identity, refusals without a valid client certificate, and the generic profile's TLS + presence.

Mocked: nothing. AWS IoT Core itself cannot run here; Mosquitto's `require_certificate` +
`use_identity_as_username` plays its certificate-bound identity.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from functions.sync_worker.uplink.connection import MqttConnection
from functions.sync_worker.uplink.profiles.aws_iot_core import AWS_THING_NAME, AwsIotCoreProfile
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from functions.sync_worker.uplink.profiles.tls import TlsMaterial
from functions.sync_worker.uplink.uplink import MqttUplink
from tests.profiles.conftest import connect_with_spec, message

pytestmark = pytest.mark.integration


def aws_profile(pki, port: int, thing: str = "gateway-thing", ca=None, **kw) -> AwsIotCoreProfile:
    client = (ca or pki["ca"]).client_certificate(thing)
    return AwsIotCoreProfile(
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        connect_host="127.0.0.1",
        port=port,
        identities=kw.pop("identities", IdentityMapping(IdentityMode.GATEWAY, thing, "{station_id}", AWS_THING_NAME)),
        tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem, cert_pem=client.cert_pem, key_pem=client.key_pem),
        **kw,
    )


def test_aws_profile_connects_with_mtls_as_its_thing(tls_mosquitto, pki):
    profile = aws_profile(pki, tls_mosquitto.mtls_port)
    outcome, client = connect_with_spec(profile.connection_spec(profile.identity_for("st-1")))
    try:
        assert outcome == "connected"
    finally:
        client.disconnect()
        client.loop_stop()
    assert tls_mosquitto.broker.connections_from("gateway-thing") == 1
    # The broker took the identity from the certificate (use_identity_as_username), not from a password.
    assert "u'gateway-thing'" in tls_mosquitto.broker.log_text()


def test_mtls_listener_refuses_a_client_without_certificate(tls_mosquitto, pki):
    spec = aws_profile(pki, tls_mosquitto.mtls_port).connection_spec("gateway-thing")
    no_cert = TlsMaterial(ca_pem=pki["ca"].cert_pem)
    from dataclasses import replace

    from functions.sync_worker.uplink.profiles.tls import build_tls_context

    outcome, _ = connect_with_spec(replace(spec, tls=build_tls_context(no_cert)))
    assert outcome != "connected", outcome
    assert tls_mosquitto.broker.connections_from("gateway-thing") == 0
    assert "peer did not return a certificate" in tls_mosquitto.broker.log_text()


def test_mtls_listener_refuses_a_certificate_from_another_ca(tls_mosquitto, pki):
    profile = aws_profile(pki, tls_mosquitto.mtls_port, ca=pki["rogue"])  # client cert signed by the rogue CA
    outcome, _ = connect_with_spec(profile.connection_spec("gateway-thing"))
    assert outcome != "connected", outcome
    assert tls_mosquitto.broker.connections_from("gateway-thing") == 0
    assert "certificate verify failed" in tls_mosquitto.broker.log_text()


def test_client_refuses_a_broker_its_ca_does_not_trust(tls_mosquitto, pki):
    profile = aws_profile(pki, tls_mosquitto.mtls_port)
    spec = profile.connection_spec("gateway-thing")
    from dataclasses import replace

    from functions.sync_worker.uplink.profiles.tls import build_tls_context

    client = pki["ca"].client_certificate("gateway-thing")
    wrong_trust = build_tls_context(
        TlsMaterial(ca_pem=pki["rogue"].cert_pem, cert_pem=client.cert_pem, key_pem=client.key_pem)
    )
    outcome, _ = connect_with_spec(replace(spec, tls=wrong_trust))
    assert outcome.startswith("error:SSLCertVerificationError"), outcome


def test_aws_uplink_publishes_over_mtls_and_refuses_oversize_before_the_wire(tls_mosquitto, pki, capture_factory):
    capture = capture_factory(tls_mosquitto.plain_port, "c2c/+/stations/+/telemetry")
    uplink = MqttUplink(aws_profile(pki, tls_mosquitto.mtls_port), puback_timeout_s=5).start()
    try:
        assert uplink.wait_connected(10)
        batch = uplink.new_batch()
        uplink.publish(message("st-1"), batch)
        batch.wait(5)
        from functions.sync_worker.errors import PermanentError

        with pytest.raises(PermanentError, match="131073 bytes, over AWS IoT Core's 131072-byte limit"):
            uplink.publish(message("st-2", payload=b"x" * (128 * 1024 + 1)), uplink.new_batch())
        with pytest.raises(PermanentError, match="forward slashes"):
            uplink.publish(message("a/b/c/d/e/f"), uplink.new_batch())
        time.sleep(0.3)
    finally:
        uplink.close(5)
    assert [t for t, _, _ in capture.snapshot()] == ["c2c/dev/stations/st-1/telemetry"]
    log = tls_mosquitto.broker.log_text()
    assert log.count("Received PUBLISH from gateway-thing") == 1  # the refused ones never left the client


def test_aws_per_connection_publish_rate_is_honoured(tls_mosquitto, pki):
    profile = aws_profile(pki, tls_mosquitto.mtls_port)
    conn = MqttConnection(profile, "gateway-thing", max_inflight=50, puback_timeout_s=5).start()
    try:
        assert conn.wait_connected(10)
        from functions.sync_worker.uplink.batch import PublishBatch

        batch = PublishBatch()
        started = time.monotonic()
        for _i in range(150):
            conn.publish("c2c/dev/stations/st-1/telemetry", message("st-1"), batch)
        batch.wait(10)
        elapsed = time.monotonic() - started
    finally:
        conn.close(5)
    # 150 publishes at 100/s with a burst of 10 need at least 1.4 s; unthrottled this takes ~50 ms.
    assert elapsed >= 1.35, elapsed


def generic_profile(pki, port: int, **kw) -> GenericProfile:
    return GenericProfile(
        host="127.0.0.1",
        port=port,
        env="test",
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-generic", "{station_id}", MQTT_CLIENT_ID),
        tls_material=TlsMaterial(ca_file=str(pki["ca"].cert_path)),
        **kw,
    )


@pytest.mark.parametrize("protocol", [4, 5])
def test_generic_tls_presence_online_then_offline_will(tls_mosquitto, pki, capture_factory, protocol):
    capture = capture_factory(tls_mosquitto.plain_port, "c2c/test/status/#")
    conn = MqttConnection(generic_profile(pki, tls_mosquitto.tls_port, protocol=protocol), "c2c-generic").start()
    try:
        assert conn.wait_connected(10)
        assert capture.wait_for(1)[0] == ("c2c/test/status/c2c-generic", b"online", False)
        # Drop the TCP connection without DISCONNECT (as a crashed task would): the broker sends the will.
        session = conn._session
        assert session is not None
        sock = session.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(2)
        messages = capture.wait_for(2)
        assert messages[1] == ("c2c/test/status/c2c-generic", b"offline", False)
        assert capture.wait_for(3)[2][1] == b"online"  # the supervisor reconnected by itself
        assert conn.stats.reconnects.total() == 1 and conn.stats.planned_reconnects == 0
        # Retained: a late subscriber learns the last state.
        late = capture_factory(tls_mosquitto.plain_port, "c2c/test/status/#", client_id="late")
        assert late.wait_for(1)[0] == ("c2c/test/status/c2c-generic", b"online", True)
    finally:
        conn.close(5)
    # A clean DISCONNECT discards the will, so a graceful close publishes `offline` itself.
    assert capture.wait_for(4)[3] == ("c2c/test/status/c2c-generic", b"offline", False)
    after_close = capture_factory(tls_mosquitto.plain_port, "c2c/test/status/#", client_id="after-close")
    assert after_close.wait_for(1)[0] == ("c2c/test/status/c2c-generic", b"offline", True)
    assert f"as c2c-generic (p{2 if protocol == 4 else 5}," in tls_mosquitto.broker.log_text()  # p2 = MQTT 3.1.1


def test_generic_tls_refuses_untrusted_broker_unless_insecure(tls_mosquitto, pki):
    trusted_elsewhere = GenericProfile(
        host="127.0.0.1",
        port=tls_mosquitto.tls_port,
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-generic", "{station_id}", MQTT_CLIENT_ID),
        tls_material=TlsMaterial(ca_pem=pki["rogue"].cert_pem),
    )
    outcome, _ = connect_with_spec(trusted_elsewhere.connection_spec("c2c-generic"))
    assert outcome.startswith("error:SSLCertVerificationError"), outcome
    insecure = GenericProfile(
        host="127.0.0.1",
        port=tls_mosquitto.tls_port,
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-generic", "{station_id}", MQTT_CLIENT_ID),
        tls_material=TlsMaterial(insecure=True),
    )
    spec = insecure.connection_spec("c2c-generic")
    assert spec.tls is not None and spec.tls.verify_mode == ssl.CERT_NONE
    outcome, client = connect_with_spec(spec)
    client.disconnect()
    client.loop_stop()
    assert outcome == "connected"


def test_generic_with_client_certificate_over_mtls(tls_mosquitto, pki):
    client_cert = pki["ca"].client_certificate("c2c-generic")
    profile = GenericProfile(
        host="127.0.0.1",
        port=tls_mosquitto.mtls_port,
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-generic", "{station_id}", MQTT_CLIENT_ID),
        tls_material=TlsMaterial(
            ca_file=str(pki["ca"].cert_path), cert_file=str(client_cert.cert_path), key_file=str(client_cert.key_path)
        ),
    )
    outcome, client = connect_with_spec(profile.connection_spec("c2c-generic"))
    client.disconnect()
    client.loop_stop()
    assert outcome == "connected"
