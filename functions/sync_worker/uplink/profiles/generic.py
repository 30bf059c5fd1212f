"""The generic profile: any MQTT 3.1.1/5 broker (Mosquitto, EMQX, HiveMQ, ...).

The one profile `C2C_PLATFORM_PROFILE=generic` selects (the default), built from the worker's own
`C2C_MQTT_*` settings so CLI flags apply. Username/password and/or a client certificate, TLS
verified against a CA bundle or the system store (off only by an explicit local flag), gateway or
per-device identities, and presence on a retained status topic: the broker publishes the last-will
`offline` if the connection dies, the uplink publishes `online` (retained) after every connect
(`online_message`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import ConnectionSpec, OutboundMessage, PlatformLimits, Will
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityRule, MappedIdentities
from functions.sync_worker.uplink.profiles.tls import LazyTlsContext, TlsMaterial

DEFAULT_TOPIC = "c2c/{env}/stations/{station_id}/telemetry"
DEFAULT_STATUS_TOPIC = "c2c/{env}/status/{identity}"
ONLINE = b"online"
OFFLINE = b"offline"

MQTT_CLIENT_ID = IdentityRule(
    platform="generic",
    pattern=re.compile(r"[^\x00+#/]+"),
    max_length=65535,
    description="any UTF-8 but NUL, '+', '#', '/'",
)


@dataclass
class GenericProfile(MappedIdentities):
    host: str
    port: int
    identities: IdentityMapping
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: None: plain TCP (mqtt://); otherwise TLS with this material (mqtts://).
    tls_material: TlsMaterial | None = None
    protocol: int = 4
    keepalive_s: int = 60
    env: str = "dev"
    topic_template: str = DEFAULT_TOPIC
    #: Retained presence topic ("" disables the will and the online message).
    status_topic_template: str = DEFAULT_STATUS_TOPIC
    max_payload_bytes: int = 256 * 1024
    name: str = "generic"
    limits: PlatformLimits = field(init=False)

    def __post_init__(self) -> None:
        if self.protocol not in (4, 5):
            raise PermanentError(f"generic: protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {self.protocol}")
        if self.password and not self.username:
            raise PermanentError("generic: a password without a username")
        for template in (self.topic_template, self.status_topic_template):
            try:
                topic = template.format(env=self.env, station_id="s", identity="i", message_id="m")
            except (KeyError, IndexError, ValueError) as exc:
                raise PermanentError(f"generic: topic template {template!r} is invalid: {exc!r}") from None
            if any(ch in topic for ch in "+#"):
                raise PermanentError(f"generic: topic template {template!r} contains an MQTT wildcard")
        self.limits = PlatformLimits(
            max_payload_bytes=self.max_payload_bytes,
            max_publish_per_s=None,
            allowed_qos=frozenset({0, 1, 2}),
            retain_allowed=True,
        )
        # Most templates use only {station_id} (gateway) or nothing per message: precompute the
        # topic per station so the hot path is one dict lookup, not a str.format per message.
        self._topic_per_station = "{message_id}" not in self.topic_template
        self._topics: dict[tuple[str, str], str] = {}
        self._tls = LazyTlsContext(self.tls_material)

    def status_topic(self, identity: str) -> str | None:
        if not self.status_topic_template:
            return None
        return self.status_topic_template.format(env=self.env, identity=identity, station_id=identity, message_id="")

    def online_message(self, identity: str) -> Will | None:
        """What to publish (retained) right after each successful connect; None: nothing."""
        topic = self.status_topic(identity)
        return Will(topic=topic, payload=ONLINE, qos=1, retain=True) if topic else None

    def connection_spec(self, identity: str) -> ConnectionSpec:
        topic = self.status_topic(identity)
        return ConnectionSpec(
            host=self.host,
            port=self.port,
            client_id=identity,
            username=self.username,
            password=self.password,
            tls=self._tls.get(),
            protocol=self.protocol,
            keepalive_s=self.keepalive_s,
            clean_session=True,
            will=Will(topic=topic, payload=OFFLINE, qos=1, retain=True) if topic else None,
        )

    def topic_for(self, identity: str, message: OutboundMessage) -> str:
        if not self._topic_per_station:
            return self.topic_template.format(
                env=self.env, station_id=message.station_id, identity=identity, message_id=message.message_id
            )
        key = (identity, message.station_id)
        topic = self._topics.get(key)
        if topic is None:
            topic = self.topic_template.format(env=self.env, station_id=message.station_id, identity=identity)
            self._topics[key] = topic  # bounded by the stations synced; a dict store is atomic under the GIL
        return topic

    def check(self, message: OutboundMessage, *, qos: int, retain: bool) -> None:
        if qos not in self.limits.allowed_qos:
            raise PermanentError(f"generic: QoS {qos} is not an MQTT QoS", station_id=message.station_id)
        if len(message.payload) > self.limits.max_payload_bytes:
            raise PermanentError(
                f"generic: payload of {message.message_id} is {len(message.payload)} bytes, over "
                f"the configured {self.limits.max_payload_bytes}-byte limit",
                station_id=message.station_id,
            )
