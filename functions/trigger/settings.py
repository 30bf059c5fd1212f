"""The trigger's configuration, read once per cold start from the environment the trigger stack sets.

Kept in one typed object so a missing required variable fails with its name on the first invocation
instead of as a `KeyError` deep inside a publish call. Names are the ones stacks/trigger.py sets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from functions.common.signal import Command


class MissingSetting(RuntimeError):
    """A required environment variable is absent or empty."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RedisSettings:
    host: str
    port: int
    tls: bool
    auth_secret_arn: str | None


@dataclass(frozen=True)
class TriggerSettings:
    start_topic_arn: str
    environment: str
    schedule_command: Command
    heartbeat_alarm_name: str | None
    ecs_cluster_name: str | None
    ecs_service_name: str | None
    redis: RedisSettings | None

    @property
    def self_heal_target(self) -> tuple[str, str] | None:
        """(cluster, service) to redeploy, or None when the stack did not wire self-heal."""
        if self.ecs_cluster_name and self.ecs_service_name:
            return self.ecs_cluster_name, self.ecs_service_name
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TriggerSettings:
        topic = env.get("START_TOPIC_ARN", "").strip()
        if not topic:
            raise MissingSetting("START_TOPIC_ARN is required (the SNS start topic's ARN)")
        try:
            schedule_command = Command(env.get("SCHEDULE_COMMAND", Command.SYNC_NOW.value))
        except ValueError:
            allowed = ", ".join(c.value for c in Command)
            raise MissingSetting(f"SCHEDULE_COMMAND must be one of {allowed}") from None
        redis_host = env.get("REDIS_HOST", "").strip()
        redis = None
        if redis_host:
            redis = RedisSettings(
                host=redis_host,
                port=int(env.get("REDIS_PORT") or 6379),
                tls=_flag(env.get("REDIS_TLS")),
                auth_secret_arn=env.get("REDIS_AUTH_SECRET_ARN") or None,
            )
        return cls(
            start_topic_arn=topic,
            environment=env.get("ENVIRONMENT", "dev"),
            schedule_command=schedule_command,
            heartbeat_alarm_name=env.get("HEARTBEAT_ALARM_NAME") or None,
            ecs_cluster_name=env.get("ECS_CLUSTER_NAME") or None,
            ecs_service_name=env.get("ECS_SERVICE_NAME") or None,
            redis=redis,
        )


@cache
def settings() -> TriggerSettings:
    """The settings of this execution environment (cached: Lambda reuses it across invocations)."""
    return TriggerSettings.from_env()
