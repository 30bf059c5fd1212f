"""Trigger stack: the Lambda's runtime settings, schedule, URL, self-heal subscription and IAM scope."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import load_environment
from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE
from infra.naming import heartbeat_alarm_name
from stacks import trigger as trigger_stack

pytestmark = pytest.mark.infra


def function(synth) -> dict:
    return synth.only("Trigger", "AWS::Lambda::Function")["Properties"]


def role_statements(synth) -> list[dict]:
    (policy,) = synth.resources("Trigger", "AWS::IAM::Policy").values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_python_arm64_with_xray_reserved_concurrency_and_the_handler(env_synth):
    fn = function(env_synth)
    # The Lambda's own Python, the one its bundle is locked for (tests/test_locks.py checks the rest).
    assert fn["Runtime"] == f"python{trigger_stack.PYTHON_VERSION}"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == "functions.trigger.handler.handler"
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["ReservedConcurrentExecutions"] == load_environment(env_synth.env).trigger.reserved_concurrency


def test_no_layers_powertools_is_bundled_at_its_pinned_version(env_synth):
    assert "Layers" not in function(env_synth)


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
        "WriteOwnLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            {"Fn::GetAtt": [function(env_synth)["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]},
        ),
        "PublishStartSignal": (
            "sns:Publish",
            {"Fn::ImportValue": f"C2C-{env}-Messaging:ExportsOutputRefStartTopic58196473"},
        ),
        "EncryptForStartTopic": (
            ["kms:Decrypt", "kms:GenerateDataKey"],
            {"Fn::ImportValue": f"C2C-{env}-Messaging:ExportsOutputFnGetAttMessagingKeyArn9294C07C"},
        ),
        "SelfHealWorkerService": (
            "ecs:UpdateService",
            {"Fn::ImportValue": f"C2C-{env}-SyncService:ExportsOutputRefWorkerService99815FA9E2F46025"},
        ),
    }
    unscoped = [s for s in role_statements(env_synth) if "Sid" not in s]
    queue = next(k for k in env_synth.templates["Trigger"]["Resources"] if k.startswith("AsyncFailureQueue"))
    assert unscoped == [
        # CDK's grant for the function's dead-letter queue: this queue only.
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [queue, "Arn"]}},
        {"Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "Effect": "Allow", "Resource": "*"},
    ]
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


def code_root(synth) -> Path:
    assets = json.loads((synth.outdir / f"C2C-{synth.env}-Trigger.assets.json").read_text())
    (code,) = [f for f in assets["files"].values() if f["source"]["packaging"] == "zip"]
    return synth.outdir / code["source"]["path"]


def test_code_asset_holds_the_trigger_its_contracts_and_the_pinned_dependencies(env_synth):
    root = code_root(env_synth)
    assert (root / "functions" / "__init__.py").is_file()
    assert (root / "functions" / "common" / "signal.py").is_file()
    assert (root / "functions" / "trigger" / "handler.py").is_file()
    assert not (root / "functions" / "sync_worker").exists()
    assert not list(root.rglob("__pycache__"))
    # Exactly the versions functions/trigger/requirements.lock pins (what a layer could not promise).
    versions = {
        d.name.removesuffix(".dist-info").rsplit("-", 1)[0]: d.name.removesuffix(".dist-info").rsplit("-", 1)[1]
        for d in root.glob("*.dist-info")
    }
    assert (versions["aws_lambda_powertools"], versions["pydantic"], versions["redis"]) == ("3.37.0", "2.14.4", "8.1.0")
    assert "aws_xray_sdk" in versions  # Powertools' tracer extra
    # Compiled parts are Lambda's: CPython 3.12 (its runtime) on ARM64.
    (core,) = (root / "pydantic_core").glob("_pydantic_core.*.so")
    assert core.name.endswith(".cpython-312-aarch64-linux-gnu.so")
    # The runtime's SDK and its dependencies are not bundled (they would shadow the runtime's).
    top = {p.name for p in root.iterdir()}
    assert not {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3", "bin"} & top
    assert not [
        n for n in top if n.startswith(("boto", "s3transfer", "jmespath", "python_dateutil", "six-", "urllib3"))
    ]


def test_code_asset_stays_well_under_lambda_size_limits(env_synth):
    root = code_root(env_synth)
    unzipped = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert unzipped < 50 * 2**20  # Lambda allows 250 MB unzipped (and 50 MB zipped, which is smaller)


def test_async_failures_end_in_an_encrypted_queue_with_an_alarm_and_a_maximum_age(env_synth):
    resources = env_synth.templates["Trigger"]["Resources"]
    (function_id,) = [
        k for k, r in resources.items() if k.startswith("TriggerFunction") and r["Type"] == "AWS::Lambda::Function"
    ]
    function = resources[function_id]["Properties"]
    queue_id = function["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
    assert queue_id.startswith("AsyncFailureQueue")
    assert "MessagingKey" in json.dumps(resources[queue_id]["Properties"]["KmsMasterKeyId"])
    assert "MessagingKey" in json.dumps(function["KmsKeyArn"])  # environment encrypted with the env's key
    (invoke_config,) = env_synth.resources("Trigger", "AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumEventAgeInSeconds"] == 600
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 2
    (rule,) = env_synth.resources("Trigger", "AWS::Events::Rule").values()
    assert rule["Properties"]["Targets"][0]["RetryPolicy"]["MaximumEventAgeInSeconds"] == 600
    alarm = next(
        r["Properties"]
        for r in env_synth.templates["Monitoring"]["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["AlarmName"] == f"C2C-{env_synth.env}-TriggerAsyncFailures"
    )
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1
    assert "raised" in alarm["AlarmDescription"]
