"""Network: a VPC over two AZs with public, private-with-egress and isolated subnets.

Egress from the private subnets goes through NAT instances (default) or NAT gateways, one per
`nat_count` AZ. The NAT instance is CDK's `NatProvider.instance_v2` on a t4g (Graviton) type with
Amazon Linux 2023 resolved from its public SSM parameter at deploy time: no AMI lookup, so
`cdk synth` stays offline (cdk-fck-nat's default looks the AMI up by owner, a context lookup, and
adds a third-party construct), and the AMI is AWS's own, patched by replacing the instance. It
has no key pair and no SSH rule, requires IMDSv2, and its security group forwards only the ports
the worker needs. An S3 gateway endpoint (free) keeps image-layer pulls off the NAT.

It also owns the security groups that identify the worker (and the trigger, when it talks to
Redis). They live here rather than next to their workloads so the Cache stack can admit exactly
them without a dependency cycle (the worker needs the cache's endpoint, the cache needs the
worker's group). Their egress is limited to what each needs: HTTPS (vendor API, AWS APIs), the
MQTT broker's port, the Redis port inside the VPC, and DNS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.checkov import skip_check
from infra.nag import acknowledge
from infra.stack_options import StackOptions

AZ_COUNT = 2
#: checkov findings on CDK's own deploy-time function (restrict_default_security_group's provider).
_PROVIDER = "CDK's deploy-time provider that strips the default security group's rules"
PROVIDER_CHECKOV_SKIPS = {
    "CKV_AWS_115": f"{_PROVIDER}: invoked only by CloudFormation during a deploy, concurrency is bounded by it",
    "CKV_AWS_116": f"{_PROVIDER}: invoked synchronously by CloudFormation, which reports its failure",
    "CKV_AWS_117": f"{_PROVIDER}: calls only the EC2 API, needs no VPC access",
    "CKV_AWS_173": f"{_PROVIDER}: its environment holds no variables of ours, nothing secret",
}
VPC_CIDR = "10.40.0.0/16"
#: The NAT instance's root volume: Amazon Linux 2023's root device, encrypted, deleted with it.
NAT_ROOT_VOLUME = ec2.CfnInstance.BlockDeviceMappingProperty(
    device_name="/dev/xvda",
    ebs=ec2.CfnInstance.EbsProperty(encrypted=True, volume_type="gp3", volume_size=8, delete_on_termination=True),
)
HTTPS_PORT = 443
DNS_PORT = 53


@dataclass(frozen=True)
class NatSettings:
    """Typed from config.network: kind (`instance` | `gateway`), how many, the instance type."""

    instance: bool
    count: int
    instance_type: str


class NetworkStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        nat: NatSettings,
        internet_ports: Sequence[int],
        redis_port: int,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey | None = None,
        trigger_in_vpc: bool,
        removal_policy: cdk.RemovalPolicy,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)
        #: TCP ports the worker reaches on the internet: 443 plus the broker's (and vendor's) port.
        self.internet_ports = sorted({HTTPS_PORT, *internet_ports})

        nat_provider: ec2.NatProvider | None = None
        self.nat_security_group: ec2.SecurityGroup | None = None
        if nat.instance:
            # Created before the VPC exists (the provider needs it up front), so it is attached below.
            nat_provider = ec2.NatProvider.instance_v2(
                instance_type=ec2.InstanceType(nat.instance_type),
                machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.ARM_64),
                default_allowed_traffic=ec2.NatTrafficDirection.NONE,
                associate_public_ip_address=True,
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=AZ_COUNT,
            nat_gateways=nat.count,
            nat_gateway_provider=nat_provider,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24),
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        self.vpc.add_gateway_endpoint("S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3)
        vpc_cidr = ec2.Peer.ipv4(VPC_CIDR)

        if isinstance(nat_provider, ec2.NatInstanceProviderV2):
            self.nat_security_group = ec2.SecurityGroup(
                self,
                "NatSecurityGroup",
                vpc=self.vpc,
                description="c2c-sync NAT instance: forwards the worker ports from the VPC, no SSH",
                allow_all_outbound=False,
            )
            for port in self.internet_ports:
                self.nat_security_group.add_ingress_rule(
                    vpc_cidr, ec2.Port.tcp(port), f"forward tcp {port} from the VPC"
                )
                self.nat_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"tcp {port} out")
            for instance in nat_provider.gateway_instances:
                instance.add_security_group(self.nat_security_group)
                instance.instance.block_device_mappings = [NAT_ROOT_VOLUME]
                skip_check(
                    instance.instance,
                    "CKV_AWS_88",
                    "A NAT instance needs a public address to forward the private subnets' traffic; it "
                    "has no key pair, no SSH rule and forwards only the worker's ports from the VPC",
                )
            # IMDSv2 only (a launch template with HttpTokens=required) on the NAT instances.
            cdk.Aspects.of(self).add(ec2.InstanceRequireImdsv2Aspect())
            acknowledge(
                self.vpc,
                "AwsSolutions-EC28",
                "NAT instance: detailed monitoring (1-minute EC2 metrics, paid) adds nothing the worker's "
                "heartbeat and failure-ratio alarms do not already show for lost egress",
            )
            acknowledge(
                self.vpc,
                "AwsSolutions-EC29",
                "NAT instance: holds no state (iptables masquerade from user data); replacing it is the "
                "recovery, so neither termination protection nor an ASG is worth its cost here",
            )

        flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            retention=log_retention,
            removal_policy=removal_policy,
            encryption_key=log_key,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        self.worker_security_group = ec2.SecurityGroup(
            self,
            "WorkerSecurityGroup",
            vpc=self.vpc,
            description="c2c-sync worker tasks: no ingress; egress to HTTPS, the MQTT broker, Redis, DNS",
            allow_all_outbound=False,
        )
        for port in self.internet_ports:
            self.worker_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"tcp {port} out")
        self._allow_vpc_services(self.worker_security_group, vpc_cidr, redis_port)

        self.trigger_security_group: ec2.SecurityGroup | None = None
        if trigger_in_vpc:
            self.trigger_security_group = ec2.SecurityGroup(
                self,
                "TriggerSecurityGroup",
                vpc=self.vpc,
                description="c2c-sync trigger Lambda in the VPC (Redis signal transport): no ingress",
                allow_all_outbound=False,
            )
            self.trigger_security_group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "AWS APIs (SNS, ECS, Secrets Manager)"
            )
            self._allow_vpc_services(self.trigger_security_group, vpc_cidr, redis_port)

        # The custom resource that strips the default security group's rules is CDK's own code.
        for child in self.node.find_all():
            if "Custom::VpcRestrictDefaultSGCustomResourceProvider" not in child.node.path:
                continue
            if isinstance(child, cdk.CfnResource) and child.cfn_resource_type == "AWS::Lambda::Function":
                for check_id, reason in PROVIDER_CHECKOV_SKIPS.items():
                    skip_check(child, check_id, reason)
            else:
                acknowledge(
                    child,
                    "AwsSolutions-IAM4",
                    "CDK's provider for restrict_default_security_group uses AWSLambdaBasicExecutionRole; "
                    "the function only writes its own logs and runs at deploy time",
                    findings=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
                )

    @staticmethod
    def _allow_vpc_services(group: ec2.SecurityGroup, vpc_cidr: ec2.IPeer, redis_port: int) -> None:
        group.add_egress_rule(vpc_cidr, ec2.Port.tcp(redis_port), "Redis (TLS) in the isolated subnets")
        group.add_egress_rule(vpc_cidr, ec2.Port.udp(DNS_PORT), "DNS (VPC resolver)")
        group.add_egress_rule(vpc_cidr, ec2.Port.tcp(DNS_PORT), "DNS over TCP (VPC resolver)")

    @property
    def availability_zones(self) -> list[str]:
        """Two AZs as `Fn::GetAZs` tokens: never a context lookup, even for an account-pinned stack,
        so `cdk synth` needs no AWS credentials."""
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(AZ_COUNT)]
