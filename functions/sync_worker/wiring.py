"""Wiring: build the worker's parts from `WorkerSettings`. The only module that knows them all.

The configured platform profile comes from `uplink.profiles.build_profile`, the one way to it (used
by `run`, `--dry-run`, `validate-config` and the demo)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable

import redis
from pydantic import BaseModel

from functions.sync_worker.checkpoint import CursorCheckpoint
from functions.sync_worker.observability import WorkerTelemetry
from functions.sync_worker.settings import ConfigError, WorkerSettings
from functions.sync_worker.signals import RedisSignals, SignalSource, SqsSignals
from functions.sync_worker.source.base import SourceAdapter
from functions.sync_worker.store import Lease, StateStore, connect_redis
from functions.sync_worker.uplink.profile import PlatformProfile
from functions.sync_worker.uplink.profiles import build_profile
from functions.sync_worker.uplink.uplink import MqttUplink
from functions.sync_worker.worker import Worker


def secret_env_var(name: str) -> str:
    """The environment variable that holds the vendor secret `name` (ECS injects it from Secrets Manager)."""
    return f"C2C_SOURCE_{name.upper()}"


def vendor_secret_names(config: BaseModel) -> list[str]:
    """The secrets a vendor config asks for: every string field named `secret` or `*_secret` (and
    every string under a `secrets` field) anywhere in it. Found by name rather than by auth kind, so
    a new kind of auth is checked without a list here to keep in step."""
    names: list[str] = []

    def walk(value: object, field: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, field if field == "secrets" else str(key))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, field)
        elif isinstance(value, str) and (field in ("secret", "secrets") or field.endswith("_secret")):
            names.append(value)

    walk(config, "")
    return sorted(set(names))


def check_source_secrets(settings: WorkerSettings, vendor: BaseModel) -> None:
    """`ConfigError` naming the environment variable of every secret the vendor config needs and
    nobody set: found before the worker starts, not as a traceback from the first request."""
    read = source_secrets(settings)
    missing = [name for name in vendor_secret_names(vendor) if not read(name)]
    if missing:
        vendor_name = getattr(vendor, "name", settings.source_config)
        raise ConfigError(
            "; ".join(
                f"{secret_env_var(name)}: not set (the vendor config `{vendor_name}` needs the secret `{name}`)"
                for name in missing
            )
        )


def source_secrets(settings: WorkerSettings) -> Callable[[str], str]:
    """Secrets the vendor config names: `api_key` is C2C_SOURCE_API_KEY (from the settings, read
    once); any other name N is C2C_SOURCE_<N>, read from the environment on each call.

    A 401 makes the source read its secret again, but that only finds a new value where the
    environment can change under a running process (tests). In ECS the secrets are injected into
    the environment when the task starts, so a rotated secret reaches the worker with the next
    task: force a new deployment after rotating one."""

    def read(name: str) -> str:
        if name == "api_key" and settings.source_api_key is not None:
            return settings.source_api_key.get_secret_value()
        return os.environ.get(secret_env_var(name), "")

    return read


def build_source(settings: WorkerSettings) -> SourceAdapter:
    from functions.sync_worker.source.http_json import load_source

    return load_source(
        settings.source_config, settings.source_url, source_secrets(settings), pool_size=settings.concurrency
    )


def build_uplink(settings: WorkerSettings, profile: PlatformProfile | None = None) -> MqttUplink:
    return MqttUplink(
        profile or build_profile(settings),
        max_inflight=settings.max_inflight,
        puback_timeout_s=settings.puback_timeout_s,
        reconnect_max_s=settings.mqtt_reconnect_max_s,
        max_connections=settings.mqtt_max_connections,
    )


def build_signals(
    settings: WorkerSettings, redis_client: redis.Redis, telemetry: WorkerTelemetry
) -> SignalSource | None:
    def reject(reason: str) -> None:
        telemetry.signal_rejected()

    if settings.signal_url is None:
        return None
    if settings.signal_url == "redis":
        return RedisSignals(redis_client, on_reject=reject)
    return SqsSignals(
        settings.signal_url,
        wait_s=settings.sqs_wait_s,
        visibility_s=settings.sqs_visibility_s,
        reject_visibility_s=settings.sqs_reject_visibility_s,
        on_reject=reject,
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_worker(
    settings: WorkerSettings,
    *,
    source_factory: Callable[[], SourceAdapter] | None = None,
    profile: PlatformProfile | None = None,
) -> Worker:
    telemetry = WorkerTelemetry(settings.env)
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    redis_client = connect_redis(settings.redis_url, password)
    keys = settings.state_keys
    wid = worker_id()
    lease = Lease(redis_client, keys, wid, ttl_s=settings.lease_ttl_s)
    state = StateStore(redis_client, keys, lease)
    return Worker(
        settings,
        source_factory=source_factory or (lambda: build_source(settings)),
        uplink=build_uplink(settings, profile),
        lease=lease,
        state=state,
        signals=build_signals(settings, redis_client, telemetry),
        telemetry=telemetry,
        worker_id=wid,
        checkpoint=CursorCheckpoint(settings.checkpoint_table, settings.env) if settings.checkpoint_table else None,
    )
