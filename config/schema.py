"""The typed schema of one deployment environment (config/<name>.yaml).

Every field is validated before a single construct is created, so a typo in a YAML file fails
`cdk synth` with a message naming the field instead of producing a template that fails at deploy
time. Unknown keys are rejected (extra="forbid") for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# One alphabet for station ids wherever they are written down: the signal schema's.
from functions.common.signal import StationId
from functions.common.source_secrets import auth_secret_names

#: The retention periods CloudWatch Logs accepts (AWS::Logs::LogGroup RetentionInDays).
ALLOWED_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

#: Fargate task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}

_RATE = re.compile(r"^rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)$")
_CRON = re.compile(r"^cron\((\S+\s){5}\S+\)$")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,14}$")]
SecretName = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9/_+=.@-]+$")]


#: Where the shipped vendor configs live (read at synth to check their secrets are deployed).
VENDORS_DIR = Path(__file__).resolve().parent.parent / "functions" / "sync_worker" / "source" / "vendors"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerMode(StrEnum):
    PER_SIGNAL = "per-signal"
    CONTINUOUS = "continuous"


class SignalTransport(StrEnum):
    """How the start signal reaches the worker: SNS->SQS (durable, with a DLQ) or Redis pub/sub (no
    queue: a signal published while no worker listens is gone)."""

    SQS = "sqs"
    REDIS = "redis"


class CpuArchitecture(StrEnum):
    ARM64 = "arm64"
    X86_64 = "x86_64"


class ProfileName(StrEnum):
    GENERIC = "generic"
    AZURE_IOT_HUB = "azure_iot_hub"
    AWS_IOT_CORE = "aws_iot_core"


class WorkerCapacity(StrEnum):
    """Where the worker's Fargate task runs: plain Fargate, or Fargate Spot (spare capacity, billed
    at a discount that varies, reclaimed with a two-minute SIGTERM warning)."""

    ON_DEMAND = "on_demand"
    SPOT = "spot"


class WorkerConfig(_Strict):
    """The sync worker's Fargate service."""

    mode: WorkerMode = WorkerMode.PER_SIGNAL
    #: Continuous mode: seconds between cycles.
    interval_s: int = Field(default=180, ge=10, le=86_400)
    #: The longest a cycle may run; the start queue's visibility timeout sits above it.
    max_cycle_s: int = Field(default=600, ge=30, le=10_800)
    cpu: int = 256
    memory_mib: int = 512
    architecture: CpuArchitecture = CpuArchitecture.ARM64
    #: 0 pauses the worker; more than 1 would run two connections with one MQTT client id.
    desired_count: int = Field(default=1, ge=0, le=1)
    #: ECS Container Insights (~$8/month): off by default, the WorkerNotRunning alarm on the free
    #: AWS/ECS metrics and the heartbeat alarm cover "worker not running" without it.
    container_insights: bool = False
    #: on_demand (LaunchType FARGATE) or spot (the FARGATE_SPOT capacity provider): Spot reclaims the
    #: task with SIGTERM two minutes before it stops it; the worker drains within STOP_TIMEOUT_S
    #: (45 s), and ECS starts a replacement, so an interruption costs a cycle's delay, not readings.
    capacity: WorkerCapacity = WorkerCapacity.ON_DEMAND

    @field_validator("cpu")
    @classmethod
    def _fargate_cpu(cls, value: int) -> int:
        if value not in FARGATE_SIZES:
            raise ValueError(f"must be one of {sorted(FARGATE_SIZES)} (Fargate CPU units)")
        return value

    @model_validator(mode="after")
    def _fargate_size(self) -> WorkerConfig:
        allowed = FARGATE_SIZES[self.cpu]
        if self.memory_mib not in allowed:
            raise ValueError(
                f"memory_mib {self.memory_mib} is not valid with cpu {self.cpu}; "
                f"allowed: {allowed[0]}..{allowed[-1]} in steps of {allowed[1] - allowed[0]}"
            )
        return self


class NatKind(StrEnum):
    """How the private subnets reach the internet (the vendor API and the MQTT broker)."""

    #: A t4g NAT instance per NAT (Amazon Linux 2023, iptables masquerade): ~$7/month each with its IP.
    INSTANCE = "instance"
    #: A managed NAT gateway per NAT: ~$37/month each with its IP, plus $0.045/GB processed.
    GATEWAY = "gateway"


