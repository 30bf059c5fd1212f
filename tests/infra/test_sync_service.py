"""Sync service stack: Fargate ARM64 worker, private and without public IP, secrets via ecs.Secret,
one-task-at-a-time deployments, a task role that can only consume the start queue."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from stacks.sync_service import HEALTH_CHECK_COMMAND

pytestmark = pytest.mark.infra


def container(synth) -> dict:
    (definition,) = synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]["ContainerDefinitions"]
    return definition


def env_vars(synth) -> dict[str, object]:
    return {e["Name"]: e["Value"] for e in container(synth)["Environment"]}


def test_cluster_has_container_insights(env_synth):
    settings = env_synth.only("SyncService", "AWS::ECS::Cluster")["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


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


def test_secrets_are_injected_never_plain(env_synth):
    config = load_environment(env_synth.env)
    secrets = {s["Name"]: s["ValueFrom"] for s in container(env_synth)["Secrets"]}
    expected = {"C2C_REDIS_PASSWORD", "C2C_SOURCE_API_KEY",
                "C2C_MQTT_PASSWORD" if env_synth.env == "dev" else "C2C_AZURE_SAS_KEY"}
    assert set(secrets) == expected
    assert "RedisAuthSecret" in secrets["C2C_REDIS_PASSWORD"]["Fn::ImportValue"]
    assert json.dumps(secrets["C2C_SOURCE_API_KEY"]).endswith(f':secret:{config.source.api_key_secret}"]]}}')
    plain = env_vars(env_synth)
    assert not [n for n in plain if any(w in n for w in ("PASSWORD", "API_KEY", "SAS_KEY", "KEY_PEM"))]


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


def test_task_role_can_only_consume_the_start_queue(env_synth):
    task = env_synth.only("SyncService", "AWS::ECS::TaskDefinition")["Properties"]
    task_role = task["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [p["Properties"] for p in env_synth.resources("SyncService", "AWS::IAM::Policy").values()
                if p["Properties"]["Roles"] == [{"Ref": task_role}]]
    (policy,) = policies
    simplified = [(s["Effect"], s["Action"], s["Resource"]["Fn::ImportValue"]) for s in
                  policy["PolicyDocument"]["Statement"]]
    assert simplified == [
        ("Allow", ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
         f"C2C-{env_synth.env}-Messaging:ExportsOutputFnGetAttStartQueueArnFC2B5129"),
        ("Allow", "kms:Decrypt", f"C2C-{env_synth.env}-Messaging:ExportsOutputFnGetAttMessagingKeyArn9294C07C"),
    ]
    role = env_synth.templates["SyncService"]["Resources"][task_role]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def test_execution_role_reads_exactly_the_worker_secrets(env_synth):
    config = load_environment(env_synth.env)
    statements = [s for p in env_synth.resources("SyncService", "AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if "secretsmanager:GetSecretValue" in s["Action"]]
    (statement,) = statements
    text = json.dumps(statement["Resource"])
    assert len(statement["Resource"]) == 3
    assert f":secret:{config.source.api_key_secret}-??????" in text and "RedisAuthSecret" in text


def test_redis_signal_transport_drops_the_queue_grant(stage):
    env = env_vars(stage)
    assert env["C2C_SIGNAL_URL"] == "redis" and env["C2C_MODE"] == "continuous"
    assert env["C2C_STATIONS"] == "st-1,st-2"
    assert "sqs:" not in json.dumps(stage.templates["SyncService"])
    secrets = {s["Name"] for s in container(stage)["Secrets"]}
    assert {"C2C_AWS_IOT_CERT_PEM", "C2C_AWS_IOT_KEY_PEM"} <= secrets
