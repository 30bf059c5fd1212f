"""The trigger Lambda end to end against moto's server: each sample event → SNS → SQS → a valid StartSignal."""

from __future__ import annotations

import json

import pytest

from functions.common.signal import Command, Source
from functions.common.telemetry import ENV_DIMENSION, METRICS_NAMESPACE, TRIGGER_SERVICE, TriggerMetric
from functions.trigger.settings import MissingSetting
from tests.trigger.conftest import emf_metrics, load_event, metric_value, stdout_records

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]  # see observability.py


def test_scheduled_event_sends_the_schedule_command_default_sync_now(trigger_env, invoke):
    result = invoke(load_event("scheduled_event"))

    [signal] = trigger_env.received_signals()
    assert (signal.command, signal.source, signal.stations) == (Command.SYNC_NOW, Source.SCHEDULE, None)
    assert result == {"id": str(signal.id), "command": "sync_now"}


def test_scheduled_event_uses_schedule_command_from_env(trigger_env, invoke, monkeypatch):
    monkeypatch.setenv("SCHEDULE_COMMAND", "start_sync")

    invoke(load_event("scheduled_event"))

    [signal] = trigger_env.received_signals()
    assert (signal.command, signal.source) == (Command.START_SYNC, Source.SCHEDULE)


def test_function_url_post_plain_json_is_accepted_and_delivered(trigger_env, invoke):
    response = invoke(load_event("function_url_post"))

    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    [signal] = trigger_env.received_signals()
    assert body == {"id": str(signal.id), "command": "sync_now"}
    assert (signal.command, signal.source, signal.stations) == (
        Command.SYNC_NOW,
        Source.HTTP,
        ["station-1", "station-2"],
    )


def test_function_url_post_base64_body_is_decoded(trigger_env, invoke):
    response = invoke(load_event("function_url_post_base64"))

    assert response["statusCode"] == 202
    [signal] = trigger_env.received_signals()
    assert (signal.command, signal.source, signal.stations) == (Command.START_SYNC, Source.HTTP, None)
    assert json.loads(response["body"])["id"] == str(signal.id)


def test_signal_id_is_the_log_correlation_id(trigger_env, invoke, capsys):
    invoke(load_event("function_url_post"))

    [signal] = trigger_env.received_signals()
    logs = [r for r in stdout_records(capsys.readouterr().out) if r.get("message") == "start signal published to SNS"]
    assert len(logs) == 1
    assert logs[0]["correlation_id"] == str(signal.id)
    assert logs[0]["service"] == TRIGGER_SERVICE


def test_signals_sent_metric_has_the_contract_namespace_and_dimensions(trigger_env, invoke, capsys):
    invoke(load_event("scheduled_event"))

    out = capsys.readouterr().out
    [blob] = emf_metrics(out)
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == METRICS_NAMESPACE
    assert sorted(directive["Dimensions"][0]) == sorted([ENV_DIMENSION, "service"])
    assert (blob[ENV_DIMENSION], blob["service"]) == ("test", TRIGGER_SERVICE)
    assert metric_value(out, TriggerMetric.SIGNALS_SENT) == 1.0


def _with_body(body: str | None, *, method: str = "POST") -> dict:
    event = load_event("function_url_post")
    event["body"] = body
    event["requestContext"]["http"]["method"] = method
    return event


@pytest.mark.parametrize(
    ("body", "method", "names"),
    [
        ("{not json", "POST", "body: not valid JSON"),
        (None, "POST", "body: required"),
        ('{"command": "explode"}', "POST", "command: Input should be 'start_sync'"),
        ('{"command": "sync_now", "stations": ["ok-1", "bad id!"]}', "POST", "stations.1: String should match"),
        ('{"command": "sync_now", "stations": []}', "POST", "stations: List should have at least 1 item"),
        ('{"command": "sync_now", "force": true}', "POST", "force: unknown field"),
        ('{"stations": ["a"]}', "POST", "command: Field required"),
        ('["sync_now"]', "POST", "body: Input should be a valid dictionary"),
        ('{"command": "sync_now"}', "GET", "method: GET is not allowed, use POST"),
    ],
    ids=[
        "not-json",
        "empty",
        "wrong-command",
        "bad-station-id",
        "empty-stations",
        "extra-field",
        "missing-command",
        "not-an-object",
        "wrong-method",
    ],
)
def test_bad_http_request_gets_400_naming_the_problem(trigger_env, invoke, capsys, body, method, names):
    response = invoke(_with_body(body, method=method))

    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "application/json"
    payload = json.loads(response["body"])
    assert names in payload["reason"]
    assert metric_value(capsys.readouterr().out, TriggerMetric.BAD_REQUESTS) == 1.0
    assert trigger_env.queue_is_empty()


def test_bad_base64_body_gets_400(trigger_env, invoke):
    event = load_event("function_url_post_base64")
    event["body"] = "%%% not base64 %%%"

    response = invoke(event)

    assert response["statusCode"] == 400
    assert "body: isBase64Encoded is true but the body is not base64" in json.loads(response["body"])["reason"]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"hello": "world"},
        ["not", "an", "object"],
        {
            "version": "0",
            "id": "x",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2024-03-12T19:03:58Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {},
        },
        {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]},
    ],
    ids=["empty", "random-keys", "list", "other-eventbridge-event", "sqs-records"],
)
def test_unknown_event_is_logged_and_counted_without_raising(trigger_env, invoke, capsys, event):
    assert invoke(event) is None

    out = capsys.readouterr().out
    assert metric_value(out, TriggerMetric.UNKNOWN_EVENTS) == 1.0
    assert any(r.get("message") == "unknown event ignored" and r.get("reason") for r in stdout_records(out))
    assert trigger_env.queue_is_empty()


def test_sns_message_that_is_not_an_alarm_is_an_unknown_event(trigger_env, invoke, capsys):
    event = load_event("sns_heartbeat_alarm")
    event["Records"][0]["Sns"]["Message"] = "Hello from SNS!"

    assert invoke(event) is None
    assert metric_value(capsys.readouterr().out, TriggerMetric.UNKNOWN_EVENTS) == 1.0


def test_missing_start_topic_fails_with_its_name(trigger_env, invoke, monkeypatch):
    from functions.trigger import settings

    monkeypatch.delenv("START_TOPIC_ARN")
    settings.settings.cache_clear()

    with pytest.raises(MissingSetting, match="START_TOPIC_ARN"):
        invoke(load_event("scheduled_event"))