class NetworkConfig(_Strict):
    nat: NatKind = NatKind.INSTANCE
    #: NATs, one per AZ: 2 keeps egress up when one AZ (or one NAT) fails.
    nat_count: int = Field(default=1, ge=1, le=2)
    #: nat: instance only. Graviton burstable types; a nano forwards ~32 Mbit/s baseline.
    nat_instance_type: str = Field(default="t4g.nano", pattern=r"^t4g\.(nano|micro|small|medium)$")


class DeployedCache(_Strict):
    """The deployed cache's values that the config cannot change in place: a config that would is refused.

    Of the AWS::ElastiCache::ReplicationGroup properties whose change CloudFormation carries out as a
    replacement (AtRestEncryptionEnabled, CacheSubnetGroupName, Engine, KmsKeyId, Port, ...), the
    config sets only `Port`; the others are fixed in stacks/cache.py and pinned by
    tests/infra/test_cache.py. `EngineVersion` updates in place but cannot go down: ElastiCache
    refuses a downgrade, and the only way to an older version is a new cluster. A replacement
    starts an empty cluster and, with retain_data, the old one is retained: it keeps running (and
    billing) outside any stack. Recording the deployed values turns both into a synth error.
    """

    port: int = Field(ge=1024, le=65535)
    engine_version: str = Field(pattern=r"^\d+\.\d+$")


#: How to make such a change on purpose (the refusal's message).
CACHE_MIGRATION = (
    "the deployed cache cannot take it in place; a new cluster would start empty and, with retain_data, the old one "
    "would keep running and billing outside any stack. To migrate: snapshot it (aws elasticache create-snapshot "
    "--replication-group-id <id> --snapshot-name <name>), set worker.desired_count: 0 and deploy, delete the "
    "old cluster (aws elasticache delete-replication-group), then set cache.deployed to the new values and "
    "deploy; the worker refills cursors from its DynamoDB checkpoint or its backfill window"
)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


class CacheConfig(_Strict):
    """ElastiCache replication group on the Valkey engine (Redis OSS compatible, ~20 % cheaper)."""

    node_type: str = Field(default="cache.t4g.micro", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    replicas: int = Field(default=0, ge=0, le=5)
    multi_az: bool = False
    engine_version: str = Field(default="8.0", pattern=r"^\d+\.\d+$")
    port: int = Field(default=6380, ge=1024, le=65535)
    #: What is deployed (set it after the first deploy of an environment that keeps its data).
    deployed: DeployedCache | None = None

    @field_validator("port")
    @classmethod
    def _not_default_port(cls, value: int) -> int:
        if value == 6379:
            raise ValueError("use a non-default port (6379 is the Redis default)")
        return value

    @model_validator(mode="after")
    def _multi_az_needs_replica(self) -> CacheConfig:
        if self.multi_az and self.replicas < 1:
            raise ValueError("multi_az requires replicas >= 1 (a replica to fail over to)")
        return self

    @model_validator(mode="after")
    def _no_replacement(self) -> CacheConfig:
        """Every change the deployed cache cannot take in place, each under its own field, at once."""
        deployed = self.deployed
        if deployed is None:
            return self
        problems: list[tuple[str, object, str]] = []
        if deployed.port != self.port:
            problems.append(
                (
                    "port",
                    self.port,
                    f"{self.port} differs from the deployed cache's {deployed.port} (cache.deployed.port)",
                )
            )
        if _version(self.engine_version) < _version(deployed.engine_version):
            problems.append(
                (
                    "engine_version",
                    self.engine_version,
                    f"{self.engine_version} is older than the deployed cache's {deployed.engine_version} "
                    "(cache.deployed.engine_version): ElastiCache cannot downgrade an engine in place",
                )
            )
        if problems:
            raise ValidationError.from_exception_data(
                "CacheConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "cache_replacement", "{rule}", {"rule": f"{message}: {CACHE_MIGRATION}"}
                        ),
                        loc=(field,),
                        input=value,
                    )
                    for field, value, message in problems
                ],
            )
        return self


class NotifyConfig(_Strict):
    """Who hears about every alarm (preflight refuses a deploy where nobody would)."""

    #: E-mail addresses subscribed to the environment's alarm topic (each confirms by mail once).
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)
    #: An existing SNS topic (chat, paging) every alarm also publishes to.
    topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class AlarmConfig(_Strict):
    #: Failed / (synced + failed) stations over `failure_ratio_period_minutes` above this fires.
    failure_ratio: float = Field(default=0.2, gt=0, le=1)
    failure_ratio_period_minutes: int = Field(default=15, ge=1, le=1440)
    #: Lambda errors per 5 minutes at or above this fires.
    lambda_errors: int = Field(default=1, ge=1)
    #: Consecutive 1-minute periods with fewer running tasks than desired before the alarm fires.
    running_tasks_periods: int = Field(default=5, ge=1, le=60)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)


