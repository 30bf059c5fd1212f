"""Trigger stack: the Lambda's runtime settings, schedule, URL, self-heal subscription and IAM scope."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE
from stacks.naming import heartbeat_alarm_name

pytestmark = pytest.mark.infra


def function(synth) -> dict:
    return synth.only("Trigger", "AWS::Lambda::Function")["Properties"]


def role_statements(synth) -> list[dict]:
    (policy,) = synth.resources("Trigger", "AWS::IAM::Policy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_python_arm64_with_xray_reserved_concurrency_and_the_handler(env_synth):
    fn = function(env_synth)
    major, minor = (int(p) for p in fn["Runtime"].removeprefix("python").split("."))
    assert (major, minor) >= (3, 12)
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == "functions.trigger.handler.handler"
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["ReservedConcurrentExecutions"] == load_environment(env_synth.env).trigger.reserved_concurrency


def test_powertools_comes_from_its_public_layer_resolved_per_region(env_synth):
    (layer,) = function(env_synth)["Layers"]
    arn = layer["Fn::Sub"]
    assert arn.startswith("arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-")
    assert "-arm64:" in arn and "python312" in arn


def test_explicit_log_group_with_retention(env_synth):
    assert function(env_synth)["LoggingConfig"]["LogGroup"]["Ref"].startswith("TriggerLogGroup")
    group = env_synth.only("Trigger", "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == load_environment(env_synth.env).log_retention_days


def test_environment_follows_the_contract(env_synth):
    env = function(env_synth)["Environment"]["Variables"]
    assert env["ENVIRONMENT"] == env_synth.env
    assert "StartTopic" in env["START_TOPIC_ARN"]["Fn::ImportValue"]
    assert env["POWERTOOLS_SERVICE_NAME"] == TRIGGER_SERVICE
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    assert "Cluster" in env["ECS_CLUSTER_NAME"]["Fn::ImportValue"]
    assert "WorkerService" in env["ECS_SERVICE_NAME"]["Fn::ImportValue"]
    assert env["HEARTBEAT_ALARM_NAME"] == heartbeat_alarm_name(env_synth.env)
    assert env["SCHEDULE_COMMAND"] == "sync_now"  # per-signal mode
    assert not [k for k in env if k.startswith("REDIS_")]


def test_schedule_from_config_with_retries_and_a_dead_letter_queue(env_synth):
    config = load_environment(env_synth.env)
    rule = env_synth.only("Trigger", "AWS::Events::Rule")["Properties"]
    assert rule["ScheduleExpression"] == config.schedule
    (target,) = rule["Targets"]
    assert "Input" not in target  # the rule delivers the plain scheduled event
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == config.trigger.retry_attempts
    dlq_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    dlq = env_synth.templates["Trigger"]["Resources"][dlq_id]
    assert dlq["Type"] == "AWS::SQS::Queue" and "KmsMasterKeyId" in dlq["Properties"]


def test_function_url_requires_iam_auth(env_synth):
    url = env_synth.only("Trigger", "AWS::Lambda::Url")["Properties"]
    assert url["AuthType"] == "AWS_IAM"


def test_self_heal_topic_invokes_the_function(env_synth):
    sub = env_synth.only("Trigger", "AWS::SNS::Subscription")["Properties"]
    assert sub["Protocol"] == "lambda"
    topic_id = sub["TopicArn"]["Ref"]
    topic = env_synth.templates["Trigger"]["Resources"][topic_id]["Properties"]
    assert "MessagingKey" in topic["KmsMasterKeyId"]["Fn::ImportValue"]


def test_iam_is_scoped_to_the_start_topic_the_key_and_the_worker_service(env_synth):
    env = env_synth.env
    scoped = {s["Sid"]: (s["Action"], s["Resource"]) for s in role_statements(env_synth) if "Sid" in s}
    assert scoped == {
        "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"],
                         {"Fn::GetAtt": [function(env_synth)["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}),
        "PublishStartSignal": ("sns:Publish", {"Fn::ImportValue": f"C2C-{env}-Messaging:ExportsOutputRefStartTopic58196473"}),
        "EncryptForStartTopic": (["kms:Decrypt", "kms:GenerateDataKey"],
                                 {"Fn::ImportValue": f"C2C-{env}-Messaging:ExportsOutputFnGetAttMessagingKeyArn9294C07C"}),
        "SelfHealWorkerService": ("ecs:UpdateService",
                                  {"Fn::ImportValue": f"C2C-{env}-SyncService:ExportsOutputRefWorkerService99815FA9E2F46025"}),
    }
    unscoped = [s for s in role_statements(env_synth) if "Sid" not in s]
    assert unscoped == [{"Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
                         "Effect": "Allow", "Resource": "*"}]
    role = env_synth.only("Trigger", "AWS::IAM::Role")["Properties"]
    assert "ManagedPolicyArns" not in role
    assert "VpcConfig" not in function(env_synth)


def test_redis_transport_puts_the_function_in_the_vpc_with_the_secret(stage):
    fn = function(stage)
    assert "TriggerSecurityGroup" in fn["VpcConfig"]["SecurityGroupIds"][0]["Fn::ImportValue"]
    env = fn["Environment"]["Variables"]
    assert env["REDIS_TLS"] == "true" and env["SCHEDULE_COMMAND"] == "start_sync"
    assert "RedisAuthSecret" in env["REDIS_AUTH_SECRET_ARN"]["Fn::ImportValue"]
    assert "PrimaryEndPointAddress" in env["REDIS_HOST"]["Fn::ImportValue"]
    by_sid = {s.get("Sid"): s for s in role_statements(stage)}
    assert by_sid["ReadRedisAuthToken"]["Action"] == "secretsmanager:GetSecretValue"
    assert "RedisAuthSecret" in by_sid["ReadRedisAuthToken"]["Resource"]["Fn::ImportValue"]
    assert "ec2:CreateNetworkInterface" in by_sid["ManageVpcNetworkInterfaces"]["Action"]


def test_code_asset_holds_only_the_trigger_its_contracts_and_non_layer_deps(env_synth):
    assets = json.loads((env_synth.outdir / f"C2C-{env_synth.env}-Trigger.assets.json").read_text())
    (code,) = [f for f in assets["files"].values() if f["source"]["packaging"] == "zip"]
    root = env_synth.outdir / code["source"]["path"]
    assert (root / "functions" / "__init__.py").is_file()
    assert (root / "functions" / "common" / "signal.py").is_file()
    assert (root / "functions" / "trigger").is_dir()
    assert (root / "redis" / "__init__.py").is_file()  # not in the Powertools layer
    top = {p.name for p in root.iterdir()}
    assert not {"pydantic", "aws_lambda_powertools", "boto3"} & top  # provided by layer/runtime
    assert not (root / "functions" / "sync_worker").exists()
    assert not list(root.rglob("__pycache__"))
