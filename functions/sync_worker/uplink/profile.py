"""What the uplink needs to know about an IoT platform, kept apart from the MQTT mechanics.

A `PlatformProfile` says how to connect as one identity (host, client id, credentials, TLS), where
a message goes (topic, properties) and what the platform forbids (size, QoS, retain, rate). The
uplink asks for a fresh `ConnectionSpec` on every (re)connect, so expiring credentials (an Azure
SAS token) are simply recomputed; `renew_at` tells the uplink when to do a planned reconnect.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One reading, transformed, ready for the platform. `payload` is the encoded body."""

    station_id: str
    message_id: str
    payload: bytes
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # secrets stay out of reprs and logs
    tls: ssl.SSLContext | None = None
    protocol: int = 4  # paho's MQTTv311 (4) or MQTTv5 (5)
    keepalive_s: int = 60
    clean_session: bool = True
    will: Will | None = None
    #: Monotonic time at which credentials must be renewed by a planned reconnect (None: never).
    renew_at: float | None = None


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    max_payload_bytes: int = 256 * 1024
    max_publish_per_s: float | None = None
    allowed_qos: frozenset[int] = frozenset({0, 1})
    retain_allowed: bool = True


@runtime_checkable
class PlatformProfile(Protocol):
    name: str
    limits: PlatformLimits

    def identity_for(self, station_id: str) -> str:
        """The identity (and so the connection) a station's messages use: one in gateway mode,
        the station's device id in per-device mode."""
        ...

    def connection_spec(self, identity: str) -> ConnectionSpec:
        """Called on every connect and reconnect of `identity`."""
        ...

    def topic_for(self, identity: str, message: OutboundMessage) -> str: ...

    def check(self, message: OutboundMessage, *, qos: int, retain: bool) -> None:
        """Raise `PermanentError` naming the rule when the platform would refuse this publish."""
        ...
