"""The generic MQTT profile: any MQTT 3.1.1/5 broker (Mosquitto, EMQX, HiveMQ) in gateway mode.

One identity (the configured client id) for every station, username/password auth, TLS with
verification on (a CA bundle or the system store), and a topic template with the station id.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import ConnectionSpec, OutboundMessage, PlatformLimits


@dataclass
class GenericProfile:
    host: str
    port: int
    client_id: str
    topic_template: str = "c2c/{env}/stations/{station_id}/telemetry"
    env: str = "dev"
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    ca_file: str | None = None
    #: Disables certificate and host-name verification. Only for a local broker with a self-signed cert.
    insecure: bool = False
    keepalive_s: int = 60
    limits: PlatformLimits = field(default_factory=PlatformLimits)
    name: str = "generic"

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs: object) -> "GenericProfile":
        parts = urlsplit(url)
        use_tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if use_tls else 1883)
        return cls(host=parts.hostname or "", port=port, client_id=client_id, use_tls=use_tls, **kwargs)  # type: ignore[arg-type]

    def identity_for(self, station_id: str) -> str:
        return self.client_id

    def connection_spec(self, identity: str) -> ConnectionSpec:
        return ConnectionSpec(host=self.host, port=self.port, client_id=identity, username=self.username,
                              password=self.password, tls=self._tls_context() if self.use_tls else None,
                              keepalive_s=self.keepalive_s)

    def topic_for(self, identity: str, message: OutboundMessage) -> str:
        return self.topic_template.format(env=self.env, station_id=message.station_id, identity=identity,
                                          message_id=message.message_id)

    def check(self, message: OutboundMessage, *, qos: int, retain: bool) -> None:
        if len(message.payload) > self.limits.max_payload_bytes:
            raise PermanentError(f"payload of {len(message.payload)} bytes exceeds the platform limit of "
                                 f"{self.limits.max_payload_bytes}", station_id=message.station_id)
        if qos not in self.limits.allowed_qos:
            raise PermanentError(f"QoS {qos} is not allowed by the platform", station_id=message.station_id)
        if retain and not self.limits.retain_allowed:
            raise PermanentError("retained messages are not allowed by the platform", station_id=message.station_id)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
