"""Deliver a StartSignal: SNS start topic always, Redis PUBLISH too when the stack configured Redis.

SNS (→ SQS, durable, DLQ) is the signal path of record; the Redis channel is the transport of a worker
in `C2C_SIGNAL_URL=redis` mode (no queue: fire and forget). Both carry the same JSON, `StartSignal.to_json()`. Failures
raise: the invoker retries (EventBridge, SNS) and duplicate signals are harmless because the worker
coalesces overlapping ones.
"""

from __future__ import annotations

from functools import cache

import redis
from aws_lambda_powertools.metrics import MetricUnit
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from functions.common.redis_auth import auth_token
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.common.telemetry import TriggerMetric
from functions.trigger import aws
from functions.trigger.observability import logger, metrics, tracer
from functions.trigger.settings import RedisSettings, TriggerSettings

_REDIS_TIMEOUT_S = 5.0
# Few, short retries: a longer outage (failover) is better retried by the invoker, which re-runs the
# whole invocation, than by sleeping inside a Lambda billed by the millisecond.
_REDIS_RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)


def issue_signal(command: Command, source: Source, stations: list[str] | None, config: TriggerSettings) -> StartSignal:
    """Build the versioned signal, make its id the log correlation id, send it and count it."""
    signal = StartSignal(command=command, source=source, stations=stations)
    logger.set_correlation_id(str(signal.id))
    send_signal(signal, config)
    metrics.add_metric(name=TriggerMetric.SIGNALS_SENT, unit=MetricUnit.Count, value=1)
    return signal


@tracer.capture_method
def send_signal(signal: StartSignal, config: TriggerSettings) -> None:
    body = signal.to_json()
    response = aws.sns().publish(
        TopicArn=config.start_topic_arn,
        Message=body,
        # Attributes let a subscription filter by command without parsing the body.
        MessageAttributes={
            "command": {"DataType": "String", "StringValue": signal.command.value},
            "source": {"DataType": "String", "StringValue": signal.source.value},
        },
    )
    logger.info(
        "start signal published to SNS",
        extra={"sns_message_id": response["MessageId"], "command": signal.command.value, "source": signal.source.value},
    )
    if config.redis is not None:
        receivers = redis_client(config.redis).publish(REDIS_SIGNAL_CHANNEL, body)
        logger.info(
            "start signal published to Redis", extra={"channel": REDIS_SIGNAL_CHANNEL, "subscribers": receivers}
        )


@cache
def redis_client(config: RedisSettings) -> redis.Redis:
    """One client (and pool) per execution environment; the AUTH token is fetched once, here."""
    password = _auth_token(config.auth_secret_arn) if config.auth_secret_arn else None
    return redis.Redis(
        host=config.host,
        port=config.port,
        password=password,
        ssl=config.tls,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
        retry=_REDIS_RETRY,
    )


def _auth_token(secret_arn: str) -> str:
    secret = aws.secretsmanager().get_secret_value(SecretId=secret_arn)["SecretString"]
    return auth_token(secret)


def reset_redis() -> None:
    """Forget the cached Redis client (tests start a new server per test)."""
    redis_client.cache_clear()
