"""Cache: the ElastiCache replication group (Valkey engine) holding the worker's state.

Valkey speaks the Redis OSS protocol the worker uses (redis-py, AUTH, TLS) and its nodes cost about
20 % less than Redis OSS nodes. TLS in transit, encryption at rest, an AUTH token from a generated
secret, a non-default port, isolated subnets, and ingress only from the security groups handed in
(the worker's, and the trigger's when signals travel over Redis).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.logical_ids import pin_logical_id
from infra.nag import acknowledge
from infra.stack_options import StackOptions

ENGINE = "valkey"


class CacheStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        client_security_groups: Sequence[ec2.ISecurityGroup],
        node_type: str,
        replicas: int,
        multi_az: bool,
        engine_version: str,
        port: int,
        log_retention: logs.RetentionDays,
        key: kms.IKey,
        removal_policy: cdk.RemovalPolicy,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)
        self.port = port

        # ElastiCache AUTH tokens: 16-128 printable characters without @ " / - letters and digits only.
        self.auth_secret = secretsmanager.Secret(
            self,
            "RedisAuthSecret",
            description=f"c2c-sync {env_name}: Redis AUTH token",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False, require_each_included_type=True
            ),
            removal_policy=removal_policy,
            encryption_key=key,
        )
        acknowledge(
            self.auth_secret,
            "AwsSolutions-SMG4",
            "The Redis AUTH token is not rotated by Secrets Manager: rotating it needs an ElastiCache "
            "auth-token rotation (ROTATE then SET strategy) coordinated with the worker; done as an operator task",
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "RedisSecurityGroup",
            vpc=vpc,
            description="c2c-sync Redis: TLS port reachable only from the worker (and the trigger if it publishes)",
            allow_all_outbound=False,
        )
        for client in client_security_groups:
            self.security_group.add_ingress_rule(client, ec2.Port.tcp(port), f"Redis TLS from {client.node.id}")

        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnetGroup",
            description=f"c2c-sync {env_name}: isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        slow_log = logs.LogGroup(
            self,
            "RedisSlowLog",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            encryption_key=key,
        )

        self.replication_group = elasticache.CfnReplicationGroup(
            self,
            "RedisReplicationGroup",
            replication_group_description=f"c2c-sync {env_name} state: cursors, lease, heartbeat, history",
            engine=ENGINE,
            engine_version=engine_version,
            cache_node_type=node_type,
            num_cache_clusters=1 + replicas,
            automatic_failover_enabled=replicas > 0,
            multi_az_enabled=multi_az,
            port=port,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            auth_token=self.auth_secret.secret_value.unsafe_unwrap(),  # a {{resolve:secretsmanager}} reference
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.security_group.security_group_id],
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=7 if removal_policy == cdk.RemovalPolicy.RETAIN else 0,
            log_delivery_configurations=[
                elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type="slow-log",
                    destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                        cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                            log_group=slow_log.log_group_name
                        )
                    ),
                )
            ],
        )
        self.replication_group.apply_removal_policy(removal_policy)
        if not multi_az:
            acknowledge(
                self.replication_group,
                "AwsSolutions-AEC4",
                "Single-node Redis in this environment by configuration (cache.multi_az=false) to keep it "
                "cheap; the worker rebuilds lost state from the vendor API, production runs multi-AZ",
            )

        # Stable logical ids: renaming a construct must never replace the cache or its token.
        self.replication_group.override_logical_id("RedisReplicationGroup")
        subnet_group.override_logical_id("RedisSubnetGroup")
        pin_logical_id(self.auth_secret, "RedisAuthSecret")
        pin_logical_id(self.security_group, "RedisSecurityGroup")

        self.endpoint_address = self.replication_group.attr_primary_end_point_address
        self.endpoint_port = self.replication_group.attr_primary_end_point_port

        cdk.CfnOutput(
            self,
            "RedisEndpoint",
            value=self.endpoint_address,
            description="Primary endpoint of the Redis replication group (TLS)",
        )
        cdk.CfnOutput(self, "RedisPort", value=self.endpoint_port, description="Redis port")
        cdk.CfnOutput(
            self,
            "RedisAuthSecretArn",
            value=self.auth_secret.secret_arn,
            description="Secrets Manager secret holding the Redis AUTH token",
        )
