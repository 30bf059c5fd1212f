"""The trigger Lambda, invoked locally: the real `functions.trigger.handler.handler` with a real
EventBridge scheduled event, its boto3 clients pointed at moto through AWS_ENDPOINT_URL.

What it prints (Powertools JSON logs, EMF metric blobs) goes to the trigger's log file, as it
would go to CloudWatch Logs, and never into the demo's live display.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO, Any

from c2c_sync.demo.topology import ACCOUNT_ID, REGION
from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE


def scheduled_event(rule_name: str) -> dict[str, Any]:
    """A fresh copy of the scheduled event EventBridge delivers (events/scheduled_event.json) for `rule_name`."""
    event = json.loads(resources.files("c2c_sync.demo").joinpath("events/scheduled_event.json").read_text())
    event = copy.deepcopy(event)
    event["id"] = str(uuid.uuid4())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event["account"] = ACCOUNT_ID
    event["region"] = REGION
    event["resources"] = [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"]
    return event


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    aws_request_id: str = ""

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@dataclass(frozen=True)
class RedisPublishTarget:
    """The trigger stack's optional Redis publish: REDIS_HOST/PORT/TLS and the AUTH secret's ARN."""

    host: str
    port: int
    tls: bool = False
    auth_secret_arn: str | None = None


class LocalTrigger:
    """Holds the Lambda's environment while it is in use (`with LocalTrigger(...) as trigger:`).

    Each `configure` is a cold start: the handler's cached settings and clients are rebuilt.
    """

    _KEYS = (
        "START_TOPIC_ARN",
        "ENVIRONMENT",
        "SCHEDULE_COMMAND",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_TLS",
        "REDIS_AUTH_SECRET_ARN",
        "ECS_CLUSTER_NAME",
        "ECS_SERVICE_NAME",
        "HEARTBEAT_ALARM_NAME",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    )

    def __init__(
        self,
        *,
        env: str,
        topic_arn: str,
        schedule_command: str,
        aws_endpoint: str,
        log_path: Path,
        redis: RedisPublishTarget | None = None,
    ) -> None:
        self.env = env
        self.topic_arn = topic_arn
        self.schedule_command = schedule_command
        self.aws_endpoint = aws_endpoint
        self.log_path = log_path
        self.redis = redis
        self.function_name = f"c2c-{env}-trigger"
        self._saved: dict[str, str | None] | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> LocalTrigger:
        self._saved = {k: os.environ.get(k) for k in self._KEYS}
        self._log = open(self.log_path, "a", buffering=1)
        self.configure(self.redis)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved = None
        self._cold_start()
        if self._log is not None:
            self._log.close()
            self._log = None

    def configure(self, redis: RedisPublishTarget | None) -> None:
        """Set the environment the trigger stack gives the function (stacks/trigger.py), then cold-start."""
        self.redis = redis
        values = {
            "START_TOPIC_ARN": self.topic_arn,
            "ENVIRONMENT": self.env,
            "SCHEDULE_COMMAND": self.schedule_command,
            "POWERTOOLS_SERVICE_NAME": TRIGGER_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # moto accepts any key; fixed fake ones make sure no profile's real credentials are ever used.
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
        }
        for key in self._KEYS:
            os.environ.pop(key, None)
        if redis is not None:
            values.update(
                {"REDIS_HOST": redis.host, "REDIS_PORT": str(redis.port), "REDIS_TLS": "true" if redis.tls else "false"}
            )
            if redis.auth_secret_arn:
                values["REDIS_AUTH_SECRET_ARN"] = redis.auth_secret_arn
        os.environ.update(values)
        self._cold_start()

    def fire_schedule(self) -> str:
        """One scheduled invocation; returns the id of the start signal the function published."""
        event = scheduled_event(f"c2c-{self.env}-schedule")
        result = self._invoke(event)
        return result["id"]

    def _invoke(self, event: dict[str, Any]) -> Any:
        assert self._log is not None, "use LocalTrigger as a context manager"
        with contextlib.redirect_stdout(self._log):
            from functions.trigger.handler import handler
            from functions.trigger.observability import logger

            # Powertools Logger keeps the stream it saw at import; point it at the trigger's log file.
            stream_handler = logger.registered_handler
            if isinstance(stream_handler, logging.StreamHandler):
                stream_handler.stream = self._log  # not setStream: it flushes the old one, maybe closed
            return handler(event, LambdaContext(self.function_name, aws_request_id=str(uuid.uuid4())))

    @staticmethod
    def _cold_start() -> None:
        import sys

        if "functions.trigger.handler" not in sys.modules:
            return
        from functions.trigger import aws, publish, settings

        settings.settings.cache_clear()
        aws.reset_clients()
        publish.reset_redis()
