"""Azure IoT Hub over MQTT 3.1.1 on paho 2.x (no `azure-iot-device`: it pins paho-mqtt < 2).

- Connect: TLS to `{hub}.azure-devices.net:8883`, client id = device id, username
  `{hub}.azure-devices.net/{device_id}/?api-version=...`, password a SAS token (see `sas.py`) from
  the device's own key, or from a shared access policy key with DeviceConnect permission (`skn`).
- A token lives `token_ttl_s`; `ConnectionSpec.renew_at` asks the uplink for a planned reconnect
  before it expires, and each (re)connect gets a freshly signed token.
- Telemetry: `devices/{device_id}/messages/events/` followed by the URL-encoded property bag:
  system properties `$.mid` (message id), `$.ct` (content type), `$.ce` (content encoding), then
  the custom ones (sorted, `station_id` always among them).
- Refused before the wire (IoT Hub would drop the connection or the message): QoS 2, retain,
  messages over 256 KB (body + properties), custom property names starting with `$`.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import ConnectionSpec, OutboundMessage, PlatformLimits
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityRule, MappedIdentities
from functions.sync_worker.uplink.profiles.sas import SasTokenIssuer, decode_key
from functions.sync_worker.uplink.profiles.tls import LazyTlsContext, TlsMaterial

DEFAULT_API_VERSION = "2021-04-12"
MAX_MESSAGE_BYTES = 256 * 1024

#: IoT Hub device ids: up to 128 characters of ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '
AZURE_DEVICE_ID = IdentityRule(
    platform="azure_iot_hub",
    pattern=re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']+"),
    max_length=128,
    description="ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '",
)


@functools.lru_cache(maxsize=4096)
def _enc(value: str) -> str:
    """Percent-encoded, remembered: of a bag's six keys and values only the message id is new per
    message (and it is written twice), `quote` costs about a microsecond each."""
    return quote(value, safe="")


def encode_property_bag(message: OutboundMessage) -> str:
    """`$.mid=..&$.ct=..&$.ce=..&k=v..`, each key and value RFC 2396 percent-encoded (the `$.`
    prefix of system properties is written literally, as in Microsoft's MQTT documentation)."""
    system = [("$.mid", message.message_id), ("$.ct", message.content_type), ("$.ce", message.content_encoding)]
    custom = {"station_id": message.station_id, **message.properties}
    reserved = sorted(key for key in custom if key.startswith("$"))
    if reserved:
        raise PermanentError(
            f"azure_iot_hub: custom property names may not start with '$': {reserved}", station_id=message.station_id
        )
    parts = [f"{key}={_enc(value)}" for key, value in system if value]
    parts += [f"{_enc(key)}={_enc(str(value))}" for key, value in sorted(custom.items())]
    return "&".join(parts)


@dataclass(frozen=True, slots=True)
class AzureCredentials:
    """Device keys (id -> base64 key) and/or a shared access policy (name + key) for any device."""

    device_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    policy_name: str | None = None
    policy_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if bool(self.policy_name) != bool(self.policy_key):
            raise PermanentError("azure_iot_hub: a shared access policy needs both its name and its key")
        if not self.device_keys and not self.policy_key:
            raise PermanentError("azure_iot_hub: no credentials (device key(s) or a shared access policy)")
        # Malformed keys fail at startup, naming the device, never at its first connect.
        for device_id, key in self.device_keys.items():
            try:
                decode_key(key)
            except PermanentError as exc:
                raise PermanentError(f"{exc} (device {device_id!r})") from None
        if self.policy_key:
            decode_key(self.policy_key)


@dataclass
class AzureIotHubProfile(MappedIdentities):
    hostname: str
    identities: IdentityMapping
    credentials: AzureCredentials
    tls_material: TlsMaterial = field(default_factory=TlsMaterial)
    api_version: str = DEFAULT_API_VERSION
    token_ttl_s: int = 3600
    renew_margin_s: float = 300.0
    port: int = 8883
    keepalive_s: int = 60
    #: TCP host to dial when it differs from `hostname` (a private endpoint, a test broker); the
    #: username and the signed resource URI always use `hostname`.
    connect_host: str | None = None
    #: Wall clock the token expiry is computed from (injectable so tests can pin a token).
    wall_clock: Callable[[], float] = time.time
    name: str = "azure_iot_hub"
    limits: PlatformLimits = field(
        default_factory=lambda: PlatformLimits(
            max_payload_bytes=MAX_MESSAGE_BYTES,
            max_publish_per_s=None,
            allowed_qos=frozenset({0, 1}),
            retain_allowed=False,
        )
    )

    def __post_init__(self) -> None:
        if not self.hostname or "/" in self.hostname:
            raise PermanentError(f"azure_iot_hub: hostname must be like myhub.azure-devices.net, got {self.hostname!r}")
        self._tls = LazyTlsContext(self.tls_material)
        self._issuers: dict[str, SasTokenIssuer] = {}
        self._lock = threading.Lock()
        #: The last message's property bag: `check` and then `topic_for` need it for the same
        #: message. One tuple, swapped whole, so a station thread reads its own or recomputes.
        self._last_bag: tuple[OutboundMessage, str] | None = None

    def _bag(self, message: OutboundMessage) -> str:
        last = self._last_bag
        if last is not None and last[0] is message:
            return last[1]
        bag = encode_property_bag(message)
        self._last_bag = (message, bag)
        return bag

    def resource_uri(self, device_id: str) -> str:
        return f"{self.hostname}/devices/{device_id}"

    def username(self, device_id: str) -> str:
        return f"{self.hostname}/{device_id}/?api-version={self.api_version}"

    def _issuer(self, device_id: str) -> SasTokenIssuer:
        with self._lock:
            issuer = self._issuers.get(device_id)
            if issuer is None:
                key = self.credentials.device_keys.get(device_id)
                policy = None
                if key is None:
                    key, policy = self.credentials.policy_key, self.credentials.policy_name
                if key is None:
                    raise PermanentError(f"azure_iot_hub: no key for device {device_id!r} and no shared access policy")
                issuer = SasTokenIssuer(
                    key_b64=key, ttl_s=self.token_ttl_s, renew_margin_s=self.renew_margin_s, policy_name=policy
                )
                self._issuers[device_id] = issuer
            return issuer

    # -- the PlatformProfile protocol --------------------------------------------------------------
    def connection_spec(self, identity: str) -> ConnectionSpec:
        AZURE_DEVICE_ID.validate(identity)
        token = self._issuer(identity).issue(self.resource_uri(identity), wall_now=self.wall_clock())
        return ConnectionSpec(
            host=self.connect_host or self.hostname,
            port=self.port,
            client_id=identity,
            username=self.username(identity),
            password=token.token,
            tls=self._tls.get(),
            protocol=4,  # IoT Hub speaks MQTT 3.1.1
            keepalive_s=self.keepalive_s,
            clean_session=True,  # no cloud-to-device subscriptions to keep
            will=None,  # IoT Hub ignores/forbids retained wills; presence comes from its own events
            renew_at=token.renew_at,
        )

    def topic_for(self, identity: str, message: OutboundMessage) -> str:
        return f"devices/{identity}/messages/events/{self._bag(message)}"

    def check(self, message: OutboundMessage, *, qos: int, retain: bool) -> None:
        sid = message.station_id
        if qos not in self.limits.allowed_qos:
            raise PermanentError(
                f"azure_iot_hub: QoS {qos} is not supported (IoT Hub accepts QoS 0 and 1)", station_id=sid
            )
        if retain:
            raise PermanentError("azure_iot_hub: retained messages are not supported by IoT Hub", station_id=sid)
        size = len(message.payload) + len(self._bag(message).encode())
        if size > self.limits.max_payload_bytes:
            raise PermanentError(
                f"azure_iot_hub: message {message.message_id} is {size} bytes with its properties, "
                f"over IoT Hub's {self.limits.max_payload_bytes}-byte limit",
                station_id=sid,
            )
