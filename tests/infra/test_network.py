"""Network stack: two AZs, three subnet tiers, NAT count from config, flow logs, locked default SG."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from config.schema import NatKind

pytestmark = pytest.mark.infra


def subnets_by_tier(synth) -> dict[str, int]:
    tiers: dict[str, int] = {}
    for subnet in synth.resources("Network", "AWS::EC2::Subnet").values():
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        tiers[tags["aws-cdk:subnet-type"]] = tiers.get(tags["aws-cdk:subnet-type"], 0) + 1
    return tiers


def test_vpc_spans_two_azs_with_public_private_and_isolated_subnets(env_synth):
    assert subnets_by_tier(env_synth) == {"Public": 2, "Private": 2, "Isolated": 2}
    # AZs are Fn::GetAZs picks, never names from a context lookup (synth needs no credentials).
    azs = [s["Properties"]["AvailabilityZone"] for s in env_synth.resources("Network", "AWS::EC2::Subnet").values()]
    assert all("Fn::Select" in az and az["Fn::Select"][1] == {"Fn::GetAZs": ""} for az in azs)
    assert {az["Fn::Select"][0] for az in azs} == {0, 1}


def test_nat_kind_and_count_come_from_config(env_synth):
    network = load_environment(env_synth.env).network
    assert network.nat == NatKind.INSTANCE
    instances = env_synth.resources("Network", "AWS::EC2::Instance")
    assert len(instances) == network.nat_count and not env_synth.resources("Network", "AWS::EC2::NatGateway")
    assert {i["Properties"]["InstanceType"] for i in instances.values()} == {network.nat_instance_type}


def test_nat_instances_have_no_ssh_no_key_imdsv2_and_an_encrypted_volume(env_synth):
    templates = env_synth.templates["Network"]["Resources"]
    for instance in env_synth.resources("Network", "AWS::EC2::Instance").values():
        props = instance["Properties"]
        assert "KeyName" not in props
        assert props["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
        # Amazon Linux 2023 from AWS's public SSM parameter: resolved at deploy time, no AMI lookup.
        assert "SsmParameterValueawsserviceamiamazonlinuxlatestal2023" in props["ImageId"]["Ref"]
        template = templates[props["LaunchTemplate"]["Version"]["Fn::GetAtt"][0]]["Properties"]
        assert template["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
        (interface,) = props["NetworkInterfaces"]
        groups = [templates[g["Fn::GetAtt"][0]]["Properties"] for g in interface["GroupSet"]]
        ingress = [rule for group in groups for rule in group.get("SecurityGroupIngress", [])]
        assert ingress and all(rule["CidrIp"] == "10.40.0.0/16" for rule in ingress)
        assert 22 not in {rule["FromPort"] for rule in ingress}
        egress = [rule for group in groups for rule in group.get("SecurityGroupEgress", [])]
        assert {rule.get("IpProtocol") for rule in egress} <= {"tcp", "icmp"}, egress


def test_every_environment_has_an_s3_gateway_endpoint(profile_synth):
    (endpoint,) = profile_synth.resources("Network", "AWS::EC2::VPCEndpoint").values()
    assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
    assert "s3" in json.dumps(endpoint["Properties"]["ServiceName"])


def test_worker_egress_is_https_mqtt_redis_and_dns_only(profile_synth):
    config = profile_synth.config
    group = profile_synth.templates["Network"]["Resources"]
    (worker,) = [r for k, r in group.items() if k.startswith("WorkerSecurityGroup")]
    rules = {(r["IpProtocol"], r["FromPort"], r["CidrIp"]) for r in worker["Properties"]["SecurityGroupEgress"]}
    mqtt_port = int(config.platform.endpoint.rsplit(":", 1)[1])
    assert rules == {
        ("tcp", 443, "0.0.0.0/0"),
        ("tcp", mqtt_port, "0.0.0.0/0"),
        ("tcp", config.cache.port, "10.40.0.0/16"),
        ("udp", 53, "10.40.0.0/16"),
        ("tcp", 53, "10.40.0.0/16"),
    }


def test_flow_logs_go_to_a_log_group_with_retention(env_synth):
    flow_log = env_synth.only("Network", "AWS::EC2::FlowLog")["Properties"]
    assert flow_log["ResourceType"] == "VPC" and flow_log["LogDestinationType"] == "cloud-watch-logs"
    group = env_synth.only("Network", "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == load_environment(env_synth.env).log_retention_days
    assert "MessagingKey" in json.dumps(group["KmsKeyId"])


def test_default_security_group_is_restricted(env_synth):
    assert len(env_synth.resources("Network", "Custom::VpcRestrictDefaultSG")) == 1


def worker_and_trigger_groups(synth) -> dict[str, dict]:
    """The workloads' security groups (not the NAT instances')."""
    groups = synth.resources("Network", "AWS::EC2::SecurityGroup")
    return {k: g for k, g in groups.items() if not k.startswith(("VpcNatSecurityGroup", "NatSecurityGroup"))}


def test_worker_security_group_has_no_ingress(env_synth):
    groups = worker_and_trigger_groups(env_synth)
    assert len(groups) == 1  # the worker's; the trigger's exists only with Redis signals
    (worker,) = groups.values()
    assert "SecurityGroupIngress" not in worker["Properties"]
    assert not env_synth.resources("Network", "AWS::EC2::SecurityGroupIngress")


def test_trigger_gets_a_security_group_only_with_redis_signals(stage):
    groups = worker_and_trigger_groups(stage)
    assert len(groups) == 2
    assert any("trigger" in g["Properties"]["GroupDescription"] for g in groups.values())


def test_no_subnet_hands_out_public_ips_outside_the_public_tier(env_synth):
    for subnet in env_synth.resources("Network", "AWS::EC2::Subnet").values():
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is (tags["aws-cdk:subnet-type"] == "Public")
