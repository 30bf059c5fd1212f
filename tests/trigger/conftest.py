"""Fixtures for the trigger Lambda's tests: its AWS resources in moto's server and a way to invoke it.

The handler's boto3 clients find moto through AWS_ENDPOINT_URL (boto3 reads it natively); the start
topic delivers to a real SQS queue in moto with raw delivery, as the messaging stack wires it.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.common.signal import StartSignal, parse_signal

EVENTS = Path(__file__).parent / "events"
HEARTBEAT_ALARM = "c2c-dev-heartbeat-stale"  # the AlarmName in events/sns_heartbeat_alarm.json


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools Logger reads."""

    function_name: str = "c2c-dev-trigger"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:c2c-dev-trigger"
    aws_request_id: str = "6f2f1a2e-1c4e-4b43-9d5c-2a4b8f0e1d11"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@dataclass
class TriggerWorld:
    """The trigger's environment in moto: start topic → SQS queue (raw delivery)."""

    moto: Any
    topic_arn: str
    queue_url: str

    def received_signals(self, expect: int = 1) -> list[StartSignal]:
        """Receive what SNS delivered and validate each body with the worker's own parser."""
        sqs = self.moto.client("sqs")
        bodies: list[str] = []
        for _ in range(5):
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            bodies += [m["Body"] for m in got.get("Messages", [])]
            if len(bodies) >= expect:
                break
        return [parse_signal(body) for body in bodies]

    def queue_is_empty(self) -> bool:
        got = self.moto.client("sqs").receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=0)
        return not got.get("Messages")


@pytest.fixture
def trigger_env(moto, monkeypatch) -> Iterator[TriggerWorld]:
    from functions.trigger import aws, publish, settings

    sns, sqs = moto.client("sns"), moto.client("sqs")
    topic_arn = sns.create_topic(Name="c2c-test-start")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="c2c-test-start")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("START_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("HEARTBEAT_ALARM_NAME", HEARTBEAT_ALARM)
    for name in (
        "SCHEDULE_COMMAND",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_TLS",
        "REDIS_AUTH_SECRET_ARN",
        "ECS_CLUSTER_NAME",
        "ECS_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    _forget_cold_start(aws, publish, settings)
    yield TriggerWorld(moto=moto, topic_arn=topic_arn, queue_url=queue_url)
    _forget_cold_start(aws, publish, settings)


def _forget_cold_start(aws, publish, settings) -> None:
    # Each test is a fresh "cold start": settings, boto3 clients and the Redis client are rebuilt.
    settings.settings.cache_clear()
    aws.reset_clients()
    publish.reset_redis()


@pytest.fixture
def invoke():
    from functions.trigger.handler import handler
    from functions.trigger.observability import logger

    def _invoke(event: Any) -> Any:
        # Powertools Logger keeps the sys.stdout of import time; point it at the current one so that
        # capsys sees log records as well as the EMF blobs (which Metrics print()s), like CloudWatch does.
        stream_handler = logger.registered_handler
        assert isinstance(stream_handler, logging.StreamHandler)
        stream_handler.stream = sys.stdout  # not setStream: it flushes the closed old one
        return handler(copy.deepcopy(event), LambdaContext())

    return _invoke


def stdout_records(text: str) -> list[dict[str, Any]]:
    """Every JSON line the Lambda printed: Powertools log records and EMF metric blobs."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def emf_metrics(text: str) -> list[dict[str, Any]]:
    """The EMF blobs (records with `_aws.CloudWatchMetrics`) Powertools Metrics printed."""
    return [r for r in stdout_records(text) if "CloudWatchMetrics" in r.get("_aws", {})]


def metric_value(text: str, name: str) -> float | None:
    values = [blob[name] for blob in emf_metrics(text) if name in blob]
    return sum(v if isinstance(v, (int, float)) else sum(v) for v in values) if values else None
