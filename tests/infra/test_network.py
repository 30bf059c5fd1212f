"""Network stack: two AZs, three subnet tiers, NAT count from config, flow logs, locked default SG."""

from __future__ import annotations

import json

import pytest

from config import load_environment

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


def test_nat_gateway_count_comes_from_config(env_synth):
    expected = load_environment(env_synth.env).network.nat_gateways
    assert len(env_synth.resources("Network", "AWS::EC2::NatGateway")) == expected


def test_flow_logs_go_to_a_log_group_with_retention(env_synth):
    flow_log = env_synth.only("Network", "AWS::EC2::FlowLog")["Properties"]
    assert flow_log["ResourceType"] == "VPC" and flow_log["LogDestinationType"] == "cloud-watch-logs"
    group = env_synth.only("Network", "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == load_environment(env_synth.env).log_retention_days


def test_default_security_group_is_restricted(env_synth):
    assert len(env_synth.resources("Network", "Custom::VpcRestrictDefaultSG")) == 1


def test_worker_security_group_has_no_ingress(env_synth):
    groups = env_synth.resources("Network", "AWS::EC2::SecurityGroup")
    assert len(groups) == 1  # the worker's; the trigger's exists only with Redis signals
    (worker,) = groups.values()
    assert "SecurityGroupIngress" not in worker["Properties"]
    assert not env_synth.resources("Network", "AWS::EC2::SecurityGroupIngress")


def test_trigger_gets_a_security_group_only_with_redis_signals(stage):
    groups = stage.resources("Network", "AWS::EC2::SecurityGroup")
    assert len(groups) == 2
    assert any("trigger" in g["Properties"]["GroupDescription"] for g in groups.values())


def test_no_subnet_hands_out_public_ips_outside_the_public_tier(env_synth):
    for subnet in env_synth.resources("Network", "AWS::EC2::Subnet").values():
        tags = {t["Key"]: t["Value"] for t in subnet["Properties"]["Tags"]}
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is (tags["aws-cdk:subnet-type"] == "Public")
    assert "AssociatePublicIpAddress" not in json.dumps(env_synth.templates)
