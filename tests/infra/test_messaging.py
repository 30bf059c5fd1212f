"""Messaging stack: CMK with rotation, KMS + TLS-only topic and queues, raw delivery, explicit DLQ."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from stacks.messaging import MAX_RECEIVE_COUNT

pytestmark = pytest.mark.infra

DENY_INSECURE = {"Bool": {"aws:SecureTransport": "false"}}


def statements(resource: dict) -> list[dict]:
    return resource["Properties"]["PolicyDocument"]["Statement"]


def test_customer_managed_key_rotates(env_synth):
    key = env_synth.templates["Messaging"]["Resources"]["MessagingKey"]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True


def test_key_admits_publishing_services_for_this_account_only(env_synth):
    key_policy = env_synth.templates["Messaging"]["Resources"]["MessagingKey"]["Properties"]["KeyPolicy"]
    services = {}
    for st in key_policy["Statement"]:
        service = st["Principal"].get("Service") if isinstance(st["Principal"], dict) else None
        if service:
            services[json.dumps(service) if isinstance(service, dict) else service] = st
    logs = services.pop('{"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}')
    # CloudWatch Logs may use the key only for this account's log groups in this region.
    (arn,) = logs["Condition"]["ArnLike"].values()
    assert arn["Fn::Join"][1][-1] == ":log-group:*" and {"Ref": "AWS::AccountId"} in arn["Fn::Join"][1]
    assert set(services) == {"sns.amazonaws.com", "cloudwatch.amazonaws.com", "events.amazonaws.com"}
    for st in services.values():
        assert st["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        assert set(st["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_start_topic_is_kms_encrypted_and_https_only(env_synth):
    resources = env_synth.templates["Messaging"]["Resources"]
    topic = resources["StartTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["MessagingKey", "Arn"]}
    (policy,) = env_synth.resources("Messaging", "AWS::SNS::TopicPolicy").values()
    deny = [s for s in statements(policy) if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == DENY_INSECURE and deny[0]["Action"] == "sns:Publish"


def test_start_queue_is_encrypted_tls_only_with_visibility_above_the_longest_cycle(env_synth):
    config = load_environment(env_synth.env)
    resources = env_synth.templates["Messaging"]["Resources"]
    queue = resources["StartQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": ["MessagingKey", "Arn"]}
    assert queue["VisibilityTimeout"] > config.worker.max_cycle_s
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["StartDeadLetterQueue", "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    dlq = resources["StartDeadLetterQueue"]["Properties"]
    assert dlq["KmsMasterKeyId"] == {"Fn::GetAtt": ["MessagingKey", "Arn"]}
    for policy in env_synth.resources("Messaging", "AWS::SQS::QueuePolicy").values():
        assert any(s["Effect"] == "Deny" and s["Condition"] == DENY_INSECURE for s in statements(policy))


def test_queue_subscribes_with_raw_delivery_and_admits_only_the_start_topic(env_synth):
    sub = env_synth.only("Messaging", "AWS::SNS::Subscription")["Properties"]
    assert sub["Protocol"] == "sqs" and sub["RawMessageDelivery"] is True
    assert sub["TopicArn"] == {"Ref": "StartTopic"} and sub["Endpoint"] == {"Fn::GetAtt": ["StartQueue", "Arn"]}
    allow = [
        s
        for p in env_synth.resources("Messaging", "AWS::SQS::QueuePolicy").values()
        for s in statements(p)
        if s["Effect"] == "Allow"
    ]
    assert allow == [
        {
            "Action": "sqs:SendMessage",
            "Effect": "Allow",
            "Sid": "AllowStartTopic",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Resource": {"Fn::GetAtt": ["StartQueue", "Arn"]},
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": "StartTopic"}}},
        }
    ]


def test_queues_and_key_are_retained_only_where_configured(dev, prod):
    for name in ("MessagingKey", "StartQueue", "StartDeadLetterQueue"):
        assert dev.templates["Messaging"]["Resources"][name]["DeletionPolicy"] == "Delete"
        assert prod.templates["Messaging"]["Resources"][name]["DeletionPolicy"] == "Retain"
