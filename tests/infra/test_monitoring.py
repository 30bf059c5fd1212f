"""Monitoring stack: alarms on the shared metric contract, a dashboard, self-heal wiring."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from functions.common.state import HEARTBEAT_STALE_AFTER_S
from functions.common.telemetry import ENV_DIMENSION, METRICS_NAMESPACE, WORKER_SERVICE, WorkerMetric
from infra.naming import heartbeat_alarm_name

pytestmark = pytest.mark.infra


def alarms(synth) -> dict[str, dict]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources("Monitoring", "AWS::CloudWatch::Alarm").values()
    }


def alarm_topic(synth) -> str:
    (topic_id,) = synth.resources("Monitoring", "AWS::SNS::Topic")
    return topic_id


def test_every_alarm_notifies_the_encrypted_alarm_topic(env_synth):
    topic_id = alarm_topic(env_synth)
    topic = env_synth.templates["Monitoring"]["Resources"][topic_id]["Properties"]
    assert "MessagingKey" in topic["KmsMasterKeyId"]["Fn::ImportValue"]
    found = alarms(env_synth)
    env = env_synth.env
    assert set(found) == {
        f"C2C-{env}-{n}"
        for n in (
            "DlqNotEmpty",
            "ScheduleDlqNotEmpty",
            "HeartbeatStale",
            "FailureRatio",
            "WorkerNotRunning",
            "TriggerErrors",
            "TriggerAsyncFailures",
        )
    }
    for alarm in found.values():
        assert {"Ref": topic_id} in alarm["AlarmActions"]


def test_heartbeat_stale_alarm_follows_the_contract_and_reaches_self_heal(env_synth):
    alarm = alarms(env_synth)[heartbeat_alarm_name(env_synth.env)]
    assert alarm["Namespace"] == METRICS_NAMESPACE and alarm["MetricName"] == WorkerMetric.HEARTBEAT_AGE
    assert alarm["Dimensions"] == [
        {"Name": ENV_DIMENSION, "Value": env_synth.env},
        {"Name": "service", "Value": WORKER_SERVICE},
    ]
    assert alarm["Statistic"] == "Maximum" and alarm["Threshold"] == HEARTBEAT_STALE_AFTER_S
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"  # a dead worker emits nothing
    assert {"Fn::ImportValue": f"C2C-{env_synth.env}-Trigger:ExportsOutputRefSelfHealTopicF308E28F0314878A"} in alarm[
        "AlarmActions"
    ]


def test_dlq_alarm_fires_on_the_first_dead_letter(env_synth):
    alarm = alarms(env_synth)[f"C2C-{env_synth.env}-DlqNotEmpty"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert "StartDeadLetterQueue" in alarm["Dimensions"][0]["Value"]["Fn::ImportValue"]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_failure_ratio_is_metric_math_over_synced_and_failed(env_synth):
    config = load_environment(env_synth.env)
    alarm = alarms(env_synth)[f"C2C-{env_synth.env}-FailureRatio"]
    assert alarm["Threshold"] == config.alarms.failure_ratio
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert by_id["synced"]["MetricStat"]["Metric"]["MetricName"] == WorkerMetric.STATIONS_SYNCED
    assert by_id["failed"]["MetricStat"]["Metric"]["MetricName"] == WorkerMetric.STATIONS_FAILED
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert "failed / (synced + failed)" in expression["Expression"]
    # A cycle that could not read the station list counts as every station failed (ratio 1).
    assert expression["Expression"].startswith("IF(listfailed > 0, 1,")
    assert by_id["listfailed"]["MetricStat"]["Metric"]["MetricName"] == WorkerMetric.STATION_LIST_FAILED
    assert by_id["failed"]["MetricStat"]["Period"] == config.alarms.failure_ratio_period_minutes * 60


def test_worker_not_running_uses_the_free_ecs_service_metrics(env_synth):
    config = load_environment(env_synth.env)
    alarm = alarms(env_synth)[f"C2C-{env_synth.env}-WorkerNotRunning"]
    # AWS/ECS reports service metrics only while a task runs: no samples = no worker.
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/ECS", "CPUUtilization", "SampleCount")
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["EvaluationPeriods"] == config.alarms.running_tasks_periods


def test_lambda_errors_alarm(env_synth):
    alarm = alarms(env_synth)[f"C2C-{env_synth.env}-TriggerErrors"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Threshold"] == load_environment(env_synth.env).alarms.lambda_errors


def test_dashboard_graphs_every_required_metric(prod):
    assert prod.config.monitoring.dashboard
    body = json.dumps(prod.only("Monitoring", "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for name in (
        WorkerMetric.CYCLE_DURATION,
        WorkerMetric.STATIONS_SYNCED,
        WorkerMetric.STATIONS_FAILED,
        WorkerMetric.READINGS_PUBLISHED,
        WorkerMetric.MQTT_RECONNECTS,
        WorkerMetric.HEARTBEAT_AGE,
        "ApproximateNumberOfMessagesVisible",
        "AWS/Lambda",
        "Errors",
        "CPUUtilization",
    ):
        assert f'\\"{name}\\"' in body, name


def test_without_the_dashboard_every_alarm_stays(dev, prod):
    assert not dev.config.monitoring.dashboard
    assert "AWS::CloudWatch::Dashboard" not in {r["Type"] for r in dev.templates["Monitoring"]["Resources"].values()}
    assert "DashboardName" not in dev.templates["Monitoring"]["Outputs"]
    assert set(alarms(dev)) == {name.replace("C2C-prod-", "C2C-dev-") for name in alarms(prod)}


def test_a_configured_notify_topic_receives_every_alarm(stage):
    paging = f"arn:aws:sns:us-east-1:{stage.config.account}:ops-paging"
    for alarm in alarms(stage).values():
        assert paging in alarm["AlarmActions"] and paging in alarm["OKActions"], alarm["AlarmName"]


def test_configured_emails_subscribe_to_the_alarm_topic(stage, dev):
    (sub,) = stage.resources("Monitoring", "AWS::SNS::Subscription").values()
    assert sub["Properties"]["Protocol"] == "email" and sub["Properties"]["Endpoint"] == "ops@example.com"
    assert not dev.resources("Monitoring", "AWS::SNS::Subscription")
