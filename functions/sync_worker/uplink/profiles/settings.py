"""Environment settings of the cloud platform profiles (pydantic-settings; secrets as `SecretStr`).

`C2C_PLATFORM_PROFILE` picks the profile; each reads only its own prefix: `C2C_AZURE_*`
(azure_iot_hub), `C2C_AWS_IOT_*` (aws_iot_core). The generic profile has no settings class of its
own: its `C2C_MQTT_*` variables are fields of the worker's `WorkerSettings`. PEM/key values are
secrets: in ECS they come from Secrets Manager as `ecs.Secret`s; locally a `*_FILE` path may replace
each `*_PEM`.
"""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.sync_worker.uplink.profiles.identity import IdentityMode

PROTOCOLS = {"3.1.1": 4, "5": 5}


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def mqtt_fallback(mqtt_url: str | None, mqtt_client_id: str | None) -> tuple[str | None, int | None, str | None]:
    """(host, port, client id) from the shared C2C_MQTT_URL / C2C_MQTT_CLIENT_ID, which the
    sync-service stack always sets from the environment config's `platform.endpoint`/`client_id`:
    a profile's own host/identity variables default to them."""
    parts = urlsplit(mqtt_url) if mqtt_url else None
    host = parts.hostname if parts and parts.scheme == "mqtts" else None
    port = parts.port if host and parts else None
    return host, port, mqtt_client_id or None


class _SharedMqttFallback(BaseSettings):
    """The shared endpoint and client id a platform profile falls back to.

    Read from C2C_MQTT_URL / C2C_MQTT_CLIENT_ID, or passed in by the factory from the worker's own
    settings, so `run --mqtt-url/--mqtt-client-id` reach every profile, not only `generic`.
    """

    shared_mqtt_url: str | None = Field(default=None, validation_alias="C2C_MQTT_URL")
    shared_mqtt_client_id: str | None = Field(default=None, validation_alias="C2C_MQTT_CLIENT_ID")

    def _fallback(self) -> tuple[str | None, int | None, str | None]:
        return mqtt_fallback(self.shared_mqtt_url, self.shared_mqtt_client_id)


def parse_connection_string(value: str) -> dict[str, str]:
    """`HostName=h;DeviceId=d;SharedAccessKey=k` or `HostName=h;SharedAccessKeyName=p;SharedAccessKey=k`."""
    parts: dict[str, str] = {}
    for item in value.strip().split(";"):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"connection string part {key!r} has no '='")
        parts[key.strip()] = val.strip()  # partition: base64 padding "=" stays in the value
    if "HostName" not in parts or "SharedAccessKey" not in parts:
        raise ValueError("connection string needs HostName and SharedAccessKey")
    return parts


