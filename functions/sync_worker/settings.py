"""The worker's configuration: environment variables prefixed `C2C_`, overridable by CLI flags.

One typed model so a bad value refuses to start the worker with the variable named, instead of
failing an hour later in the middle of a cycle. Secrets (`*_PASSWORD`, `*_API_KEY`) are
`SecretStr`: ECS injects them from Secrets Manager as environment variables, and they never show
up in logs or in `validate-config` output. A password written into a URL
(`redis://:pw@host:6379/0`) is masked in that output too, see `redact_url`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from functions.common.signal import StationId
from functions.common.state import StateKeys
from functions.common.validation import Location, describe_validation_error

ENV_PREFIX = "C2C_"
MASK = "**********"
#: Settings holding a URL, which may carry a password in its userinfo.
_URL_FIELDS = ("redis_url", "mqtt_url", "source_url", "signal_url")


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    env: str = Field(default="dev", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    mode: Literal["per-signal", "continuous"] = "per-signal"
    interval_s: float = Field(default=180.0, gt=0, le=86_400)

    #: SQS queue URL, or the literal `redis` for Redis pub/sub; None: no signal transport (only `run --once`).
    signal_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_topic: str = "c2c/{env}/stations/{station_id}/telemetry"
    #: Retained presence topic of the generic profile: `online` after each connect, `offline` as the
    #: last will. An empty value disables both.
    mqtt_status_topic: str = "c2c/{env}/status/{identity}"
    mqtt_insecure: bool = False
    #: CA bundle to verify the broker with (default: the system store); `_PEM` holds the PEM text itself.
    mqtt_ca_file: str | None = None
    mqtt_ca_pem: str | None = None
    #: Client certificate for mTLS, as files (local) or PEM text (Secrets Manager in ECS).
    mqtt_cert_file: str | None = None
    mqtt_cert_pem: SecretStr | None = None
    mqtt_key_file: str | None = None
    mqtt_key_pem: SecretStr | None = None
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    mqtt_keepalive_s: int = Field(default=60, ge=5, le=1200)
    #: `gateway`: one identity (the client id) for every station; `per-device`: one per station,
    #: named by `mqtt_client_id_template`, each its own persistent connection.
    mqtt_identity_mode: Literal["gateway", "per-device"] = "gateway"
    mqtt_client_id_template: str = "{station_id}"
    mqtt_max_payload_bytes: int = Field(default=256 * 1024, ge=1, le=268_435_455)
    #: Bound of the per-device connection pool (least recently used connection retired beyond it).
    mqtt_max_connections: int = Field(default=500, ge=1, le=100_000)
    #: Cap of the reconnect backoff (exponential with full jitter from 0.5 s).
    mqtt_reconnect_max_s: float = Field(default=30.0, ge=0.5, le=600)
    platform_profile: Literal["generic", "azure_iot_hub", "aws_iot_core"] = "generic"

    source_url: str | None = None
    source_config: str = "simulator"
    source_api_key: SecretStr | None = None
    #: A plug-in adapter class (`package.module:Class`); when set it replaces `source_config`.
    source_adapter: str | None = None
    #: The adapter's own settings, a JSON object (C2C_SOURCE_SETTINGS).
    source_settings: dict[str, Any] = Field(default_factory=dict)
    stations: Annotated[list[StationId] | None, NoDecode] = None

    concurrency: int = Field(default=32, ge=1, le=512)
    page_size: int = Field(default=500, ge=1, le=10_000)
    backfill_window_s: float = Field(default=24 * 3600.0, gt=0)
    max_inflight: int = Field(default=20, ge=1, le=65_535)
    puback_timeout_s: float = Field(default=15.0, gt=0, le=600)
    shutdown_deadline_s: float = Field(default=20.0, gt=0, le=25)

    #: DynamoDB table of the cursor checkpoint (see checkpoint.py); None: no checkpoint (local runs).
    checkpoint_table: str | None = Field(default=None, min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")

    lease_ttl_s: float = Field(default=30.0, ge=1, le=600)
    heartbeat_interval_s: float = Field(default=10.0, gt=0, le=60)
    heartbeat_metric_interval_s: float = Field(default=30.0, gt=0, le=300)
    station_list_ttl_s: float = Field(default=900.0, ge=0)
    sqs_wait_s: int = Field(default=20, ge=0, le=20)
    sqs_visibility_s: int = Field(default=60, ge=5, le=43_200)
    #: A rejected (malformed) signal is visible again after this, on its way to maxReceiveCount and the DLQ.
    sqs_reject_visibility_s: int = Field(default=5, ge=0, le=43_200)
    #: Local file the `health` command reads (the container check runs in a separate process).
    status_file: str = "/tmp/c2c-sync-worker.status.json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("stations", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # Unset means every station; a value that names none (`,`, spaces) is a mistake, not "all".
        if isinstance(value, str):
            items = [s.strip() for s in value.split(",") if s.strip()]
            if not items:
                raise ValueError("names no station id: leave it unset to sync every station")
            return items
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        return _url_with_host(value, ("mqtt", "mqtts"), "mqtt://host[:port] or mqtts://host[:port]")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return _url_with_host(value, ("redis", "rediss"), "redis://host:port/db or rediss://host:port/db")

    @field_validator("signal_url")
    @classmethod
    def _signal_transport(cls, value: str | None) -> str | None:
        if value is None or value == "redis":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.count("/") < 2:
            raise ValueError(
                "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>) or `redis`"
            )
        return value

    @field_validator("source_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("mqtt_topic", "mqtt_status_topic")
    @classmethod
    def _topic_template(cls, value: str) -> str:
        try:
            value.format(env="e", station_id="s", identity="i", message_id="m")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder {exc}; allowed: {{env}} {{station_id}} {{identity}} {{message_id}}"
            ) from None
        if "+" in value or "#" in value:
            raise ValueError("a publish topic cannot contain the wildcards + or #")
        return value

    @field_validator("mqtt_client_id_template")
    @classmethod
    def _per_device_template(cls, value: str) -> str:
        if "{station_id}" not in value:
            raise ValueError("must contain {station_id}")
        return value

    @model_validator(mode="after")
    def _plaintext_only_when_allowed(self) -> WorkerSettings:
        # Credentials over plaintext MQTT are only acceptable on the loopback or when explicitly asked for.
        parts = urlsplit(self.mqtt_url)
        if parts.scheme == "mqtt" and not self.mqtt_insecure and not _is_loopback(parts.hostname or ""):
            raise ValueError(
                "mqtt_url: plaintext mqtt:// to a non-local broker needs C2C_MQTT_INSECURE=true; use mqtts://"
            )
        return self

    # -- derived values -------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.mqtt_client_id or f"c2c-sync-{self.env}"

    @property
    def state_keys(self) -> StateKeys:
        return StateKeys.for_env(self.env)

    def redacted(self) -> dict[str, object]:
        """The settings as `validate-config` prints them: secrets masked."""
        out = self.model_dump(mode="json")
        for key, value in out.items():
            if isinstance(getattr(self, key), SecretStr) and value is not None:
                out[key] = MASK
            elif key in _URL_FIELDS and isinstance(value, str):
                out[key] = redact_url(value)
        return out


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo masked (`redis://:pw@h/0` -> `redis://:***@h/0`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def _url_with_host(value: str, schemes: tuple[str, ...], form: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be {form}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConfigError(ValueError):
    """Invalid configuration; the message names every offending variable (`C2C_<FIELD>`)."""


def load_settings(**overrides: Any) -> WorkerSettings:
    """Environment first, then `overrides` (CLI flags; None means "not given") on top. Any value
    type: pydantic validates and coerces each against its field."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return WorkerSettings(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, _env_var)) from None


def _env_var(loc: Location) -> str:
    """A settings field as the operator sets it: `C2C_REDIS_URL (redis_url)`."""
    field = str(loc[0])
    return f"{ENV_PREFIX}{field.upper()} ({field})"
