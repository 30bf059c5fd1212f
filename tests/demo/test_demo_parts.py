"""The demo's parts on their own: loss ledger, teardown, messaging topology in moto (from the
synthesized stack), the locally invoked trigger, and the independent subscriber.

Real parts: moto's server, redis-server, mosquitto; the template is synthesized by the real
MessagingStack (a CDK synth in a child process).
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
import redis

from c2c_sync.demo import blueprint as blueprints
from c2c_sync.demo import topology
from c2c_sync.demo.ledger import expected_ids, message_id, reconcile
from c2c_sync.demo.lifecycle import Interrupted, Teardown
from c2c_sync.demo.subscriber import Subscriber, subscription_topic
from c2c_sync.demo.trigger import LocalTrigger, RedisPublishTarget, scheduled_event
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, parse_signal

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# -- ledger ---------------------------------------------------------------------------------------


def test_expected_ids_are_the_grid_readings_after_the_baseline_up_to_each_final_cursor():
    cursors = {"site-00001": T0 + timedelta(minutes=3), "site-00002": T0}
    assert expected_ids(T0, cursors, 60) == {
        "site-00001:readings:2024-06-01T12:01:00.000000Z",
        "site-00001:readings:2024-06-01T12:02:00.000000Z",
        "site-00001:readings:2024-06-01T12:03:00.000000Z",
    }


def test_reconcile_names_lost_readings_and_does_not_count_readings_past_the_cursor_as_lost():
    cursors = {"s1": T0 + timedelta(minutes=2)}
    received = {message_id("s1", T0 + timedelta(minutes=1)), message_id("s1", T0 + timedelta(minutes=3))}
    rec = reconcile(T0, cursors, received, 60)
    assert rec.lost == [message_id("s1", T0 + timedelta(minutes=2))]
    assert rec.beyond_cursor == 1 and rec.expected == 2 and not rec.ok


def test_reconcile_is_ok_when_every_expected_reading_was_received():
    cursors = {"s1": T0 + timedelta(minutes=2)}
    rec = reconcile(T0, cursors, expected_ids(T0, cursors, 60), 60)
    assert rec.ok and rec.lost == [] and rec.expected == 2


# -- teardown -------------------------------------------------------------------------------------


def test_teardown_runs_actions_last_first_and_keeps_going_after_a_failure():
    ran: list[str] = []
    teardown = Teardown()
    teardown.push("a", lambda: ran.append("a"))
    teardown.push("b", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    teardown.push("c", lambda: ran.append("c"))
    teardown.close()
    teardown.close()  # idempotent
    assert ran == ["c", "a"]
    assert teardown.failures == ["b: RuntimeError('boom')"]


def test_sigterm_unwinds_the_main_thread_so_finally_blocks_run():
    teardown = Teardown().install()
    stopped = []
    teardown.push("service", lambda: stopped.append(True))
    try:
        with pytest.raises(Interrupted):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                teardown.close()
    finally:
        teardown.close()
    assert stopped == [True]
    assert signal.getsignal(signal.SIGTERM) is not teardown._on_signal  # handler restored


# -- topology from the synthesized messaging stack -------------------------------------------------


@pytest.fixture(scope="module")
def blueprint(tmp_path_factory) -> blueprints.Blueprint:
    log = tmp_path_factory.mktemp("synth") / "synth.log"
    return blueprints.collect(blueprints.start("dev", "demo-test", log), log)


@pytest.fixture
def messaging_template(blueprint) -> dict:
    return blueprint.messaging_template


def _properties(template: dict, kind: str) -> list[dict]:
    return [r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == kind]


@pytest.mark.integration
def test_blueprint_takes_the_worker_environment_and_schedule_command_from_the_stacks(blueprint):
    bp = blueprint
    assert bp.worker_environment["C2C_ENV"] == "demo-test"
    assert bp.worker_environment["C2C_MODE"] == bp.worker_mode == "per-signal"
    assert bp.schedule_command == Command.SYNC_NOW.value


@pytest.mark.integration
def test_topology_creates_queue_dlq_topic_and_subscription_as_the_template_defines_them(moto, messaging_template):
    messaging = topology.deploy(messaging_template, moto.client, "c2c-demo-test")

    queues = _properties(messaging_template, "AWS::SQS::Queue")
    start = next(q for q in queues if "RedrivePolicy" in q)
    attrs = messaging.queue_attributes
    for name in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"):
        assert attrs[name] == str(start[name])
    assert messaging.max_receive_count == start["RedrivePolicy"]["maxReceiveCount"]
    dlq_arn = moto.client("sqs").get_queue_attributes(QueueUrl=messaging.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn
    assert attrs["KmsMasterKeyId"].startswith("arn:aws:kms:")
    topic_attrs = moto.client("sns").get_topic_attributes(TopicArn=messaging.topic_arn)["Attributes"]
    assert topic_attrs["KmsMasterKeyId"] == attrs["KmsMasterKeyId"]
    assert messaging.subscription_attributes["RawMessageDelivery"] == "true"
    assert json.loads(attrs["Policy"])["Statement"][1]["Condition"]["ArnEquals"]["aws:SourceArn"] == messaging.topic_arn

    moto.client("sns").publish(TopicArn=messaging.topic_arn, Message='{"hello": 1}')
    got = moto.client("sqs").receive_message(QueueUrl=messaging.queue_url, WaitTimeSeconds=1)["Messages"]
    assert got[0]["Body"] == '{"hello": 1}'  # raw delivery: no SNS envelope


@pytest.mark.integration
def test_topology_refuses_a_resource_it_cannot_reproduce(moto, messaging_template):
    template = json.loads(json.dumps(messaging_template))
    template["Resources"]["Extra"] = {"Type": "AWS::Lambda::Function", "Properties": {}}
    with pytest.raises(topology.UnsupportedTemplate, match="Extra: resource type AWS::Lambda::Function"):
        topology.deploy(template, moto.client, "c2c-demo-test")


@pytest.mark.integration
def test_topology_refuses_a_queue_property_it_would_otherwise_drop(moto, messaging_template):
    template = json.loads(json.dumps(messaging_template))
    template["Resources"]["StartDeadLetterQueue"]["Properties"]["FifoQueue"] = True
    with pytest.raises(topology.UnsupportedTemplate, match=r"StartDeadLetterQueue: properties \['FifoQueue'\]"):
        topology.deploy(template, moto.client, "c2c-demo-test")


# -- trigger ----------------------------------------------------------------------------------------


def test_scheduled_event_is_a_fresh_eventbridge_scheduled_event_for_the_rule():
    a, b = scheduled_event("c2c-x-schedule"), scheduled_event("c2c-x-schedule")
    assert a["detail-type"] == "Scheduled Event" and a["source"] == "aws.events"
    assert a["resources"] == [f"arn:aws:events:{topology.REGION}:{topology.ACCOUNT_ID}:rule/c2c-x-schedule"]
    assert a["id"] != b["id"]


@pytest.mark.integration
def test_local_trigger_turns_a_scheduled_event_into_a_signal_on_the_start_queue_and_on_redis(
    moto, messaging_template, redis_server, tmp_path
):
    messaging = topology.deploy(messaging_template, moto.client, "c2c-demo-test")
    listener = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(REDIS_SIGNAL_CHANNEL)
    os.environ.pop("START_TOPIC_ARN", None)

    with LocalTrigger(
        env="demo-test",
        topic_arn=messaging.topic_arn,
        schedule_command="sync_now",
        aws_endpoint=moto.url,
        log_path=tmp_path / "trigger.log",
    ) as trigger:
        via_sqs = trigger.fire_schedule()
        trigger.configure(RedisPublishTarget(host="127.0.0.1", port=redis_server.port))
        via_both = trigger.fire_schedule()

    assert "START_TOPIC_ARN" not in os.environ  # the Lambda's environment is gone again
    bodies = [
        m["Body"]
        for m in moto.client("sqs").receive_message(
            QueueUrl=messaging.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )["Messages"]
    ]
    signals = {str(s.id): s for s in map(parse_signal, bodies)}
    assert set(signals) == {via_sqs, via_both}
    assert all(s.command is Command.SYNC_NOW and s.source is Source.SCHEDULE for s in signals.values())
    message, deadline = None, time.monotonic() + 5
    while message is None and time.monotonic() < deadline:  # the first one read is the (ignored) SUBSCRIBE reply
        message = listener.get_message(timeout=1)
    assert message is not None and str(parse_signal(message["data"]).id) == via_both
    log = (tmp_path / "trigger.log").read_text()
    assert "scheduled event turned into a start signal" in log  # Powertools' log went to the file


# -- subscriber -------------------------------------------------------------------------------------


def _publish(port: int, messages: list[tuple[str, str]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for station, mid in messages:
        body = json.dumps({"message_id": mid, "station_id": station, "values": {}})
        client.publish(f"c2c/t/stations/{station}/telemetry", body, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _wait_total(sub: Subscriber, n: int) -> None:
    deadline = time.monotonic() + 5
    while sub.total() + len(sub.dropped) < n and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.integration
def test_subscriber_counts_messages_and_duplicates_by_message_id(mosquitto):
    topic = subscription_topic("c2c/{env}/stations/{station_id}/telemetry", "t")
    sub = Subscriber(mosquitto.url, topic, "test-sub").start()
    try:
        _publish(mosquitto.port, [("s1", "s1:a"), ("s1", "s1:b"), ("s1", "s1:a")])
        _wait_total(sub, 3)
        assert (sub.total(), sub.distinct(), sub.duplicates()) == (3, 2, 1)
        assert sub.received_ids() == {"s1:a", "s1:b"}
    finally:
        sub.stop()


@pytest.mark.integration
def test_subscriber_test_hook_ignores_every_copy_of_the_first_reading_of_one_station(mosquitto):
    sub = Subscriber(mosquitto.url, "c2c/t/stations/+/telemetry", "test-sub", drop_first_of="s2").start()
    try:
        _publish(mosquitto.port, [("s1", "s1:a"), ("s2", "s2:a"), ("s2", "s2:b"), ("s2", "s2:a")])
        deadline = time.monotonic() + 5
        while sub.total() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert sub.received_ids() == {"s1:a", "s2:b"}
        assert sub.dropped == {"s2:a"}
    finally:
        sub.stop()


def test_a_vendor_demo_scales_the_definitions_vendor_time_and_raises_a_batched_budget_to_its_stations():
    import yaml

    from c2c_sync.demo.vendors import scale_definition, scaled, time_scale
    from functions.sync_worker.source.http_json import VENDORS_DIR

    fs = yaml.safe_load((VENDORS_DIR / "huawei_fusionsolar.yaml").read_text())
    scale = time_scale("fusionsolar", 6.0)  # the mock's 5 minutes: 4 s, inside one 6 s interval
    out = scale_definition(fs, scale, stations=1000)
    (plant,) = out["readings"] if isinstance(out["readings"], list) else [out["readings"]]
    assert scaled(300, scale) == 4 and plant["snapshot"]["resolution_s"] == 4
    assert plant["budget"] == {"calls": 10, "period_s": pytest.approx(4.4)}  # Roundup(1000/100), 10 % margin
    assert out["auth"]["min_login_interval_s"] == scaled(120, scale)
    assert fs["readings"]["budget"] == {"calls": 1, "period_s": 300}  # the shipped file is left alone

    se = yaml.safe_load((VENDORS_DIR / "solaredge.yaml").read_text())
    out = scale_definition(se, time_scale("solaredge", 6.0), stations=100)  # a quarter-hour lasts 6 s
    assert [ep["lookback_s"] for ep in out["readings"]] == [24, 24]
    assert [ep["max_window_s"] for ep in out["readings"]] == [ep["max_window_s"] for ep in se["readings"]]
    assert out["http"]["max_concurrency"] == 3
    assert {e.get("retry_after_s") for e in out["http"]["errors"]} <= {None, scaled(60, 6.0 / 900)}


def test_the_demo_knows_only_the_vendors_it_has_a_mock_for():
    from c2c_sync.demo.options import DemoOptions, DemoUsageError

    with pytest.raises(DemoUsageError, match="--vendor must be one of simulator, fusionsolar, solaredge"):
        DemoOptions(vendor="acme").validate()