class AzureIotHubSettings(_SharedMqttFallback):
    model_config = SettingsConfigDict(env_prefix="C2C_AZURE_", extra="ignore")

    #: Device or policy connection string from the portal (secret); fills the fields below.
    connection_string: SecretStr | None = None
    hostname: str | None = None  # {hub}.azure-devices.net
    device_id: str | None = None  # gateway mode: the one device
    device_key: SecretStr | None = None  # base64 key of device_id
    #: per-device mode with device keys: JSON object {"device id": "base64 key", ...} (secret)
    device_keys: SecretStr | None = None
    policy_name: str | None = None  # shared access policy with DeviceConnect, e.g. "device"
    policy_key: SecretStr | None = None
    #: The key alone (secret): the policy's key when C2C_AZURE_POLICY_NAME is set, else the device key.
    sas_key: SecretStr | None = None
    identity_mode: IdentityMode = IdentityMode.GATEWAY
    device_id_template: str = "{station_id}"
    api_version: str = "2021-04-12"
    token_ttl_s: int = Field(3600, ge=1)
    token_renew_margin_s: float = Field(300.0, ge=0)
    port: int | None = None  # default: C2C_MQTT_URL's port, else 8883
    connect_host: str | None = None
    keepalive_s: int = Field(60, ge=5, le=1177)  # IoT Hub's maximum keep-alive is 1177 s
    ca_file: str | None = None
    ca_pem: str | None = None

    @model_validator(mode="after")
    def _apply_connection_string(self) -> AzureIotHubSettings:
        if self.connection_string is not None:
            parts = parse_connection_string(self.connection_string.get_secret_value())
            self.hostname = self.hostname or parts["HostName"]
            if "SharedAccessKeyName" in parts:
                self.policy_name = self.policy_name or parts["SharedAccessKeyName"]
                self.policy_key = self.policy_key or SecretStr(parts["SharedAccessKey"])
            else:
                self.device_id = self.device_id or parts.get("DeviceId")
                self.device_key = self.device_key or SecretStr(parts["SharedAccessKey"])
        if self.sas_key is not None:
            if self.policy_name:
                self.policy_key = self.policy_key or self.sas_key
            else:
                self.device_key = self.device_key or self.sas_key
        host, port, client_id = self._fallback()
        self.hostname = self.hostname or host
        self.port = self.port or port or 8883
        if self.identity_mode is IdentityMode.GATEWAY:
            self.device_id = self.device_id or client_id
        if not self.hostname:
            raise ValueError(
                "C2C_AZURE_HOSTNAME (or C2C_AZURE_CONNECTION_STRING, or an mqtts:// C2C_MQTT_URL) is required"
            )
        if self.identity_mode is IdentityMode.GATEWAY and not self.device_id:
            raise ValueError(
                "gateway mode needs C2C_AZURE_DEVICE_ID (or C2C_MQTT_CLIENT_ID, or a device connection string)"
            )
        if not (self.device_key or self.device_keys or self.policy_key):
            raise ValueError(
                "no credentials: set C2C_AZURE_CONNECTION_STRING, C2C_AZURE_SAS_KEY, "
                "C2C_AZURE_DEVICE_KEY, C2C_AZURE_DEVICE_KEYS or C2C_AZURE_POLICY_NAME + C2C_AZURE_POLICY_KEY"
            )
        self.device_key_map()  # malformed JSON fails here, at startup
        return self

    def device_key_map(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        if self.device_keys is not None:
            try:
                parsed = json.loads(self.device_keys.get_secret_value())
            except json.JSONDecodeError as exc:
                raise ValueError(f"C2C_AZURE_DEVICE_KEYS is not JSON ({exc.msg})") from None
            if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
                raise ValueError('C2C_AZURE_DEVICE_KEYS must be a JSON object {"device id": "base64 key"}')
            keys.update(parsed)
        if self.device_id and self.device_key is not None:
            keys[self.device_id] = self.device_key.get_secret_value()
        return keys


class AwsIotCoreSettings(_SharedMqttFallback):
    model_config = SettingsConfigDict(env_prefix="C2C_AWS_IOT_", extra="ignore")

    endpoint: str | None = None  # {prefix}-ats.iot.{region}.amazonaws.com; default: C2C_MQTT_URL's host
    thing_name: str | None = None  # gateway mode: the client id
    identity_mode: IdentityMode = IdentityMode.GATEWAY
    thing_name_template: str = "{station_id}"
    cert_pem: SecretStr | None = None
    cert_file: str | None = None
    key_pem: SecretStr | None = None
    key_file: str | None = None
    ca_pem: str | None = None  # default: the system trust store (holds Amazon Root CA 1)
    ca_file: str | None = None
    topic: str = "c2c/{env}/stations/{station_id}/telemetry"
    port: int | None = None  # default: C2C_MQTT_URL's port, else 8883
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = Field(60, ge=30, le=1200)
    connect_host: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AwsIotCoreSettings:
        host, port, client_id = self._fallback()
        self.endpoint = self.endpoint or host
        self.port = self.port or port or 8883
        if self.identity_mode is IdentityMode.GATEWAY:
            self.thing_name = self.thing_name or client_id
        if not self.endpoint:
            raise ValueError("C2C_AWS_IOT_ENDPOINT (or an mqtts:// C2C_MQTT_URL) is required")
        if self.identity_mode is IdentityMode.GATEWAY and not self.thing_name:
            raise ValueError("gateway mode needs C2C_AWS_IOT_THING_NAME (or C2C_MQTT_CLIENT_ID)")
        if not (self.cert_pem or self.cert_file) or not (self.key_pem or self.key_file):
            raise ValueError("mTLS needs C2C_AWS_IOT_CERT_PEM (or _CERT_FILE) and C2C_AWS_IOT_KEY_PEM (or _KEY_FILE)")
        return self