class IdentityMode(StrEnum):
    """Connection = identity: one gateway identity, or one identity per station."""

    GATEWAY = "gateway"
    PER_DEVICE = "per-device"


def _protocol_text(value: object) -> object:
    # YAML reads `protocol: 5` as an int and `3.1.1` as a string; both mean the MQTT version.
    return str(value) if isinstance(value, (int, float)) else value


MqttProtocol = Annotated[Literal["3.1.1", "5"], BeforeValidator(_protocol_text)]

#: Placeholders the worker fills in topic templates (uplink profiles: env, station_id, identity).
TOPIC_PLACEHOLDERS = {"env": "e", "station_id": "s", "identity": "i"}
#: AWS IoT Core: at most 7 forward slashes in a topic, not counting the Basic Ingest prefix.
AWS_TOPIC_MAX_SLASHES = 7
_AWS_BASIC_INGEST = re.compile(r"^\$aws/rules/[A-Za-z0-9_]+/")


def _topic_template(value: str) -> str:
    try:
        value.format(**TOPIC_PLACEHOLDERS)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"unknown placeholder {exc}; allowed: " + " ".join(f"{{{name}}}" for name in TOPIC_PLACEHOLDERS)
        ) from None
    if "+" in value or "#" in value:
        raise ValueError("a publish topic cannot contain the wildcards + or #")
    return value


class AzureIotHubConfig(_Strict):
    """azure_iot_hub settings (C2C_AZURE_*); unset fields keep the worker's defaults."""

    #: Shared access policy with DeviceConnect whose key is secrets.azure_sas_key (sent as `skn`).
    policy_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    #: SAS token lifetime; the worker renews by a planned reconnect shortly before expiry.
    token_ttl_s: int | None = Field(default=None, ge=300, le=365 * 86_400)
    api_version: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")


