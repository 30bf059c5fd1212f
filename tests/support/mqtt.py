"""The tests' MQTT subscriber: an independent client (its own connection, plain paho, no code of the
worker's uplink) recording what a consumer on the platform would receive.

Every message is kept raw (`messages`: topic, payload, retain flag), and a JSON telemetry payload is
also counted by its `message_id`, so duplicates and gaps are counted from what crossed the broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt

TELEMETRY_FILTER = "c2c/+/stations/+/telemetry"


class MqttCapture:
    def __init__(
        self,
        port: int,
        topic: str = TELEMETRY_FILTER,
        *,
        client_id: str = "test-subscriber",
        username: str | None = None,
        password: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        #: (topic, payload, retain) of every message, in arrival order.
        self.messages: list[tuple[str, bytes, bool]] = []
        #: Receipts per telemetry message id (JSON payloads with a `message_id`).
        self.ids: Counter[str] = Counter()
        #: Receipts that were the broker re-sending a delivery this subscriber already had (QoS 1
        #: towards a persistent session: a delivery whose PUBACK the broker had not processed when
        #: it went down is re-sent on reconnect, DUP set, with its original packet id). The broker
        #: causes these, not the publisher.
        self.redeliveries: Counter[str] = Counter()
        #: Decoded telemetry payloads with their topic.
        self.payloads: list[dict[str, Any]] = []
        #: (wall time of receipt, message id) of each telemetry receipt, in order: which cycle sent what.
        self.arrivals: list[tuple[float, str]] = []
        self._deliveries: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # persistent: the broker keeps QoS 1 messages for this client while its connection blips.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> MqttCapture:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber not subscribed"
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = None
        message_id = body.get("message_id") if isinstance(body, dict) else None
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            if not isinstance(body, dict) or not isinstance(message_id, str):
                return
            self.ids[message_id] += 1
            self.arrivals.append((time.time(), message_id))
            delivery = (message_id, msg.mid)
            if msg.dup and delivery in self._deliveries:
                self.redeliveries[message_id] += 1
            self._deliveries.add(delivery)
            self.payloads.append({"topic": msg.topic, **body})

    # -- what was received ------------------------------------------------------------------

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def count(self) -> int:
        """Telemetry receipts, duplicates included."""
        with self._lock:
            return sum(self.ids.values())

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[str, bytes, bool]]:
        """Every message once at least `n` arrived (any payload)."""
        _wait_until(lambda: len(self.snapshot()) >= n, timeout, lambda: f"{n} messages, got {len(self.snapshot())}")
        return self.snapshot()

    def wait_for_ids(self, n: int, timeout: float = 30.0) -> None:
        """Until at least `n` distinct telemetry message ids arrived."""
        _wait_until(lambda: len(self.ids) >= n, timeout, lambda: f"{n} distinct messages (have {len(self.ids)})")

    def settle(self, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
        """Until no telemetry arrived for `quiet_s`: once the publisher has stopped, what the broker
        had already accepted is here. A fixed sleep is not enough on a loaded machine, where the
        broker-to-subscriber leg lags by seconds."""
        deadline = time.monotonic() + timeout
        seen, quiet_since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now_seen = self.count()
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
        raise AssertionError(f"telemetry still arriving after {timeout}s ({seen} so far)")


def _wait_until(predicate: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what()}")


def retained_message(port: int, topic: str, timeout: float = 5.0) -> tuple[bytes, bool] | None:
    """(payload, retain flag) of the first message a fresh subscriber to `topic` gets; None if none."""
    got: list[tuple[bytes, bool]] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"retained-probe-{time.monotonic_ns()}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append((bytes(msg.payload), bool(msg.retain)))
        done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] if got else None
