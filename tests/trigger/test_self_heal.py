"""Heartbeat-stale alarm via SNS: a start_sync signal AND a forced ECS deployment (moto records it).

moto's ECS replaces the service's deployment id on `forceNewDeployment`, so a changed id in
describe_services is the evidence that the update call reached ECS; no Stubber needed.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from functions.common.signal import Command, Source
from functions.common.telemetry import TriggerMetric
from tests.trigger.conftest import HEARTBEAT_ALARM, load_event, metric_value

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]  # see observability.py

CLUSTER, SERVICE = "c2c-test", "sync-worker"


@pytest.fixture
def worker_service(trigger_env, monkeypatch):
    ecs = trigger_env.moto.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="sync-worker",
        containerDefinitions=[{"name": "worker", "image": "c2c/sync-worker:test", "memory": 512, "essential": True}],
    )
    ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition="sync-worker", desiredCount=1, launchType="FARGATE"
    )
    monkeypatch.setenv("ECS_CLUSTER_NAME", CLUSTER)
    monkeypatch.setenv("ECS_SERVICE_NAME", SERVICE)
    return ecs


def _deployment_id(ecs) -> str:
    [service] = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    return service["deployments"][0]["id"]


def _alarm(name: str = HEARTBEAT_ALARM, state: str = "ALARM") -> dict:
    event = load_event("sns_heartbeat_alarm")
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(AlarmName=name, NewStateValue=state, OldStateValue="ALARM" if state == "OK" else "OK")
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


def test_heartbeat_alarm_sends_start_sync_and_forces_a_new_deployment(trigger_env, worker_service, invoke, capsys):
    before = _deployment_id(worker_service)

    invoke(load_event("sns_heartbeat_alarm"))

    [signal] = trigger_env.received_signals()
    assert (signal.command, signal.source) == (Command.START_SYNC, Source.ALARM)
    assert _deployment_id(worker_service) != before
    out = capsys.readouterr().out
    assert metric_value(out, TriggerMetric.SELF_HEAL_DEPLOYMENTS) == 1.0
    assert metric_value(out, TriggerMetric.SIGNALS_SENT) == 1.0


@pytest.mark.parametrize(
    ("name", "state"),
    [(HEARTBEAT_ALARM, "OK"), (HEARTBEAT_ALARM, "INSUFFICIENT_DATA"), ("c2c-dev-dlq-not-empty", "ALARM")],
    ids=["heartbeat-ok", "heartbeat-insufficient-data", "other-alarm"],
)
def test_other_alarm_notifications_take_no_action(trigger_env, worker_service, invoke, capsys, name, state):
    before = _deployment_id(worker_service)

    assert invoke(_alarm(name, state)) is None

    assert trigger_env.queue_is_empty()
    assert _deployment_id(worker_service) == before
    out = capsys.readouterr().out
    assert metric_value(out, TriggerMetric.SELF_HEAL_DEPLOYMENTS) is None
    assert metric_value(out, TriggerMetric.UNKNOWN_EVENTS) is None


def test_redeploys_even_when_the_signal_cannot_be_sent(trigger_env, worker_service, invoke, monkeypatch):
    from functions.trigger import settings

    monkeypatch.setenv("START_TOPIC_ARN", trigger_env.topic_arn + "-deleted")
    settings.settings.cache_clear()
    before = _deployment_id(worker_service)

    with pytest.raises(ClientError, match="NotFound"):
        invoke(load_event("sns_heartbeat_alarm"))

    assert _deployment_id(worker_service) != before


def test_alarm_without_ecs_settings_still_sends_the_signal(trigger_env, invoke, capsys):
    invoke(load_event("sns_heartbeat_alarm"))

    [signal] = trigger_env.received_signals()
    assert signal.source == Source.ALARM
    assert "self-heal not configured" in capsys.readouterr().out
