"""Trigger: the small Lambda that turns a schedule tick, an HTTPS call or an alarm into a start signal.

Its code sits in functions/trigger/; this stack deploys it with an explicit log group, X-Ray,
reserved concurrency, an EventBridge schedule (retries + DLQ), an IAM-authenticated function URL
and the self-heal topic the heartbeat-stale alarm publishes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE
from infra.checkov import skip_check
from infra.lambda_bundling import RUNTIME_PROVIDED, LocalPythonBundling
from infra.logical_ids import cfn_resource
from infra.nag import acknowledge
from infra.naming import BUILD_CACHE_DIR, FUNCTIONS_DIR
from infra.stack_options import StackOptions

#: The Lambda's Python (LAMBDA_PYTHON_VERSION in the Makefile, which locks the bundle for it): 3.12
#: on Amazon Linux 2023, not the tests' 3.11, because Lambda's python3.11 runs on Amazon Linux 2,
#: listed for deprecation (function creation blocked afterwards) in 2026-2027.
PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
HANDLER = "functions.trigger.handler.handler"
#: The wheels bundled into the asset: CPython PYTHON_VERSION on Lambda's ARM64 (Graviton) hosts.
PIP_PLATFORM = "manylinux2014_aarch64"
#: The function's runtime requirements (requirements.txt: what we ask for) locked with their whole
#: dependency closure and hashes for CPython PYTHON_VERSION on ARM64 (requirements.lock, `make
#: lock`), all bundled (Powertools and pydantic included: no Powertools layer, whose
#: version-to-release mapping cannot be checked at synth, so exactly the locked files run); only
#: RUNTIME_PROVIDED distributions are left to the Lambda runtime.
REQUIREMENTS_LOCK = FUNCTIONS_DIR / "trigger" / "requirements.lock"
#: What of functions/ goes into the Lambda (the worker's code and image do not).
CODE_PARTS = ("__init__.py", "common", "trigger")
#: Glob excludes for the asset's source hash: everything but CODE_PARTS (so worker edits do not
#: change the Lambda's asset) and caches.
ASSET_EXCLUDES = [
    "*",
    "!__init__.py",
    "!common",
    "!common/**",
    "!trigger",
    "!trigger/**",
    "**/__pycache__",
    "**/*.pyc",
    "**/tests",
]


#: The oldest an asynchronous event (schedule tick, self-heal alarm) may be when the function runs
#: it: a start signal from a tick 10 minutes ago is superseded by newer ticks, never sent hours late.
MAX_EVENT_AGE = cdk.Duration.minutes(10)
#: Lambda's own retries of an asynchronous invocation that raised, before it is dead-lettered.
ASYNC_RETRY_ATTEMPTS = 2


@dataclass(frozen=True)
class RedisPublish:
    """Where the trigger also PUBLISHes signals when the signal transport is Redis."""

    host: str
    port: str
    auth_secret: secretsmanager.ISecret
    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup


def trigger_code() -> lambda_.Code:
    """The Lambda asset: functions/{__init__.py,common,trigger} + every pinned dependency but what
    the runtime provides, built without Docker."""
    bundler = LocalPythonBundling(
        source_root=FUNCTIONS_DIR,
        package_name="functions",
        packages=CODE_PARTS,
        requirements_lock=REQUIREMENTS_LOCK,
        python_version=PYTHON_VERSION,
        pip_platform=PIP_PLATFORM,
        cache_dir=BUILD_CACHE_DIR,
        exclude_distributions=RUNTIME_PROVIDED,
    )
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        exclude=ASSET_EXCLUDES,
        bundling=cdk.BundlingOptions(
            # Only used if local bundling declined, which it never does (it raises instead).
            image=RUNTIME.bundling_image,
            local=bundler,
        ),
    )


class TriggerStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        schedule_expression: str,
        schedule_command: str,
        retry_attempts: int,
        reserved_concurrency: int,
        log_retention: logs.RetentionDays,
        start_topic: sns.ITopic,
        key: kms.IKey,
        cluster: ecs.ICluster,
        service: ecs.BaseService,
        heartbeat_alarm_name: str,
        redis: RedisPublish | None,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)

        log_group = logs.LogGroup(
            self,
            "TriggerLogGroup",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            encryption_key=key,
        )
        role = iam.Role(
            self,
            "TriggerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"c2c-sync {env_name} trigger Lambda",
        )
        # Its own log group only (instead of the AWSLambdaBasicExecutionRole managed policy).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(sid="PublishStartSignal", actions=["sns:Publish"], resources=[start_topic.topic_arn])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EncryptForStartTopic",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[key.key_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SelfHealWorkerService", actions=["ecs:UpdateService"], resources=[service.service_arn]
            )
        )

        environment = {
            "ENVIRONMENT": env_name,
            "START_TOPIC_ARN": start_topic.topic_arn,
            "POWERTOOLS_SERVICE_NAME": TRIGGER_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "ECS_CLUSTER_NAME": cluster.cluster_name,
            "ECS_SERVICE_NAME": service.service_name,
            "HEARTBEAT_ALARM_NAME": heartbeat_alarm_name,
            "SCHEDULE_COMMAND": schedule_command,
        }
        # In the VPC only to reach Redis; otherwise a plain Lambda (None: not set).
        vpc: ec2.IVpc | None = None
        vpc_subnets: ec2.SubnetSelection | None = None
        security_groups: list[ec2.ISecurityGroup] | None = None
        if redis is not None:
            environment.update(
                REDIS_HOST=redis.host,
                REDIS_PORT=redis.port,
                REDIS_TLS="true",
                REDIS_AUTH_SECRET_ARN=redis.auth_secret.secret_arn,
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadRedisAuthToken",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[redis.auth_secret.secret_arn],
                )
            )
            # What AWSLambdaVPCAccessExecutionRole grants, inline: the function's own role is ours.
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ManageVpcNetworkInterfaces",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
            vpc = redis.vpc
            vpc_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
            security_groups = [redis.security_group]

        # Asynchronous invocations (EventBridge schedule, the self-heal SNS topic) that raised in
        # the function on every attempt, or outlived MAX_EVENT_AGE in Lambda's queue, end here.
        self.async_failure_queue = sqs.Queue(
            self,
            "AsyncFailureQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(
            self.async_failure_queue,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter queue: the trigger function's asynchronous-failure DLQ",
        )
        self.function = lambda_.Function(
            self,
            "TriggerFunction",
            description=f"c2c-sync {env_name}: turns schedule/HTTPS/alarm events into start signals",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=trigger_code(),
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=cdk.Duration.seconds(30),
            memory_size=256,
            environment=environment,
            environment_encryption=key,
            dead_letter_queue=self.async_failure_queue,
            max_event_age=MAX_EVENT_AGE,
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
        )
        if redis is None:
            skip_check(
                cfn_resource(self.function),
                "CKV_AWS_117",
                "With SQS signals the trigger calls only AWS APIs (SNS, ECS, CloudWatch): outside a VPC "
                "it needs no NAT; with Redis signals (signal_transport: redis) it runs in the VPC",
            )

        self.function_url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)

        # EventBridge's own DLQ: ticks it could not hand to Lambda at all (invoke throttled or refused
        # past the target's retries, permission missing). Once Lambda accepted a tick, an exception
        # inside the function is an asynchronous failure and lands in async_failure_queue instead.
        self.schedule_dead_letter_queue = sqs.Queue(
            self,
            "ScheduleDeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(
            self.schedule_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter queue: the EventBridge schedule target's DLQ (events "
            "EventBridge could not hand to Lambda at all, not exceptions inside the function)",
        )
        self.schedule_rule = events.Rule(
            self,
            "ScheduleRule",
            description=f"c2c-sync {env_name}: start signal schedule",
            schedule=events.Schedule.expression(schedule_expression),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    retry_attempts=retry_attempts,
                    max_event_age=MAX_EVENT_AGE,
                    dead_letter_queue=self.schedule_dead_letter_queue,
                )
            ],
        )

        # The heartbeat-stale alarm publishes here; the trigger then sends a start signal and
        # forces a fresh deployment of the worker service.
        self.self_heal_topic = sns.Topic(
            self,
            "SelfHealTopic",
            display_name=f"c2c-sync {env_name} self-heal",
            master_key=key,
            enforce_ssl=True,
        )
        self.self_heal_topic.add_subscription(subs.LambdaSubscription(self.function))

        if redis is not None:
            skip_check(
                cfn_resource(role.node.find_child("DefaultPolicy")),
                "CKV_AWS_111",
                "Lambda VPC networking (ec2:CreateNetworkInterface and friends, what "
                "AWSLambdaVPCAccessExecutionRole grants) cannot be scoped before the ENIs exist",
            )
        # Scoped to the role's policy; tests/infra/test_wildcards.py pins its wildcard statements.
        acknowledge(
            role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords (tracing=ACTIVE) support no resource scoping"
            + (
                "; Lambda VPC networking (ec2:*NetworkInterface*) cannot be scoped before the ENIs exist"
                if redis is not None
                else ""
            ),
            findings=["Resource::*"],
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            f"Python {PYTHON_VERSION} on purpose (Amazon Linux 2023, supported): the version the bundle's "
            f"cp{PYTHON_VERSION.replace('.', '')} wheels are locked for; bump with LAMBDA_PYTHON_VERSION, `make lock`",
        )
        cdk.CfnOutput(
            self,
            "TriggerFunctionUrl",
            value=self.function_url.url,
            description='HTTPS endpoint of the trigger (IAM/SigV4 auth): POST {"command": ...}',
        )
