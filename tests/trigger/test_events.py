"""Event classification and settings, without AWS: each documented sample maps to the right kind."""

from __future__ import annotations

import pytest

from functions.common.signal import Command
from functions.trigger.events import AlarmNotifications, BadHttpRequest, HttpRequest, Scheduled, UnknownEvent, classify
from functions.trigger.settings import MissingSetting, TriggerSettings
from tests.trigger.conftest import HEARTBEAT_ALARM, load_event


def test_scheduled_sample_is_a_scheduled_event():
    assert classify(load_event("scheduled_event")) == Scheduled(event_id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa")


@pytest.mark.parametrize(
    ("sample", "command", "stations"),
    [
        ("function_url_post", Command.SYNC_NOW, ["station-1", "station-2"]),
        ("function_url_post_base64", Command.START_SYNC, None),
    ],
)
def test_function_url_samples_are_http_requests_with_their_body(sample, command, stations):
    parsed = classify(load_event(sample))
    assert isinstance(parsed, HttpRequest)
    assert (parsed.command.command, parsed.command.stations) == (command, stations)
    assert parsed.caller == "arn:aws:sts::123456789012:assumed-role/c2c-operator/operator"


def test_sns_alarm_sample_is_an_alarm_notification():
    parsed = classify(load_event("sns_heartbeat_alarm"))
    assert isinstance(parsed, AlarmNotifications)
    [alarm] = parsed.alarms
    assert (alarm.AlarmName, alarm.NewStateValue, alarm.OldStateValue) == (HEARTBEAT_ALARM, "ALARM", "OK")


def test_eventbridge_scheduler_event_is_not_the_rule_event_we_accept():
    event = load_event("scheduled_event") | {"source": "aws.scheduler"}
    parsed = classify(event)
    assert isinstance(parsed, UnknownEvent)
    assert "source" in parsed.reason


def test_put_is_a_bad_request_not_an_unknown_event():
    event = load_event("function_url_post")
    event["requestContext"]["http"]["method"] = "PUT"
    assert classify(event) == BadHttpRequest(
        "method: PUT is not allowed, use POST", "f1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    )


def test_settings_name_a_bad_schedule_command():
    with pytest.raises(MissingSetting, match="SCHEDULE_COMMAND must be one of start_sync"):
        TriggerSettings.from_env({"START_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:t", "SCHEDULE_COMMAND": "go"})


def test_settings_redis_is_optional_and_tls_is_a_flag():
    base = {"START_TOPIC_ARN": "arn:aws:sns:eu-west-1:1:t"}
    assert TriggerSettings.from_env(base).redis is None
    redis = TriggerSettings.from_env(base | {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_TLS": "true"}).redis
    assert redis is not None
    assert (redis.host, redis.port, redis.tls, redis.auth_secret_arn) == ("cache", 6380, True, None)
