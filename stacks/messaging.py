"""Messaging: the customer-managed key, the start topic, the start queue and its dead-letter queue.

A customer-managed key (not the AWS-managed aws/sns or aws/sqs key) because SNS cannot use an
AWS-managed key to deliver into an encrypted SQS queue: deliveries would be dropped silently.
The key also encrypts the alarm and self-heal topics, the schedule DLQ and every log group of the
environment, so its policy admits the services that write there (CloudWatch alarms, EventBridge,
CloudWatch Logs) for this account only.
"""

from __future__ import annotations

from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.logical_ids import pin_logical_id
from infra.stack_options import StackOptions

#: Receives before a start signal is dead-lettered (a poison signal is rejected on every receive).
MAX_RECEIVE_COUNT = 5
#: Margin above the longest allowed cycle before an unfinished signal becomes visible again.
VISIBILITY_MARGIN_S = 120


def visibility_timeout_for(max_cycle_s: int) -> cdk.Duration:
    return cdk.Duration.seconds(max_cycle_s + VISIBILITY_MARGIN_S)


class MessagingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        max_cycle_s: int,
        removal_policy: cdk.RemovalPolicy,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)

        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/c2c-sync/{env_name}",
            description=f"c2c-sync {env_name}: SNS topics and SQS queues",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            pending_window=cdk.Duration.days(30 if removal_policy == cdk.RemovalPolicy.RETAIN else 7),
        )
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):  # alarms, schedule DLQ
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Allow{service.split('.')[0].capitalize()}ToUseKey",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],  # in a key policy "*" means this key
                    conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
                )
            )

        # CloudWatch Logs encrypts each log group's data with the key, bound to that log group's ARN.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowLogsToUseKey",
                principals=[iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "StartDeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
            removal_policy=removal_policy,
        )
        self.start_queue = sqs.Queue(
            self,
            "StartQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout_for(max_cycle_s),
            retention_period=cdk.Duration.hours(4),
            receive_message_wait_time=cdk.Duration.seconds(20),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
            removal_policy=removal_policy,
        )
        self.start_topic = sns.Topic(
            self,
            "StartTopic",
            display_name=f"c2c-sync {env_name} start signals",
            master_key=self.key,
            enforce_ssl=True,
        )
        # Subscription and grants written out instead of subs.SqsSubscription: that helper adds a
        # key-policy statement conditioned on the topic's ARN, and a topic encrypted with the same
        # key makes key -> topic -> key a circular dependency. The key admits SNS for this account
        # (above); the queue policy admits exactly this topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowSnsToUseKey",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
            )
        )
        self.start_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowStartTopic",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.start_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.start_topic.topic_arn}},
            )
        )
        self.subscription = sns.Subscription(
            self,
            "StartQueueSubscription",
            topic=self.start_topic,
            protocol=sns.SubscriptionProtocol.SQS,
            endpoint=self.start_queue.queue_arn,
            raw_message_delivery=True,
        )

        # Stateful resources keep their logical ids whatever the construct tree becomes.
        for construct, logical_id in (
            (self.key, "MessagingKey"),
            (self.start_queue, "StartQueue"),
            (self.dead_letter_queue, "StartDeadLetterQueue"),
            (self.start_topic, "StartTopic"),
        ):
            pin_logical_id(construct, logical_id)

        cdk.CfnOutput(
            self,
            "StartTopicArn",
            value=self.start_topic.topic_arn,
            description="SNS topic the trigger publishes start signals to",
        )
        cdk.CfnOutput(
            self,
            "StartQueueUrl",
            value=self.start_queue.queue_url,
            description="SQS queue the worker long-polls for start signals",
        )
        cdk.CfnOutput(
            self,
            "DlqUrl",
            value=self.dead_letter_queue.queue_url,
            description="Dead-letter queue of rejected start signals",
        )
