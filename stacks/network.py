"""Network: a VPC over two AZs with public, private-with-egress and isolated subnets.

It also owns the security groups that identify the worker (and the trigger, when it talks to
Redis). They live here rather than next to their workloads so the Cache stack can admit exactly
them without a dependency cycle (the worker needs the cache's endpoint, the cache needs the
worker's group).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge

AZ_COUNT = 2


class NetworkStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        nat_gateways: int,
        log_retention: logs.RetentionDays,
        trigger_in_vpc: bool,
        removal_policy: cdk.RemovalPolicy,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=AZ_COUNT,
            nat_gateways=nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24),
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        flow_log_group = logs.LogGroup(self, "FlowLogGroup", retention=log_retention, removal_policy=removal_policy)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        self.worker_security_group = ec2.SecurityGroup(
            self,
            "WorkerSecurityGroup",
            vpc=self.vpc,
            description="c2c-sync worker tasks: no ingress; egress to the vendor API, the MQTT broker, AWS APIs",
            allow_all_outbound=True,
        )
        self.trigger_security_group: ec2.ISecurityGroup | None = None
        if trigger_in_vpc:
            self.trigger_security_group = ec2.SecurityGroup(
                self,
                "TriggerSecurityGroup",
                vpc=self.vpc,
                description="c2c-sync trigger Lambda in the VPC (Redis signal transport): no ingress",
                allow_all_outbound=True,
            )

        # The custom resource that strips the default security group's rules is CDK's own code.
        for child in self.node.find_all():
            if "Custom::VpcRestrictDefaultSGCustomResourceProvider" in child.node.path:
                acknowledge(
                    child,
                    "AwsSolutions-IAM4",
                    "CDK's provider for restrict_default_security_group uses AWSLambdaBasicExecutionRole; "
                    "the function only writes its own logs and runs at deploy time",
                    findings=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
                )

    @property
    def availability_zones(self) -> list[str]:
        """Two AZs as `Fn::GetAZs` tokens: never a context lookup, even for an account-pinned stack,
        so `cdk synth` needs no AWS credentials."""
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(AZ_COUNT)]