class AwsIotCoreConfig(_Strict):
    """aws_iot_core settings (C2C_AWS_IOT_*)."""

    topic: str | None = Field(default=None, min_length=1, max_length=256)
    protocol: MqttProtocol | None = None

    @field_validator("topic")
    @classmethod
    def _aws_topic(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _topic_template(value)
        if value.startswith("$") and not value.startswith(("$aws/rules/", "$aws/things/")):
            raise ValueError("topics starting with $ are reserved (only $aws/rules/ and $aws/things/ are allowed)")
        if _AWS_BASIC_INGEST.sub("", value).count("/") > AWS_TOPIC_MAX_SLASHES:
            raise ValueError(f"AWS IoT Core allows at most {AWS_TOPIC_MAX_SLASHES} slashes in a topic")
        return value


class GenericMqttConfig(_Strict):
    """generic settings (C2C_MQTT_*)."""

    protocol: MqttProtocol | None = None
    #: Retained online/offline status topic (last will); "" disables it.
    status_topic: str | None = Field(default=None, max_length=256)

    @field_validator("status_topic")
    @classmethod
    def _status_topic(cls, value: str | None) -> str | None:
        return _topic_template(value) if value else value


class PlatformSecrets(_Strict):
    """NAMES of Secrets Manager secrets the operator creates (never their values)."""

    #: generic: the MQTT password.
    mqtt_password: SecretName | None = None
    #: generic with mutual TLS: client certificate and private key (PEM).
    mqtt_client_certificate: SecretName | None = None
    mqtt_client_private_key: SecretName | None = None
    #: azure_iot_hub: the key alone: the policy's key with azure.policy_name, else the gateway device's key.
    azure_sas_key: SecretName | None = None
    #: azure_iot_hub: a device or shared-access-policy connection string.
    azure_connection_string: SecretName | None = None
    #: azure_iot_hub per-device: JSON object {"<device id>": "<base64 key>", ...}.
    azure_device_keys: SecretName | None = None
    #: aws_iot_core: the device certificate and private key (PEM) for mutual TLS.
    aws_iot_certificate: SecretName | None = None
    aws_iot_private_key: SecretName | None = None


#: Which secrets (PlatformSecrets fields) each profile may use; any other set secret is an error,
#: so the worker's execution role is never granted a secret it will not read.
PROFILE_SECRETS: dict[ProfileName, frozenset[str]] = {
    ProfileName.GENERIC: frozenset({"mqtt_password", "mqtt_client_certificate", "mqtt_client_private_key"}),
    ProfileName.AZURE_IOT_HUB: frozenset({"azure_sas_key", "azure_connection_string", "azure_device_keys"}),
    ProfileName.AWS_IOT_CORE: frozenset({"aws_iot_certificate", "aws_iot_private_key"}),
}
#: azure_iot_hub: exactly one of these carries the credentials.
AZURE_CREDENTIAL_SECRETS = ("azure_sas_key", "azure_connection_string", "azure_device_keys")
#: The profile-specific section each profile may have.
PROFILE_SECTIONS: dict[ProfileName, str] = {
    ProfileName.GENERIC: "generic",
    ProfileName.AZURE_IOT_HUB: "azure",
    ProfileName.AWS_IOT_CORE: "aws",
}


class PlatformConfig(_Strict):
    """The IoT platform the worker publishes to: its profile, identity mode and secrets."""

    profile: ProfileName = ProfileName.GENERIC
    #: mqtts://host:port (the deployed worker never talks plaintext MQTT).
    endpoint: str = Field(pattern=r"^mqtts?://[A-Za-z0-9.\-]+(:\d{1,5})?$")
    #: Gateway identity: the MQTT client id / Azure device id / AWS thing name.
    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    #: generic only (Azure and AWS derive the username/identity themselves).
    username: str | None = Field(default=None, min_length=1, max_length=256)
    identity_mode: IdentityMode = IdentityMode.GATEWAY
    #: per-device: identity of each station, e.g. "ess-{station_id}" (worker default "{station_id}").
    identity_template: str | None = Field(default=None, min_length=1, max_length=128)
    #: per-device: bound of the connection pool (worker default 500; least recently used retired beyond).
    max_connections: int | None = Field(default=None, ge=1, le=10_000)
    azure: AzureIotHubConfig | None = None
    aws: AwsIotCoreConfig | None = None
    generic: GenericMqttConfig | None = None
    secrets: PlatformSecrets = Field(default_factory=PlatformSecrets)

    @field_validator("identity_template")
    @classmethod
    def _identity_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "{station_id}" not in value:
            raise ValueError("must contain {station_id} (one identity per station)")
        try:
            value.format(station_id="s")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder {exc}; only {{station_id}} is allowed") from None
        return value

    @model_validator(mode="after")
    def _profile_rules(self) -> PlatformConfig:
        """Every cross-field problem at once, each under its own field name."""
        problems = list(self._problems())
        if problems:
            raise ValidationError.from_exception_data(
                "PlatformConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("platform_rule", "{rule}", {"rule": message}),
                        loc=loc,
                        input=getattr(self, loc[0], None),
                    )
                    for loc, message in problems
                ],
            )
        return self

    def _problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        profile = self.profile.value
        secrets = {name for name in PlatformSecrets.model_fields if getattr(self.secrets, name) is not None}
        if not self.endpoint.startswith("mqtts://"):
            yield (
                ("endpoint",),
                ("must start with mqtts:// (the deployed worker refuses plaintext MQTT to a remote broker)"),
            )
        for name in sorted(secrets - PROFILE_SECRETS[self.profile]):
            yield ("secrets", name), f"not used by profile {profile}; remove it (it would be granted for nothing)"
        by_secret: dict[str, list[str]] = {}
        for name in sorted(secrets):
            by_secret.setdefault(getattr(self.secrets, name), []).append(name)
        for secret_name, fields in by_secret.items():
            if len(fields) > 1:
                yield ("secrets", fields[1]), f"names the same secret {secret_name!r} as secrets.{fields[0]}"
        for section in ("azure", "aws", "generic"):
            if getattr(self, section) is not None and section != PROFILE_SECTIONS[self.profile]:
                yield (section,), f"only used by profile {_profile_of(section)}, not {profile}"
        if self.username is not None and self.profile is not ProfileName.GENERIC:
            yield ("username",), f"only used by profile generic ({profile} derives its own username)"
        if self.identity_mode is IdentityMode.GATEWAY:
            for name in ("identity_template", "max_connections"):
                if getattr(self, name) is not None:
                    yield (name,), "only used with identity_mode per-device"

        if self.profile is ProfileName.GENERIC:
            has_cert = {"mqtt_client_certificate", "mqtt_client_private_key"} & secrets
            if len(has_cert) == 1:
                (missing,) = {"mqtt_client_certificate", "mqtt_client_private_key"} - has_cert
                yield ("secrets", missing), "a client certificate needs both its certificate and private key"
            if not secrets & PROFILE_SECRETS[self.profile]:
                yield (
                    ("secrets", "mqtt_password"),
                    (
                        "profile generic needs secrets.mqtt_password and/or "
                        "secrets.mqtt_client_certificate + mqtt_client_private_key"
                    ),
                )
            if "mqtt_password" in secrets and self.username is None:
                yield ("username",), "required with secrets.mqtt_password"
        elif self.profile is ProfileName.AZURE_IOT_HUB:
            credentials = [name for name in AZURE_CREDENTIAL_SECRETS if name in secrets]
            if len(credentials) != 1:
                yield (
                    ("secrets", "azure_sas_key"),
                    (
                        "profile azure_iot_hub needs exactly one of secrets.azure_sas_key, "
                        f"azure_connection_string, azure_device_keys (got {len(credentials)})"
                    ),
                )
            policy_name = self.azure.policy_name if self.azure else None
            if policy_name is not None and "azure_sas_key" not in secrets:
                yield (
                    ("azure", "policy_name"),
                    ("only used with secrets.azure_sas_key (a connection string carries its own policy name)"),
                )
            if self.identity_mode is IdentityMode.PER_DEVICE and "azure_sas_key" in secrets and policy_name is None:
                yield (
                    ("azure", "policy_name"),
                    (
                        "required in per-device mode with secrets.azure_sas_key: one "
                        "device's key cannot sign for other devices, a DeviceConnect "
                        "policy's key can"
                    ),
                )
        elif self.profile is ProfileName.AWS_IOT_CORE:
            for name in sorted(PROFILE_SECRETS[self.profile] - secrets):
                yield ("secrets", name), "profile aws_iot_core needs it (mutual TLS with the thing's certificate)"


