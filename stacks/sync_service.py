"""Sync service: the ECS cluster and the Fargate service running the persistent sync worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.common.telemetry import METRICS_NAMESPACE, WORKER_SERVICE
from infra.checkov import skip_check
from infra.cursor_checkpoint import CHECKPOINT_TABLE_ENV, CursorCheckpointTable
from infra.logical_ids import cfn_resource
from infra.nag import acknowledge
from infra.naming import FUNCTIONS_DIR
from infra.stack_options import StackOptions

#: The container's health check (`health` in functions/sync_worker/cli.py): a separate process that
#: reads the status file the worker rewrites every heartbeat; exit 0 only for the lease holder with MQTT connected and a
#: heartbeat fresher than HEARTBEAT_STALE_AFTER_S (a standby, not holding the lease, is unhealthy).
HEALTH_CHECK_COMMAND = ["CMD", "python", "-m", "functions.sync_worker", "health"]
#: The container's root filesystem is read-only; SCRATCH_DIR is its one writable path: a task
#: volume (Fargate ephemeral storage; Fargate has no tmpfs) that the Dockerfile declares as a
#: VOLUME, so it starts as the image's /tmp (mode 1777, writable for the non-root uid 10001). It
#: holds the status file and the short-lived PEM files the TLS profiles load.
SCRATCH_DIR = "/tmp"
SCRATCH_VOLUME = "scratch"
#: Where the worker writes that status file (C2C_STATUS_FILE, read by both `run` and `health`).
STATUS_FILE = f"{SCRATCH_DIR}/c2c-sync-worker.status.json"
HEALTH_CHECK_INTERVAL_S = 30
HEALTH_CHECK_RETRIES = 3
#: Failed checks do not count until the first success or this long after the container started.
#: Budget for the first connect of a replacement task: a predecessor killed without releasing the
#: Redis lease holds it for up to its TTL (30 s), then the MQTT connect with backoff (reconnect cap
#: 30 s, initial wait 10 s) and the first heartbeat (every 10 s), plus interpreter start, Redis TLS
#: and slack: 120 s. After it, RETRIES x INTERVAL (90 s) of failures more before ECS replaces the task.
HEALTH_CHECK_START_PERIOD_S = 120
#: The worker drains within 30 s of SIGTERM; ECS waits this long before SIGKILL.
STOP_TIMEOUT_S = 45
#: What the worker image build must not see: the trigger's code and local caches.
IMAGE_EXCLUDES = ["trigger", "**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/tests"]


@dataclass(frozen=True)
class SyncServiceProps:
    """Typed inputs of the service, built from the environment's config in infra.environment."""

    env_name: str
    cpu: int
    memory_mib: int
    arm64: bool
    desired_count: int
    #: Plain (non-secret) container environment: C2C_* values (functions/sync_worker/settings.py).
    environment: Mapping[str, str]
    #: Env var name -> NAME of a Secrets Manager secret the operator created.
    named_secrets: Mapping[str, str]
    log_retention: logs.RetentionDays
    #: Whether the cursor checkpoint table outlives the stack (prod keeps its data).
    checkpoint_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY
    #: ECS Container Insights (paid custom metrics); the free AWS/ECS metrics back the alarms.
    container_insights: bool = False
    #: Run the task on the FARGATE_SPOT capacity provider instead of the FARGATE launch type.
    spot: bool = False


class SyncServiceStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: SyncServiceProps,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        start_queue: sqs.IQueue | None,
        key: kms.IKey,
        redis_auth_secret: secretsmanager.ISecret,
        redis_url: str,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED if props.container_insights else ecs.ContainerInsights.DISABLED
            ),
            # Spot needs the Fargate capacity providers associated with the cluster; an on-demand
            # service keeps the plain FARGATE launch type (no association, template unchanged).
            enable_fargate_capacity_providers=props.spot,
        )
        if not props.container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                "Container Insights off by configuration (worker.container_insights): its metrics cost "
                "~$8/month; the WorkerNotRunning alarm on the free AWS/ECS service metrics and the "
                "heartbeat alarm cover a worker that is not running",
            )
            skip_check(
                cfn_resource(self.cluster),
                "CKV_AWS_65",
                "Container Insights off by configuration (worker.container_insights, ~$8/month); the "
                "WorkerNotRunning alarm on the free AWS/ECS metrics covers a stopped worker",
            )
        log_group = logs.LogGroup(
            self,
            "WorkerLogGroup",
            retention=props.log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            encryption_key=key,
        )

        cpu_arch = ecs.CpuArchitecture.ARM64 if props.arm64 else ecs.CpuArchitecture.X86_64
        task_definition = ecs.FargateTaskDefinition(
            self,
            "WorkerTask",
            cpu=props.cpu,
            memory_limit_mib=props.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=cpu_arch, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
        )

        # ecs.Secret values are fetched by the ECS agent with the *execution* role at task start
        # and injected as env vars; they never appear in the template. Secrets the operator
        # creates are referenced by name (the ARN's random suffix is unknown before they exist).
        secrets = {
            env_var: ecs.Secret.from_secrets_manager(
                secretsmanager.Secret.from_secret_name_v2(self, f"Secret{env_var}", secret_name)
            )
            for env_var, secret_name in props.named_secrets.items()
        }
        # The AUTH secret is encrypted with the environment's key (Messaging stack). Referenced by ARN
        # so its grant stays on our execution role: granting through the key would write this role
        # into the key's policy and make Messaging depend on this stack (a cycle).
        auth_secret = secretsmanager.Secret.from_secret_attributes(
            self, "RedisAuthSecretRef", secret_complete_arn=redis_auth_secret.secret_arn
        )
        secrets["C2C_REDIS_PASSWORD"] = ecs.Secret.from_secrets_manager(auth_secret)

        environment = {
            **props.environment,
            "C2C_REDIS_URL": redis_url,
            "C2C_STATUS_FILE": STATUS_FILE,
            "POWERTOOLS_SERVICE_NAME": WORKER_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        if start_queue is not None:
            environment["C2C_SIGNAL_URL"] = start_queue.queue_url
        checkpoint = CursorCheckpointTable(
            self, "CursorCheckpoint", key=key, removal_policy=props.checkpoint_removal_policy
        )
        environment[CHECKPOINT_TABLE_ENV] = checkpoint.table.table_name

        image = ecs.ContainerImage.from_asset(
            str(FUNCTIONS_DIR),
            file="sync_worker/Dockerfile",
            exclude=IMAGE_EXCLUDES,
            platform=ecr_assets.Platform.LINUX_ARM64 if props.arm64 else ecr_assets.Platform.LINUX_AMD64,
        )
        self.container = task_definition.add_container(
            "worker",
            image=image,
            environment=environment,
            secrets=secrets,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=log_group),
            health_check=ecs.HealthCheck(
                command=HEALTH_CHECK_COMMAND,
                interval=cdk.Duration.seconds(HEALTH_CHECK_INTERVAL_S),
                timeout=cdk.Duration.seconds(10),
                retries=HEALTH_CHECK_RETRIES,
                start_period=cdk.Duration.seconds(HEALTH_CHECK_START_PERIOD_S),
            ),
            stop_timeout=cdk.Duration.seconds(STOP_TIMEOUT_S),
            readonly_root_filesystem=True,
        )
        task_definition.add_volume(name=SCRATCH_VOLUME)
        self.container.add_mount_points(
            ecs.MountPoint(container_path=SCRATCH_DIR, source_volume=SCRATCH_VOLUME, read_only=False)
        )

        task_definition.add_to_execution_role_policy(
            iam.PolicyStatement(sid="DecryptRedisAuthSecret", actions=["kms:Decrypt"], resources=[key.key_arn])
        )

        # Task role: consume the start queue and write its cursor checkpoint, nothing more (the
        # worker's other secrets arrive as env vars through the execution role; Redis and MQTT are
        # not AWS APIs). SendMessage: a
        # worker that stops gives its unrun signal back as a fresh copy, so routine deploys do not
        # count toward the signal's maxReceiveCount; encrypting that copy needs the data key.
        if start_queue is not None:
            task_definition.add_to_task_role_policy(
                iam.PolicyStatement(
                    sid="ConsumeStartQueue",
                    actions=[
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:SendMessage",
                    ],
                    resources=[start_queue.queue_arn],
                )
            )
            task_definition.add_to_task_role_policy(
                iam.PolicyStatement(
                    sid="DecryptStartQueue",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                )
            )
        checkpoint.grant_worker(task_definition.task_role)

        self.service = ecs.FargateService(
            self,
            "WorkerService",
            cluster=self.cluster,
            task_definition=task_definition,
            desired_count=props.desired_count,
            assign_public_ip=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # Two tasks must never share an MQTT client id (the broker would evict one for the other,
            # back and forth): with max 100 % ECS may not start the new task before the old one is
            # stopped, and min 0 % lets it stop the old one first. Overlapping would buy nothing
            # anyway: the new task would stand by without the Redis lease, and a standby is
            # unhealthy by the health contract, so the deployment could not go green until the old
            # task left. The cost is a short gap (one drain + start) per deploy; the lease with its
            # fencing token is the second guard should two tasks ever overlap.
            min_healthy_percent=0,
            max_healthy_percent=100,
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            # Spot: one task, all on FARGATE_SPOT. An interruption is a SIGTERM two minutes ahead:
            # the worker finishes or abandons its cycle without moving a cursor past an unacknowledged
            # reading, releases the lease, and ECS places a replacement when capacity allows.
            capacity_provider_strategies=(
                [ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)] if props.spot else None
            ),
        )

        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings (C2C_* endpoints, mode, names) are plain environment variables; every "
            "credential is an ecs.Secret resolved from Secrets Manager at task start",
        )
        # Scoped to the execution role's policy alone; tests/infra/test_wildcards.py pins the one
        # wildcard statement in it, so any other `Resource: *` fails the suite.
        acknowledge(
            task_definition.obtain_execution_role().node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5",
            "The execution role's ecr:GetAuthorizationToken cannot be scoped to a resource (AWS API design)",
            findings=["Resource::*"],
        )
        if props.named_secrets:
            acknowledge(
                task_definition,
                "AwsSolutions-IAM5",
                "Operator-created secrets are referenced by name; their ARN ends in a random 6-character "
                "suffix unknown at synth, so the grant matches exactly that name followed by -??????",
                findings=[
                    f"Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{name}-??????"
                    for name in props.named_secrets.values()
                ],
            )

        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name, description="ECS cluster of the worker")
        cdk.CfnOutput(self, "ServiceName", value=self.service.service_name, description="ECS service of the worker")
