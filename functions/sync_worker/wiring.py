"""Wiring: build the worker's parts from `WorkerSettings`. The only module that knows them all.

The configured platform profile comes from `uplink.profiles.build_profile`, the one way to it (used
by `run`, `--dry-run`, `validate-config` and the demo)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable

import redis

from functions.common.source_secrets import source_secret_env
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


def check_source_secrets(settings: WorkerSettings) -> None:
    """`ConfigError` naming the environment variable of every secret the configured source (the
    vendor config's auth, or the adapter's `required_secrets`) needs and nobody set: found before
    the worker starts, not as a traceback from the first request."""
    read = source_secrets(settings)
    missing = [name for name in _source_secret_names(settings) if not read(name)]
    if missing:
        source = settings.source_adapter or settings.source_config
        raise ConfigError(
            "; ".join(
                f"{source_secret_env(name)}: not set (the source `{source}` needs the secret `{name}`)"
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
        return os.environ.get(source_secret_env(name), "")

    return read


def required_source_secret_env(settings: WorkerSettings) -> list[str]:
    """The environment variables the configured source (vendor config auth, or the adapter's
    `required_secrets`) needs set: what `validate-config` checks before `run` would fail."""
    return [source_secret_env(name) for name in _source_secret_names(settings)]


def _source_secret_names(settings: WorkerSettings) -> list[str]:
    from functions.sync_worker.source.plugins import source_secret_names

    return source_secret_names(
        vendor=None if settings.source_adapter else settings.source_config,
        adapter=settings.source_adapter,
        settings=settings.source_settings,
    )


def build_source(settings: WorkerSettings) -> SourceAdapter:
    from functions.sync_worker.source.http_json import load_source
    from functions.sync_worker.source.plugins import build_adapter

    if settings.source_adapter:
        return build_adapter(
            settings.source_adapter,
            settings=settings.source_settings,
            secrets=source_secrets(settings),
            base_url=settings.source_url,
            pool_size=settings.concurrency,
        )
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