def _profile_of(section: str) -> str:
    return next(p.value for p, s in PROFILE_SECTIONS.items() if s == section)


class SourceConfig(_Strict):
    """The energy-storage cloud the worker reads from: a vendor config shipped in
    functions/sync_worker/source/vendors/, or a plug-in adapter class for what no config expresses."""

    base_url: AnyHttpUrl
    #: Vendor mapping shipped in functions/sync_worker/source/vendors/ (e.g. `simulator`).
    vendor: str | None = Field(default=None, pattern=r"^[a-z0-9_\-]+$")
    #: A plug-in adapter, `package.module:Class` or `entrypoint:<name>` (instead of `vendor`).
    adapter: str | None = Field(default=None, pattern=r"^(entrypoint:[\w.-]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")
    #: The adapter's own settings (reach it as the JSON C2C_SOURCE_SETTINGS).
    settings: dict[str, Any] = Field(default_factory=dict)
    #: Secret name the source reads -> NAME of the Secrets Manager secret holding it. The vendor
    #: config's `auth` (or the adapter's `required_secrets`) says which names it reads; each reaches
    #: the worker as the ecs.Secret C2C_SOURCE_<NAME>.
    secrets: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], SecretName] = Field(default_factory=dict)
    #: Shorthand for `secrets: {api_key: ...}`.
    api_key_secret: SecretName | None = None
    #: Optional subset of stations; default is every station the vendor lists.
    stations: list[StationId] | None = Field(default=None, min_length=1)
    #: How long the worker keeps the vendor's station list before reading it again (the worker's
    #: default, 900 s, when unset). Every read costs ceil(stations / page size) calls, and some
    #: vendors budget those per day: SolarEdge counts them against the account's 300 calls a day,
    #: FusionSolar allows its plant list ceil(P / 100) + 24 calls a day.
    station_list_ttl_s: float | None = Field(default=None, ge=60, le=604_800)

    @property
    def named_secrets(self) -> dict[str, str]:
        """Secret name the source reads -> Secrets Manager secret name."""
        return {**({"api_key": self.api_key_secret} if self.api_key_secret else {}), **self.secrets}

    @model_validator(mode="after")
    def _source_rules(self) -> SourceConfig:
        """Every problem at once, each under its own field name."""
        problems = list(self._problems())
        if problems:
            raise ValidationError.from_exception_data(
                "SourceConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("source_rule", "{rule}", {"rule": message}),
                        loc=loc,
                        input=getattr(self, loc[0], None),
                    )
                    for loc, message in problems
                ],
            )
        return self

    def _problems(self) -> Iterator[tuple[tuple[str, ...], str]]:
        if (self.vendor is None) == (self.adapter is None):
            yield ("vendor",), "set exactly one of source.vendor and source.adapter"
        if self.api_key_secret and "api_key" in self.secrets:
            yield ("api_key_secret",), "names the secret `api_key` a second time (also in source.secrets)"
        if self.settings and self.adapter is None:
            yield ("settings",), "only used with source.adapter"
        if self.vendor is not None:
            yield from self._vendor_secret_problems(self.vendor)

    def _vendor_secret_problems(self, vendor: str) -> Iterator[tuple[tuple[str, ...], str]]:
        # The vendor file's auth is read here so a secret it needs but nobody deploys fails at synth
        # (the file itself is validated by the worker's schema in the tests and by validate-config).
        path = VENDORS_DIR / f"{vendor}.yaml"
        if not path.exists():
            shipped = sorted(p.stem for p in VENDORS_DIR.glob("*.yaml"))
            yield ("vendor",), f"no vendor config {path.name} (shipped: {shipped})"
            return
        try:
            raw = yaml.safe_load(path.read_text())
            needed = auth_secret_names(raw["auth"])
        except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
            yield ("vendor",), f"vendor config {path.name} is invalid: {exc}"
            return
        named = self.named_secrets
        for name in needed:
            if name not in named:
                yield ("secrets", name), f"vendor {vendor} reads secret {name!r}: map it to a Secrets Manager secret"
        for name in sorted(set(named) - set(needed)):
            yield ("secrets", name), f"not read by vendor {vendor}; remove it (it would be granted for nothing)"


