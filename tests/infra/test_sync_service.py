"""Sync service stack: Fargate ARM64 worker, private and without public IP, secrets via ecs.Secret,
one-task-at-a-time deployments, a task role that can only consume the start queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from config import load_environment
from infra.naming import REPO_ROOT
from stacks.sync_service import HEALTH_CHECK_COMMAND, STATUS_FILE

pytestmark = pytest.mark.infra


def container(synth) -> dict:
    (definition,) = synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]["ContainerDefinitions"]
    return definition


def env_vars(synth) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container(synth)["Environment"]}


def test_container_insights_follows_config(env_synth):
    settings = env_synth.only("SyncService", "AWS::ECS::Cluster")["Properties"]["ClusterSettings"]
    expected = "enabled" if env_synth.config.worker.container_insights else "disabled"
    assert {"Name": "containerInsights", "Value": expected} in settings


def test_dev_runs_the_worker_on_fargate_spot_and_prod_on_demand(dev, prod):
    spot = dev.only("SyncService", "AWS::ECS::Service")["Properties"]
    assert spot["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
    assert "LaunchType" not in spot
    (association,) = dev.resources("SyncService", "AWS::ECS::ClusterCapacityProviderAssociations").values()
    assert "FARGATE_SPOT" in association["Properties"]["CapacityProviders"]
    on_demand = prod.only("SyncService", "AWS::ECS::Service")["Properties"]
    assert on_demand["LaunchType"] == "FARGATE" and "CapacityProviderStrategy" not in on_demand
    assert prod.resources("SyncService", "AWS::ECS::ClusterCapacityProviderAssociations") == {}


def test_worker_root_filesystem_is_read_only_with_one_scratch_volume(env_synth):
    task = env_synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]
    (definition,) = task["ContainerDefinitions"]
    assert definition["ReadonlyRootFilesystem"] is True
    assert definition["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "scratch"}]
    assert task["Volumes"] == [{"Name": "scratch"}]
    status_file = {e["Name"]: e["Value"] for e in definition["Environment"]}["C2C_STATUS_FILE"]
    assert status_file.startswith("/tmp/")
    dockerfile = (REPO_ROOT / "functions" / "sync_worker" / "Dockerfile").read_text()
    assert 'VOLUME ["/tmp"]' in dockerfile


def test_fargate_arm64_task_sized_from_config(env_synth):
    config = load_environment(env_synth.env)
    task = env_synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (task["Cpu"], task["Memory"]) == (str(config.worker.cpu), str(config.worker.memory_mib))


def test_image_is_built_from_functions_with_the_worker_dockerfile_for_arm64(env_synth):
    assets = json.loads((env_synth.outdir / f"C2C-{env_synth.env}-SyncService.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "sync_worker/Dockerfile"
    assert image["source"]["platform"] == "linux/arm64"
    context = env_synth.outdir / image["source"]["directory"]
    assert (context / "sync_worker" / "Dockerfile").is_file() and (context / "common").is_dir()
    assert (context / "sync_worker" / "requirements.lock").is_file()  # what the Dockerfile installs
    assert not (context / "trigger").exists()
    assert not list(context.rglob("__pycache__"))


def test_service_runs_in_private_subnets_without_public_ip(env_synth):
    service = env_synth.only("SyncService", "AWS::ECS::Service")["Properties"]
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert all("privateSubnet" in s["Fn::ImportValue"] for s in network["Subnets"])
    assert "WorkerSecurityGroup" in network["SecurityGroups"][0]["Fn::ImportValue"]
    assert service["DesiredCount"] == load_environment(env_synth.env).worker.desired_count


def test_deployments_never_overlap_two_tasks_and_roll_back_on_failure(env_synth):
    deployment = env_synth.only("SyncService", "AWS::ECS::Service")["Properties"]["DeploymentConfiguration"]
    assert deployment["MaximumPercent"] == 100 and deployment["MinimumHealthyPercent"] == 0
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_health_check_is_the_contract_command(env_synth):
    check = container(env_synth)["HealthCheck"]
    assert check["Command"] == HEALTH_CHECK_COMMAND == ["CMD", "python", "-m", "functions.sync_worker", "health"]


def test_health_check_gives_a_replacement_task_time_for_its_first_connect(env_synth):
    from functions.sync_worker.settings import WorkerSettings

    defaults = {
        name: WorkerSettings.model_fields[name].default
        for name in ("lease_ttl_s", "mqtt_reconnect_max_s", "heartbeat_interval_s")
    }
    check = container(env_synth)["HealthCheck"]
    # A predecessor killed without releasing the lease holds it for its TTL; then the MQTT connect
    # (10 s initial wait, backoff capped at the reconnect maximum) and the first heartbeat.
    first_connect_s = defaults["lease_ttl_s"] + 10 + defaults["mqtt_reconnect_max_s"] + defaults["heartbeat_interval_s"]
    assert first_connect_s < check["StartPeriod"] <= 300  # 300 s: the ECS maximum
    assert (check["Interval"], check["Retries"], check["Timeout"]) == (30, 3, 10)


def test_worker_and_health_check_share_a_writable_status_file(env_synth):
    # The image runs as uid 10001 with WORKDIR /app owned by root and a read-only root filesystem:
    # the file lives on the scratch volume mounted at /tmp.
    assert env_vars(env_synth)["C2C_STATUS_FILE"] == STATUS_FILE and STATUS_FILE.startswith("/tmp/")
    dockerfile = (REPO_ROOT / "functions" / "sync_worker" / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and "WORKDIR /app" in dockerfile


def _health(status_file, status: dict | None) -> subprocess.CompletedProcess:
    if status is not None:
        status_file.write_text(json.dumps(status))
    env = {**os.environ, "C2C_STATUS_FILE": str(status_file)}
    return subprocess.run(
        [sys.executable, "-m", "functions.sync_worker", "health"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_command_reads_c2c_status_file_and_fails_a_standby(tmp_path):
    # The stack only sets C2C_STATUS_FILE; this proves the container's command honours it.
    status_file = tmp_path / "status.json"
    missing = _health(status_file, None)
    assert missing.returncode == 1 and str(status_file) in missing.stdout
    now = time.time()
    holder = {"pid": os.getpid(), "at": now, "mqtt_connected": True, "lease_held": True, "heartbeat_at": now}
    assert _health(status_file, holder).returncode == 0
    standby = _health(status_file, {**holder, "lease_held": False})
    assert standby.returncode == 1 and "standing by" in standby.stdout


#: The platform secrets each variant's worker receives (env var -> secret name), written out here
#: rather than recomputed, so a wiring change shows up as a test failure.
PLATFORM_SECRETS = {
    "dev": {"C2C_MQTT_PASSWORD": "c2c-sync/dev/mqtt-password"},
    "prod": {"C2C_AZURE_SAS_KEY": "c2c-sync/prod/azure-device-policy-key"},
    "stage": {"C2C_AWS_IOT_CERT_PEM": "c2c-sync/stage/cert", "C2C_AWS_IOT_KEY_PEM": "c2c-sync/stage/key"},
    "edge": {
        "C2C_MQTT_PASSWORD": "c2c-sync/edge/mqtt-password",
        "C2C_MQTT_CERT_PEM": "c2c-sync/edge/mqtt-cert",
        "C2C_MQTT_KEY_PEM": "c2c-sync/edge/mqtt-key",
    },
    "hub": {"C2C_AZURE_CONNECTION_STRING": "c2c-sync/hub/azure-connection-string"},
}
#: The platform-profile variables (plain values) each variant's worker receives.
PLATFORM_ENV = {
    "dev": {
        "C2C_PLATFORM_PROFILE": "generic",
        "C2C_MQTT_IDENTITY_MODE": "gateway",
        "C2C_MQTT_USERNAME": "c2c-sync-dev",
    },
    "prod": {
        "C2C_PLATFORM_PROFILE": "azure_iot_hub",
        "C2C_AZURE_IDENTITY_MODE": "per-device",
        "C2C_AZURE_DEVICE_ID_TEMPLATE": "ess-{station_id}",
        "C2C_MQTT_MAX_CONNECTIONS": "500",
        "C2C_AZURE_POLICY_NAME": "device",
        "C2C_AZURE_TOKEN_TTL_S": "3600",
        "C2C_AZURE_API_VERSION": "2021-04-12",
    },
    "stage": {
        "C2C_PLATFORM_PROFILE": "aws_iot_core",
        "C2C_AWS_IOT_IDENTITY_MODE": "per-device",
        "C2C_AWS_IOT_THING_NAME_TEMPLATE": "ess-{station_id}",
        "C2C_MQTT_MAX_CONNECTIONS": "50",
        "C2C_AWS_IOT_TOPIC": "dt/c2c/{env}/{identity}/telemetry",
        "C2C_AWS_IOT_PROTOCOL": "5",
    },
    "edge": {
        "C2C_PLATFORM_PROFILE": "generic",
        "C2C_MQTT_IDENTITY_MODE": "per-device",
        "C2C_MQTT_CLIENT_ID_TEMPLATE": "c2c-{station_id}",
        "C2C_MQTT_USERNAME": "c2c-edge",
        "C2C_MQTT_PROTOCOL": "5",
        "C2C_MQTT_STATUS_TOPIC": "",
    },
    "hub": {
        "C2C_PLATFORM_PROFILE": "azure_iot_hub",
        "C2C_AZURE_IDENTITY_MODE": "gateway",
        "C2C_AZURE_TOKEN_TTL_S": "900",
    },
}
#: Shared by every profile (always set) and so not part of PLATFORM_ENV.
SHARED_MQTT = {"C2C_MQTT_URL", "C2C_MQTT_CLIENT_ID"}
SECRET_WORDS = ("PASSWORD", "API_KEY", "SAS_KEY", "KEY_PEM", "CERT_PEM", "CONNECTION_STRING", "DEVICE_KEYS")


def test_secrets_are_injected_by_name_never_plain(profile_synth):
    config = profile_synth.config
    secrets = {s["Name"]: s["ValueFrom"] for s in container(profile_synth)["Secrets"]}
    assert set(secrets) == {"C2C_REDIS_PASSWORD", "C2C_SOURCE_API_KEY", *PLATFORM_SECRETS[profile_synth.env]}
    assert "RedisAuthSecret" in secrets["C2C_REDIS_PASSWORD"]["Fn::ImportValue"]
    named = {"C2C_SOURCE_API_KEY": config.source.api_key_secret, **PLATFORM_SECRETS[profile_synth.env]}
    for env_var, name in named.items():
        # arn:<partition>:secretsmanager:<region>:<account>:secret:<name> -- by name, never a value
        assert f':secret:{name}"' in json.dumps(secrets[env_var]), env_var
    plain = env_vars(profile_synth)
    assert not [n for n in plain if any(w in n for w in SECRET_WORDS)]


def test_platform_profile_settings_reach_the_worker_as_plain_values(profile_synth):
    env = env_vars(profile_synth)
    platform = {
        k: v
        for k, v in env.items()
        if k.startswith(("C2C_PLATFORM_", "C2C_AZURE_", "C2C_AWS_IOT_", "C2C_MQTT_")) and k not in SHARED_MQTT
    }
    assert platform == PLATFORM_ENV[profile_synth.env]
    assert env["C2C_MQTT_URL"] == profile_synth.config.platform.endpoint


def test_every_platform_variable_is_one_the_worker_reads(profile_synth):
    """Names only (values are the worker's business): each C2C_* the stack sets is a field of the
    worker's settings (C2C_*, C2C_MQTT_*) or of its profile's (C2C_AZURE_*, C2C_AWS_IOT_*)."""
    from pydantic_settings import BaseSettings

    from functions.sync_worker.settings import WorkerSettings
    from functions.sync_worker.uplink.profiles.settings import AwsIotCoreSettings, AzureIotHubSettings

    readers: list[tuple[str, type[BaseSettings]]] = [
        ("C2C_AZURE_", AzureIotHubSettings),
        ("C2C_AWS_IOT_", AwsIotCoreSettings),
        ("C2C_", WorkerSettings),
    ]
    names = {*env_vars(profile_synth), *(s["Name"] for s in container(profile_synth)["Secrets"])}
    unread = []
    for name in sorted(n for n in names if n.startswith("C2C_")):
        prefix, model = next((p, m) for p, m in readers if name.startswith(p))
        if name.removeprefix(prefix).lower() not in model.model_fields:
            unread.append(name)
    assert unread == []


def test_each_platform_secret_is_granted_and_acknowledged_by_its_exact_name(profile_synth):
    names = [profile_synth.config.source.api_key_secret, *PLATFORM_SECRETS[profile_synth.env].values()]
    statements = [
        s
        for p in profile_synth.resources("SyncService", "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]
    (statement,) = statements
    granted = {
        json.dumps(r).split(":secret:")[1].split('"')[0] for r in statement["Resource"] if ":secret:" in json.dumps(r)
    }
    assert granted == {f"{n}-??????" for n in names}
    assert len(statement["Resource"]) == len(names) + 1  # + the Redis AUTH secret (an exact ARN)
    acknowledged = {
        rule["id"]
        for r in profile_synth.templates["SyncService"]["Resources"].values()
        for rule in r.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        if rule["id"].startswith("AwsSolutions-IAM5[Resource::arn:")
    }
    prefix = "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
    assert acknowledged == {f"{prefix}{n}-??????]" for n in names}


def test_worker_environment_follows_the_contract(env_synth):
    config = load_environment(env_synth.env)
    env = env_vars(env_synth)
    assert env["C2C_ENV"] == config.name and env["C2C_MODE"] == config.worker.mode.value
    assert env["C2C_MQTT_URL"] == config.platform.endpoint
    assert env["C2C_MQTT_CLIENT_ID"] == config.platform.client_id
    assert env["C2C_PLATFORM_PROFILE"] == config.platform.profile.value
    assert env["C2C_SOURCE_CONFIG"] == config.source.vendor
    assert env["POWERTOOLS_SERVICE_NAME"] == "sync-worker"
    assert "StartQueue" in env["C2C_SIGNAL_URL"]["Fn::ImportValue"]
    assert env["C2C_REDIS_URL"]["Fn::Join"][1][0] == "rediss://"


def test_logs_go_to_a_group_with_retention(env_synth):
    logging = container(env_synth)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    group = env_synth.only("SyncService", "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == load_environment(env_synth.env).log_retention_days


def test_task_role_can_only_consume_the_start_queue_give_signals_back_and_checkpoint_cursors(env_synth):
    task = env_synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]
    task_role = task["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [
        p["Properties"]
        for p in env_synth.resources("SyncService", "AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": task_role}]
    ]
    (policy,) = policies
    statements = policy["PolicyDocument"]["Statement"]
    table = env_synth.only("SyncService", "AWS::DynamoDB::Table")
    table_id = next(k for k, v in env_synth.resources("SyncService", "AWS::DynamoDB::Table").items() if v is table)
    checkpoint = [s for s in statements if s.get("Sid", "").startswith("CursorCheckpoint")]
    assert checkpoint[0] == {
        "Sid": "CursorCheckpoint",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
        "Resource": {"Fn::GetAtt": [table_id, "Arn"]},
    }
    # The key only through DynamoDB.
    assert checkpoint[1]["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    }
    simplified = [
        (s["Effect"], s["Action"], s["Resource"]["Fn::ImportValue"]) for s in statements if s not in checkpoint
    ]
    assert simplified == [
        (
            "Allow",
            ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:SendMessage"],
            f"C2C-{env_synth.env}-Messaging:ExportsOutputFnGetAttStartQueueArnFC2B5129",
        ),
        (
            "Allow",
            ["kms:Decrypt", "kms:GenerateDataKey"],
            f"C2C-{env_synth.env}-Messaging:ExportsOutputFnGetAttMessagingKeyArn9294C07C",
        ),
    ]
    role = env_synth.templates["SyncService"]["Resources"][task_role]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def test_execution_role_reads_exactly_the_worker_secrets(env_synth):
    config = load_environment(env_synth.env)
    statements = [
        s
        for p in env_synth.resources("SyncService", "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]
    (statement,) = statements
    text = json.dumps(statement["Resource"])
    assert len(statement["Resource"]) == 3
    assert f":secret:{config.source.api_key_secret}-??????" in text and "RedisAuthSecret" in text


def test_redis_signal_transport_drops_the_queue_grant(stage):
    env = env_vars(stage)
    assert env["C2C_SIGNAL_URL"] == "redis" and env["C2C_MODE"] == "continuous"
    assert env["C2C_STATIONS"] == "st-1,st-2"
    assert "sqs:" not in json.dumps(stage.templates["SyncService"])


def test_the_cursor_checkpoint_table_is_on_demand_encrypted_recoverable_and_named_to_the_worker(env_synth):
    config = load_environment(env_synth.env)
    (table_id, table) = next(iter(env_synth.resources("SyncService", "AWS::DynamoDB::Table").items()))
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    sse = props["SSESpecification"]
    assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
    assert sse["KMSMasterKeyId"] == {
        "Fn::ImportValue": f"C2C-{env_synth.env}-Messaging:ExportsOutputFnGetAttMessagingKeyArn9294C07C"
    }
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["env", "shard"]
    assert table["DeletionPolicy"] == ("Retain" if config.retain_data else "Delete")
    assert env_vars(env_synth)["C2C_CHECKPOINT_TABLE"] == {"Ref": table_id}
