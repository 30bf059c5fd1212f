"""An MQTT subscriber independent of the worker: what a consumer on the IoT platform receives.

It shares no code with the worker's uplink (plain paho-mqtt, its own client id, its own
connection) and keys what it receives by the payload's `message_id` (station + series + reading time), so
duplicates and gaps are counted from what actually crossed the broker.

`drop_first_of` is a TEST-ONLY fault: the subscriber pretends it never received the first reading
of that station (every copy of that message id is ignored). It exists so tests/demo can prove that
the demo fails when a reading is lost; the `make demo` command line never sets it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Subscriber:
    def __init__(
        self,
        broker_url: str,
        topic: str,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        drop_first_of: str | None = None,
    ) -> None:
        parts = urlsplit(broker_url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.topic = topic
        self.ids: Counter[str] = Counter()
        self.by_station: Counter[str] = Counter()
        self.undecodable = 0
        self.drop_first_of = drop_first_of
        self.dropped: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A persistent session: if this connection blips, the broker keeps the QoS 1 messages for us.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if username:
            self.client.username_pw_set(username, password)
        if self.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> Subscriber:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"subscriber: no SUBACK from {self.host}:{self.port} within {timeout}s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object
    ) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
            message_id, station_id = body["message_id"], body["station_id"]
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.undecodable += 1
            return
        with self._lock:
            if self.drop_first_of is not None:
                if station_id == self.drop_first_of and not self.dropped:
                    self.dropped.add(message_id)
                if message_id in self.dropped:
                    return
            self.ids[message_id] += 1
            self.by_station[station_id] += 1

    # -- what was received ------------------------------------------------------------------

    def total(self) -> int:
        """Messages received, duplicates included."""
        with self._lock:
            return sum(self.ids.values())

    def distinct(self) -> int:
        with self._lock:
            return len(self.ids)

    def received_ids(self) -> set[str]:
        with self._lock:
            return set(self.ids)

    def duplicates(self) -> int:
        """Extra copies beyond the first of each message id (at-least-once delivery allows them)."""
        with self._lock:
            return sum(n - 1 for n in self.ids.values())


def subscription_topic(topic_template: str, env: str) -> str:
    """The worker's publish topic template with `+` for the per-message parts."""
    return topic_template.format(env=env, station_id="+", identity="+", message_id="+")
