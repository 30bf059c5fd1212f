"""What reaches the broker, per contender: an MQTT subscriber outside every contender's process.

Contenders publish under `c2c/<name>/stations/<station>/telemetry`; `Arrivals` counts the distinct
message ids each one delivered and when the last one arrived, so a contender that cannot say when
its cycle is done (a Node-RED flow) is timed the way a consumer on the platform would see it.
(The tests' tests/support/mqtt.py MqttCapture keeps every message for assertions on loopback; this
one only counts, per contender, wakes its waiter on each arrival, and speaks TLS to any address.)
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt

TELEMETRY_FILTER = "c2c/+/stations/+/telemetry"


class Arrivals:
    def __init__(self, host: str, port: int, *, ca_file: Path | None = None, client_id: str = "bench-arrivals") -> None:
        self._ids: dict[str, set[str]] = defaultdict(set)
        self._last: dict[str, float] = {}
        #: The first payload each contender delivered, to compare their messages by eye.
        self.samples: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TELEMETRY_FILTER, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def start(self, timeout: float = 30.0) -> Arrivals:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"arrivals subscriber not subscribed to {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        name = msg.topic.split("/", 2)[1]
        body = json.loads(msg.payload)
        message_id = body["message_id"]
        with self._cond:
            self.samples.setdefault(name, body)
            self._ids[name].add(message_id)
            self._last[name] = time.perf_counter()
            self._cond.notify_all()

    def count(self, name: str) -> int:
        with self._cond:
            return len(self._ids[name])

    def wait_for(self, name: str, total: int, timeout: float) -> float:
        """Block until `name` has delivered `total` distinct messages; returns the last one's arrival
        time (perf_counter)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ids[name]) < total:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{name}: {len(self._ids[name])} of {total} messages after {timeout}s")
                self._cond.wait(remaining)
            return self._last[name]
