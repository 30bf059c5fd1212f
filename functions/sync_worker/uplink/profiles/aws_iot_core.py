"""AWS IoT Core: mutual TLS with the thing's X.509 certificate, client id = thing name.

- Connect: TLS to `{prefix}-ats.iot.{region}.amazonaws.com:8883` with client certificate + key
  (port 443 works too: ALPN `x-amzn-mqtt-ca` is then offered). No username/password.
- Limits enforced client-side before the wire: QoS 0/1 only, payload <= 128 KB, and at most 100
  publishes per second per connection (exposed as `limits.max_publish_per_s`; the uplink
  honours it with a token bucket, see `functions/sync_worker/ratelimit.py`).
- Topic rules: UTF-8, <= 256 bytes, <= 7 forward slashes (8 levels), no wildcards; `$`-prefixed
  topics only under AWS's reserved `$aws/rules/` (Basic Ingest, whose `$aws/rules/{rule}/` prefix
  does not count toward the limits) and `$aws/things/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import ConnectionSpec, OutboundMessage, PlatformLimits
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityRule, MappedIdentities
from functions.sync_worker.uplink.profiles.tls import LazyTlsContext, TlsMaterial

MAX_PAYLOAD_BYTES = 128 * 1024
MAX_PUBLISH_PER_S = 100.0
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
DEFAULT_TOPIC = "c2c/{env}/stations/{station_id}/telemetry"
ALPN_MQTT_ON_443 = "x-amzn-mqtt-ca"

#: Thing names: 1-128 characters of letters, digits, colon, underscore, hyphen.
AWS_THING_NAME = IdentityRule(
    platform="aws_iot_core",
    pattern=re.compile(r"[A-Za-z0-9:_\-]+"),
    max_length=128,
    description="letters, digits, ':', '_' and '-'",
)

_BASIC_INGEST = re.compile(r"^\$aws/rules/[A-Za-z0-9_]+/")
_RESERVED_PUBLISHABLE = ("$aws/rules/", "$aws/things/")


def check_topic(topic: str) -> None:
    """Raise `PermanentError` naming the AWS IoT topic rule `topic` breaks."""
    if not topic:
        raise PermanentError("aws_iot_core: empty topic")
    if any(ch in topic for ch in "+#\x00"):
        raise PermanentError(f"aws_iot_core: topic {topic!r} contains a wildcard or NUL, not allowed in a publish")
    if topic.startswith("$"):
        if not topic.startswith(_RESERVED_PUBLISHABLE):
            raise PermanentError(
                f"aws_iot_core: topic {topic!r} starts with '$', reserved for AWS "
                "(only $aws/rules/... and $aws/things/... can be published to)"
            )
        ingest = _BASIC_INGEST.match(topic)
        if topic.startswith("$aws/rules/") and not ingest:
            raise PermanentError(f"aws_iot_core: Basic Ingest topic {topic!r} must be $aws/rules/<rule_name>/...")
        if ingest:
            topic = topic[ingest.end() :]  # the Basic Ingest prefix is not counted by AWS
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        raise PermanentError(f"aws_iot_core: topic is {size} bytes, over the {MAX_TOPIC_BYTES}-byte limit")
    slashes = topic.count("/")
    if slashes > MAX_TOPIC_SLASHES:
        raise PermanentError(
            f"aws_iot_core: topic {topic!r} has {slashes} forward slashes, "
            f"over the limit of {MAX_TOPIC_SLASHES} (8 levels)"
        )


@dataclass
class AwsIotCoreProfile(MappedIdentities):
    endpoint: str
    identities: IdentityMapping
    tls_material: TlsMaterial
    topic_template: str = DEFAULT_TOPIC
    env: str = "dev"
    port: int = 8883
    protocol: int = 4  # 4 = MQTT 3.1.1, 5 = MQTT 5; AWS IoT Core speaks both
    keepalive_s: int = 60
    #: TCP host to dial when it differs from `endpoint` (a test broker).
    connect_host: str | None = None
    name: str = "aws_iot_core"
    limits: PlatformLimits = field(
        default_factory=lambda: PlatformLimits(
            max_payload_bytes=MAX_PAYLOAD_BYTES,
            max_publish_per_s=MAX_PUBLISH_PER_S,
            allowed_qos=frozenset({0, 1}),
            retain_allowed=True,
        )
    )

    def __post_init__(self) -> None:
        if not self.tls_material.has_client_certificate:
            raise PermanentError("aws_iot_core: the thing's client certificate and private key are required (mTLS)")
        if self.tls_material.insecure:
            raise PermanentError("aws_iot_core: TLS verification cannot be disabled")
        if self.protocol not in (4, 5):
            raise PermanentError(f"aws_iot_core: protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {self.protocol}")
        if not 30 <= self.keepalive_s <= 1200:
            raise PermanentError(f"aws_iot_core: keepalive must be 30..1200 s, got {self.keepalive_s}")
        try:
            sample = self.topic_template.format(env=self.env, station_id="station", identity="thing")
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(f"aws_iot_core: topic template {self.topic_template!r} is invalid: {exc!r}") from None
        check_topic(sample)
        material = self.tls_material
        if self.port == 443 and not material.alpn_protocols:
            material = replace(material, alpn_protocols=(ALPN_MQTT_ON_443,))
        self._tls = LazyTlsContext(material)
        # A station's topic formatted and checked once (the template has no per-message field):
        # `check` and `topic_for` each formatted it for every message. Dict and set stores are
        # atomic under the GIL; both are bounded by the stations synced.
        self._topics: dict[tuple[str, str], str] = {}
        self._valid_topics: set[str] = set()

    def connection_spec(self, identity: str) -> ConnectionSpec:
        AWS_THING_NAME.validate(identity)
        return ConnectionSpec(
            host=self.connect_host or self.endpoint,
            port=self.port,
            client_id=identity,
            tls=self._tls.get(),
            protocol=self.protocol,
            keepalive_s=self.keepalive_s,
            clean_session=True,
        )

    def topic_for(self, identity: str, message: OutboundMessage) -> str:
        key = (identity, message.station_id)
        topic = self._topics.get(key)
        if topic is None:
            topic = self.topic_template.format(env=self.env, station_id=message.station_id, identity=identity)
            self._topics[key] = topic
        return topic

    def check(self, message: OutboundMessage, *, qos: int, retain: bool) -> None:
        sid = message.station_id
        if qos not in self.limits.allowed_qos:
            raise PermanentError(
                f"aws_iot_core: QoS {qos} is not supported (AWS IoT Core accepts QoS 0 and 1)", station_id=sid
            )
        size = len(message.payload)
        if size > self.limits.max_payload_bytes:
            raise PermanentError(
                f"aws_iot_core: payload of {message.message_id} is {size} bytes, over AWS IoT "
                f"Core's {self.limits.max_payload_bytes}-byte limit",
                station_id=sid,
            )
        try:
            topic = self.topic_for(self.identity_for(sid), message)
            if topic not in self._valid_topics:
                check_topic(topic)
                self._valid_topics.add(topic)
        except PermanentError as exc:
            raise PermanentError(str(exc), station_id=sid) from None
