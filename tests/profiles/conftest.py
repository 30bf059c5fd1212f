"""Shared pieces of the profile tests: a test PKI (per session) and message factories."""

from __future__ import annotations

import base64
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from functions.sync_worker.uplink.profile import OutboundMessage
from tests.support.mqtt import MqttCapture
from tests.support.services import MosquittoBroker, free_port, wait_for_port
from tests.support.tls import TestCA, tls_listener
from tests.worker.conftest import sync_worker, worker_factory  # noqa: F401 - fixtures reused by the end-to-end tests

DEVICE_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A trusted test CA with a server certificate, and an unrelated CA for negative tests."""
    root = tmp_path_factory.mktemp("pki")
    ca = TestCA(root / "trusted")
    rogue = TestCA(root / "rogue", name="rogue CA")
    return {"ca": ca, "server": ca.server_certificate(), "rogue": rogue}


def message(station_id: str = "st-1", payload: bytes = b'{"soc": 81.5}', **kw) -> OutboundMessage:
    return OutboundMessage(
        station_id=station_id, message_id=f"{station_id}:2026-01-01T00:00:00.000000Z", payload=payload, **kw
    )


# -- brokers ---------------------------------------------------------------------------------------


@dataclass
class TlsBroker:
    """Mosquitto with three listeners: plain (for the test's own subscriber), TLS (server
    certificate from the test CA) and mTLS (client certificate from the test CA required; its CN
    becomes the username, as AWS IoT Core binds a connection to its certificate)."""

    broker: MosquittoBroker
    tls_port: int
    mtls_port: int

    @property
    def plain_port(self) -> int:
        return self.broker.port


@pytest.fixture
def tls_mosquitto(tmp_path, pki):
    tls_port, mtls_port = free_port(), free_port()
    config = tls_listener(tls_port, pki["ca"], pki["server"], require_certificate=False) + tls_listener(
        mtls_port, pki["ca"], pki["server"], require_certificate=True
    )
    broker = MosquittoBroker(tmp_path / "mosquitto-tls", extra_config=config).start()
    wait_for_port(tls_port)
    wait_for_port(mtls_port)
    yield TlsBroker(broker, tls_port, mtls_port)
    broker.stop()


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """Plain `user:password` lines hashed in place by `mosquitto_passwd -U` (one call for all users;
    the same hashing as `mosquitto_passwd -b`, which would take one process per user)."""
    path.write_text("".join(f"{user}:{password}\n" for user, password in users.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, capture_output=True)
    return path


@dataclass
class AuthBroker:
    """Mosquitto that only admits the listed username/password pairs, over TLS for the devices and
    plaintext for the test subscriber, with an ACL shaped like IoT Hub's: a device may publish only
    under `devices/{its client id}/messages/events/`."""

    broker: MosquittoBroker
    tls_port: int
    subscriber_user: str = "subscriber"
    subscriber_password: str = "subscriber-secret"

    @property
    def plain_port(self) -> int:
        return self.broker.port


@pytest.fixture
def auth_mosquitto_factory(tmp_path, pki):
    brokers: list[MosquittoBroker] = []

    def start(users: dict[str, str]) -> AuthBroker:
        workdir = tmp_path / f"mosquitto-auth-{len(brokers)}"
        workdir.mkdir()
        tls_port = free_port()
        passwords = write_password_file(
            workdir / "passwords", {**users, AuthBroker.subscriber_user: AuthBroker.subscriber_password}
        )
        acl = workdir / "acl"
        acl.write_text(
            f"user {AuthBroker.subscriber_user}\ntopic read #\n\npattern write devices/%c/messages/events/#\n"
        )
        config = (
            "allow_anonymous false\n"  # overrides the base config's `allow_anonymous true` (last wins)
            f"password_file {passwords}\nacl_file {acl}\n"
            + tls_listener(tls_port, pki["ca"], pki["server"], require_certificate=False)
        )
        auth = AuthBroker(MosquittoBroker(workdir, extra_config=config).start(), tls_port)
        wait_for_port(auth.tls_port)
        brokers.append(auth.broker)
        return auth

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def capture_factory():
    captures: list[MqttCapture] = []

    def start(port: int, topic: str, **kw) -> MqttCapture:
        kw.setdefault("client_id", "profile-test-subscriber")
        capture = MqttCapture(port, topic, **kw).start()
        captures.append(capture)
        return capture

    yield start
    for capture in captures:
        capture.stop()


def connect_with_spec(spec, timeout: float = 5.0):
    """A raw paho connection made only from a profile's `ConnectionSpec`.
    Returns (outcome, client): outcome is "connected", "refused:<reason>" or "error:<exception>"."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=spec.client_id,
        protocol=mqtt.MQTTv5 if spec.protocol == 5 else mqtt.MQTTv311,
        reconnect_on_failure=False,
    )
    if spec.username is not None:
        client.username_pw_set(spec.username, spec.password)
    if spec.tls is not None:
        client.tls_set_context(spec.tls)
    if spec.will is not None:
        client.will_set(spec.will.topic, spec.will.payload, qos=spec.will.qos, retain=spec.will.retain)
    result: dict[str, str] = {}
    done = threading.Event()

    def on_connect(c, u, flags, rc, props):
        result["outcome"] = f"refused:{rc}" if rc.is_failure else "connected"
        done.set()

    def on_disconnect(c, u, flags, rc, props):
        result.setdefault("outcome", f"refused:disconnected ({rc})")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(spec.host, spec.port, keepalive=spec.keepalive_s)
    except Exception as exc:
        return f"error:{type(exc).__name__}: {exc}", client
    client.loop_start()
    done.wait(timeout)
    outcome = result.get("outcome", "refused:timeout")
    if outcome != "connected":
        client.loop_stop()
    return outcome, client
