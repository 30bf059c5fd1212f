"""What a consumer receives with each MQTT 5 publish (real Mosquitto, an MQTT 5 subscriber): the
content type and the user properties of the message, the message id once, for every message and
every content type (the connection builds its properties from a template per content type)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from functions.sync_worker.source.base import Reading
from functions.sync_worker.transform import to_message
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.connection import MqttConnection
from functions.sync_worker.uplink.profile import OutboundMessage
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from tests.worker.conftest import wait_until

pytestmark = pytest.mark.integration

TOPIC = "c2c/test/stations/site-1/telemetry"


class V5Subscriber:
    def __init__(self, port: int) -> None:
        self.received: list[tuple[str | None, list[tuple[str, str]]]] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v5-sub", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        with self._lock:
            self.received.append(
                (getattr(props, "ContentType", None), [tuple(p) for p in getattr(props, "UserProperty", [])])
            )

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_each_mqtt5_publish_carries_its_content_type_and_its_own_user_properties_with_the_id_once(mosquitto):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [to_message(Reading("site-1", t0 + timedelta(minutes=i), {"v": i})) for i in range(3)]
    other = OutboundMessage(
        station_id="site-1",
        message_id="site-1:custom:1",
        payload=b"x",
        content_type="text/plain",
        properties={"kind": "custom"},
    )
    sub = V5Subscriber(mosquitto.port)
    profile = GenericProfile(
        host="127.0.0.1",
        port=mosquitto.port,
        env="test",
        protocol=5,
        status_topic_template="",
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-v5", "{station_id}", MQTT_CLIENT_ID),
    )
    conn = MqttConnection(profile, "c2c-v5").start()
    try:
        assert conn.wait_connected(10)
        batch = PublishBatch()
        conn.publish_many([(TOPIC, m) for m in [readings[0], other, readings[1], readings[2]]], batch)
        batch.wait(10)
        wait_until(lambda: len(sub.received) == 4, 5, what="4 messages at the subscriber")
    finally:
        conn.close(timeout_s=2)
        sub.stop()
    ids = [m.message_id for m in readings]
    assert sub.received == [
        ("application/json", [("message_id", ids[0]), ("schema", "2")]),
        ("text/plain", [("message_id", "site-1:custom:1"), ("kind", "custom")]),
        ("application/json", [("message_id", ids[1]), ("schema", "2")]),
        ("application/json", [("message_id", ids[2]), ("schema", "2")]),
    ]