class MonitoringConfig(_Strict):
    #: The CloudWatch dashboard C2C-<env> ($3/month beyond the account's three free ones). The
    #: alarms do not depend on it and stay either way.
    dashboard: bool = True


class TriggerConfig(_Strict):
    #: Reserved concurrency of the trigger Lambda (needs that much unreserved account headroom).
    reserved_concurrency: int = Field(default=2, ge=1, le=100)
    #: EventBridge retries of a failed scheduled invocation before the event goes to the DLQ.
    retry_attempts: int = Field(default=2, ge=0, le=185)


class EnvironmentConfig(_Strict):
    """One deployment environment."""

    name: Name
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    #: EventBridge schedule expression: rate(...) or cron(...).
    schedule: str = "rate(3 minutes)"
    signal_transport: SignalTransport = SignalTransport.SQS
    log_retention_days: int = 30
    #: Retain stateful resources (Redis, key, queues) on stack deletion and protect the stacks.
    retain_data: bool = False
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    platform: PlatformConfig
    source: SourceConfig
    tags: dict[
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w .:/=+\-@]+$")],
        Annotated[str, Field(max_length=256, pattern=r"^[\w .:/=+\-@]*$")],
    ] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _schedule_expression(cls, value: str) -> str:
        if not (_RATE.match(value) or _CRON.match(value)):
            raise ValueError(
                "must be an EventBridge expression: rate(1 minute), rate(N minutes|hours|days) "
                "or cron(min hour day-of-month month day-of-week year)"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in ALLOWED_LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of the CloudWatch Logs values {sorted(ALLOWED_LOG_RETENTION_DAYS)}")
        return value

    @model_validator(mode="after")
    def _account_needs_region(self) -> EnvironmentConfig:
        if self.account is not None and self.region is None:
            raise ValueError("account is set but region is not; set both or neither")
        return self

    @property
    def is_env_agnostic(self) -> bool:
        return self.account is None and self.region is None


__all__ = [
    "ALLOWED_LOG_RETENTION_DAYS",
    "AZURE_CREDENTIAL_SECRETS",
    "PROFILE_SECRETS",
    "PROFILE_SECTIONS",
    "AlarmConfig",
    "AwsIotCoreConfig",
    "AzureIotHubConfig",
    "CacheConfig",
    "CpuArchitecture",
    "DeployedCache",
    "EnvironmentConfig",
    "GenericMqttConfig",
    "IdentityMode",
    "MonitoringConfig",
    "NatKind",
    "NetworkConfig",
    "NotifyConfig",
    "PlatformConfig",
    "PlatformSecrets",
    "ProfileName",
    "SignalTransport",
    "SourceConfig",
    "TriggerConfig",
    "WorkerCapacity",
    "WorkerConfig",
    "WorkerMode",
]
