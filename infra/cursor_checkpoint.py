"""The DynamoDB table the worker checkpoints its cursors to (functions/sync_worker/checkpoint.py).

On demand (a few small writes per cycle: cents a month, where provisioned capacity would be paid
idle), encrypted at rest with the environment's customer managed key (the one the queues, logs and
secrets use: one key policy to audit), point-in-time recovery on (the table is a few KB: the backup
costs next to nothing and undoes a bad write). The worker gets exactly the three calls it makes on
this one table, nothing table-wide (no Scan, no DeleteItem, no batch calls), and the key only
through DynamoDB (`kms:ViaService`).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

#: Partition and sort key; the worker writes `SHARDS` items per environment (see checkpoint.py).
PARTITION_KEY = "env"
SORT_KEY = "shard"
#: The container variable that names the table (functions/sync_worker/settings.py: checkpoint_table).
CHECKPOINT_TABLE_ENV = "C2C_CHECKPOINT_TABLE"
WORKER_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
#: What DynamoDB asks of the caller's key permissions to read and write a table under a customer key.
KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


class CursorCheckpointTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, removal_policy: cdk.RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )

    def grant_worker(self, role: iam.IGrantable) -> None:
        role.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(sid="CursorCheckpoint", actions=WORKER_ACTIONS, resources=[self.table.table_arn])
        )
        role.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CursorCheckpointKey",
                actions=KEY_ACTIONS,
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{cdk.Aws.REGION}.amazonaws.com"}},
            )
        )
