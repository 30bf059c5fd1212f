"""`MqttUplink`: what the cycle runner publishes through. It checks each message against the
platform profile and routes it to its identity's `MqttConnection` (one in gateway mode; a bounded
pool of per-device connections otherwise), and sums the connections' statistics per cycle.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from functions.sync_worker.backoff import Backoff
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.connection import ConnectionStats, MqttConnection
from functions.sync_worker.uplink.pool import DEFAULT_MAX_CONNECTIONS, ConnectionPool
from functions.sync_worker.uplink.profile import OutboundMessage, PlatformProfile
from functions.sync_worker.uplink.profiles.presence import is_per_device


class MqttUplink:
    """The uplink the cycle runner publishes through: routes each message to its identity's
    connection (one in gateway mode; a pool of per-device connections otherwise)."""

    def __init__(
        self,
        profile: PlatformProfile,
        *,
        max_inflight: int = 20,
        max_queued: int = 1000,
        puback_timeout_s: float = 15.0,
        qos: int = 1,
        retain: bool = False,
        reconnect_max_s: float = 30.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.profile = profile
        self.reconnect_max_s = reconnect_max_s
        self.qos = qos
        self.retain = retain
        self.puback_timeout_s = puback_timeout_s
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._reported = ConnectionStats()
        self._retired = ConnectionStats()  # stats of connections the pool closed, kept in the totals
        self._pool: ConnectionPool[MqttConnection] = ConnectionPool(
            self._open, max_connections=max_connections, on_retire=self._absorb_retired
        )

    def start(self, identities: list[str] | None = None) -> MqttUplink:
        """Open the connections of `identities` now (default: the gateway identity; none in per-device
        mode, whose connections open lazily per device); others open on first use."""
        if identities is None:
            identities = [] if is_per_device(self.profile) else [self.profile.identity_for("")]
        for identity in identities:
            self.connection(identity)
        return self

    def connection(self, identity: str) -> MqttConnection:
        return self._pool.get(identity)

    def _open(self, identity: str) -> MqttConnection:
        return MqttConnection(
            self.profile,
            identity,
            max_inflight=self._max_inflight,
            max_queued=self._max_queued,
            puback_timeout_s=self.puback_timeout_s,
            qos=self.qos,
            retain=self.retain,
            backoff=Backoff(base_s=0.5, cap_s=self.reconnect_max_s),
        ).start()

    def _absorb_retired(self, identity: str, conn: MqttConnection) -> None:
        with self._lock:
            self._retired.connections_opened += conn.stats.connections_opened
            self._retired.reconnects.update(conn.stats.reconnects)
            self._retired.planned_reconnects += conn.stats.planned_reconnects

    def new_batch(self) -> PublishBatch:
        return PublishBatch()

    def publish(self, message: OutboundMessage, batch: PublishBatch) -> None:
        """Check, route and send one message. `PermanentError` when the platform would refuse it."""
        refused = self.publish_page([message], batch)
        if refused:
            raise refused[0][1]

    def publish_page(
        self, messages: list[OutboundMessage], batch: PublishBatch
    ) -> list[tuple[OutboundMessage, PermanentError]]:
        """Check, route and queue messages (a station's page: one identity, so one connection and
        one queue hand-off). Returns the messages the platform would refuse, with the reason; they
        are not sent. Raises `TransientError` when a connection's queue stays full (see `publish_many`)."""
        profile = self.profile
        check, topic_for, qos, retain = profile.check, profile.topic_for, self.qos, self.retain
        refused: list[tuple[OutboundMessage, PermanentError]] = []
        routed: dict[str, list[tuple[str, OutboundMessage]]] = {}
        # A station's identity once per page, not per message: in per-device mode it is a template
        # format and a pattern match, and a page is one station's.
        identities: dict[str, str | PermanentError] = {}
        for message in messages:
            identity = identities.get(message.station_id)
            if identity is None:
                try:
                    identity = profile.identity_for(message.station_id)
                except PermanentError as exc:
                    identity = exc
                identities[message.station_id] = identity
            if isinstance(identity, PermanentError):
                refused.append((message, identity))
                continue
            try:
                check(message, qos=qos, retain=retain)
                routed.setdefault(identity, []).append((topic_for(identity, message), message))
            except PermanentError as exc:
                refused.append((message, exc))
        for identity, items in routed.items():
            self.connection(identity).publish_many(items, batch)
        return refused

    @property
    def connected(self) -> bool:
        """What the heartbeat and the health check report. Gateway: the one connection is up.
        Per-device: at least one device connection is up, or none is open yet (nothing to connect
        before the first cycle). One refused or unreachable device fails its own stations each
        cycle; it must not fail the health check, or ECS would replace the task over one station."""
        conns = self._pool.connections()
        if is_per_device(self.profile):
            return not conns or any(c.connected for c in conns)
        return bool(conns) and all(c.connected for c in conns)

    def hold(self) -> None:
        """Standing by without the lease: keep what is connected, reconnect nothing (see `MqttConnection.hold`)."""
        for conn in self._pool.connections():
            conn.hold()

    def resume(self) -> None:
        for conn in self._pool.connections():
            conn.resume()

    def loops(self) -> dict[str, bool]:
        """Every open connection's threads and whether each is alive (for `health`)."""
        out: dict[str, bool] = {}
        for conn in self._pool.connections():
            out.update(conn.loops())
        return out

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.connected:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def totals(self) -> ConnectionStats:
        with self._lock:
            total = ConnectionStats(
                connections_opened=self._retired.connections_opened,
                reconnects=Counter(self._retired.reconnects),
                planned_reconnects=self._retired.planned_reconnects,
            )
        conns = self._pool.connections()
        for c in conns:
            total.connections_opened += c.stats.connections_opened
            total.reconnects.update(c.stats.reconnects)
            total.planned_reconnects += c.stats.planned_reconnects
        return total

    def take_cycle_stats(self) -> tuple[int, Counter[str], int, list[float]]:
        """(connections opened, reconnects by reason, planned reconnects, PUBACK latencies) since the last call."""
        total = self.totals()
        latencies: list[float] = []
        conns = self._pool.connections()
        for c in conns:
            while c.stats.puback_latencies_ms:
                latencies.append(c.stats.puback_latencies_ms.popleft())
        delta = (
            total.connections_opened - self._reported.connections_opened,
            total.reconnects - self._reported.reconnects,
            total.planned_reconnects - self._reported.planned_reconnects,
            latencies,
        )
        self._reported = total
        return delta

    def close(self, timeout_s: float = 10.0) -> None:
        self._pool.close_all(timeout_s)
