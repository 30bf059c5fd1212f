"""The typed schema of one deployment environment (config/<name>.yaml).

Every field is validated before a single construct is created, so a typo in a YAML file fails
`cdk synth` with a message naming the field instead of producing a template that fails at deploy
time. Unknown keys are rejected (extra="forbid") for the same reason.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

#: The retention periods CloudWatch Logs accepts (AWS::Logs::LogGroup RetentionInDays).
ALLOWED_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
     3288, 3653}
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
StationId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerMode(str, Enum):
    PER_SIGNAL = "per-signal"
    CONTINUOUS = "continuous"


class SignalTransport(str, Enum):
    """How the start signal reaches the worker: SNS->SQS (durable) or Redis pub/sub (the seed's mode)."""

    SQS = "sqs"
    REDIS = "redis"


class CpuArchitecture(str, Enum):
    ARM64 = "arm64"
    X86_64 = "x86_64"


class PlatformProfile(str, Enum):
    GENERIC = "generic"
    AZURE_IOT_HUB = "azure_iot_hub"
    AWS_IOT_CORE = "aws_iot_core"


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


class NetworkConfig(_Strict):
    #: NAT gateways for the private subnets (the worker needs egress to the vendor API and broker).
    nat_gateways: int = Field(default=1, ge=1, le=2)


class CacheConfig(_Strict):
    """ElastiCache (Redis OSS) replication group."""

    node_type: str = Field(default="cache.t4g.micro", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    replicas: int = Field(default=0, ge=0, le=5)
    multi_az: bool = False
    engine_version: str = Field(default="7.1", pattern=r"^\d+\.\d+$")
    port: int = Field(default=6380, ge=1024, le=65535)

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


class AlarmConfig(_Strict):
    #: Failed / (synced + failed) stations over `failure_ratio_period_minutes` above this fires.
    failure_ratio: float = Field(default=0.2, gt=0, le=1)
    failure_ratio_period_minutes: int = Field(default=15, ge=1, le=1440)
    #: Lambda errors per 5 minutes at or above this fires.
    lambda_errors: int = Field(default=1, ge=1)
    #: Consecutive 1-minute periods with fewer running tasks than desired before the alarm fires.
    running_tasks_periods: int = Field(default=5, ge=1, le=60)
    #: Optional e-mail addresses subscribed to the alarm topic.
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)


class PlatformSecrets(_Strict):
    """NAMES of Secrets Manager secrets the operator creates (never their values)."""

    #: generic: the MQTT password.
    mqtt_password: SecretName | None = None
    #: azure_iot_hub: the device (or shared access policy) key used to mint SAS tokens.
    azure_sas_key: SecretName | None = None
    #: aws_iot_core: the device certificate and private key (PEM) for mutual TLS.
    aws_iot_certificate: SecretName | None = None
    aws_iot_private_key: SecretName | None = None


#: Which secrets each profile needs.
REQUIRED_PLATFORM_SECRETS: dict[PlatformProfile, tuple[str, ...]] = {
    PlatformProfile.GENERIC: ("mqtt_password",),
    PlatformProfile.AZURE_IOT_HUB: ("azure_sas_key",),
    PlatformProfile.AWS_IOT_CORE: ("aws_iot_certificate", "aws_iot_private_key"),
}


class PlatformConfig(_Strict):
    """The IoT platform the worker publishes to."""

    profile: PlatformProfile = PlatformProfile.GENERIC
    #: mqtt://host:port or mqtts://host:port
    endpoint: str = Field(pattern=r"^mqtts?://[A-Za-z0-9.\-]+(:\d{1,5})?$")
    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    username: str | None = Field(default=None, min_length=1, max_length=256)
    secrets: PlatformSecrets = Field(default_factory=PlatformSecrets)

    @model_validator(mode="after")
    def _profile_secrets(self) -> PlatformConfig:
        missing = [f"secrets.{name}" for name in REQUIRED_PLATFORM_SECRETS[self.profile]
                   if getattr(self.secrets, name) is None]
        if missing:
            raise ValueError(f"profile {self.profile.value} needs {', '.join(missing)}")
        if self.profile is not PlatformProfile.GENERIC and not self.endpoint.startswith("mqtts://"):
            raise ValueError(f"profile {self.profile.value} requires TLS: endpoint must start with mqtts://")
        return self


class SourceConfig(_Strict):
    """The energy-storage cloud the worker reads from."""

    base_url: AnyHttpUrl
    #: Vendor mapping shipped in functions/sync_worker/source/vendors/ (e.g. `simulator`).
    vendor: str = Field(pattern=r"^[a-z0-9_\-]+$")
    api_key_secret: SecretName
    #: Optional subset of stations; default is every station the vendor lists.
    stations: list[StationId] | None = Field(default=None, min_length=1)


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
    "AlarmConfig",
    "CacheConfig",
    "CpuArchitecture",
    "EnvironmentConfig",
    "NetworkConfig",
    "PlatformConfig",
    "PlatformProfile",
    "PlatformSecrets",
    "REQUIRED_PLATFORM_SECRETS",
    "SignalTransport",
    "SourceConfig",
    "TriggerConfig",
    "WorkerConfig",
    "WorkerMode",
]
