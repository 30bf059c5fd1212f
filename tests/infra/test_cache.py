"""Cache stack: TLS + AUTH Redis in isolated subnets, reachable only from the worker (and trigger)."""

from __future__ import annotations

import pytest

from config import load_environment

pytestmark = pytest.mark.infra


def replication_group(synth) -> dict:
    return synth.templates["Cache"]["Resources"]["RedisReplicationGroup"]


def test_encrypted_in_transit_and_at_rest_with_an_auth_token_from_the_generated_secret(env_synth):
    props = replication_group(env_synth)["Properties"]
    assert props["TransitEncryptionEnabled"] is True and props["AtRestEncryptionEnabled"] is True
    # A CloudFormation dynamic reference: the token itself never appears in the template.
    token = props["AuthToken"]["Fn::Join"][1]
    assert token[0] == "{{resolve:secretsmanager:" and token[1] == {"Ref": "RedisAuthSecret"}
    secret = env_synth.templates["Cache"]["Resources"]["RedisAuthSecret"]["Properties"]["GenerateSecretString"]
    # Valid AUTH token: 16-128 printable chars without @, ", / - letters and digits only here.
    assert secret["ExcludePunctuation"] is True and 16 <= secret["PasswordLength"] <= 128
    assert secret.get("IncludeSpace") is False


def test_valkey_engine_sized_from_config_and_ha_in_prod(env_synth, prod):
    props = replication_group(env_synth)["Properties"]
    cache = env_synth.config.cache
    assert props["Engine"] == "valkey" and props["EngineVersion"] == cache.engine_version
    assert (props["CacheNodeType"], props["NumCacheClusters"]) == (cache.node_type, 1 + cache.replicas)
    # Production keeps a replica in a second AZ with automatic failover.
    prod_props = replication_group(prod)["Properties"]
    assert prod_props["MultiAZEnabled"] is True and prod_props["AutomaticFailoverEnabled"] is True
    assert prod_props["NumCacheClusters"] == 2


def test_non_default_port_from_config(env_synth):
    port = replication_group(env_synth)["Properties"]["Port"]
    assert port == load_environment(env_synth.env).cache.port and port != 6379


def test_lives_in_the_isolated_subnets(env_synth):
    subnet_ids = env_synth.only("Cache", "AWS::ElastiCache::SubnetGroup")["Properties"]["SubnetIds"]
    imports = [s["Fn::ImportValue"] for s in subnet_ids]
    assert len(imports) == 2 and all("isolatedSubnet" in name for name in imports)


def test_ingress_only_from_the_worker_security_group(env_synth):
    rules = list(env_synth.resources("Cache", "AWS::EC2::SecurityGroupIngress").values())
    assert len(rules) == 1
    rule = rules[0]["Properties"]
    assert "WorkerSecurityGroup" in rule["SourceSecurityGroupId"]["Fn::ImportValue"]
    assert rule["FromPort"] == rule["ToPort"] == load_environment(env_synth.env).cache.port
    sg = env_synth.templates["Cache"]["Resources"]["RedisSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in sg
    assert sg["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"  # CDK's "no egress" marker


def test_trigger_security_group_is_admitted_with_redis_signals(stage):
    sources = sorted(
        r["Properties"]["SourceSecurityGroupId"]["Fn::ImportValue"]
        for r in stage.resources("Cache", "AWS::EC2::SecurityGroupIngress").values()
    )
    assert len(sources) == 2
    assert "TriggerSecurityGroup" in sources[0] and "WorkerSecurityGroup" in sources[1]


def test_dev_is_one_node_and_destroyed_with_the_stack(dev):
    group = replication_group(dev)
    props = group["Properties"]
    assert props["NumCacheClusters"] == 1
    assert props["AutomaticFailoverEnabled"] is False and props["MultiAZEnabled"] is False
    assert group["DeletionPolicy"] == "Delete"


def test_prod_is_primary_plus_replica_multi_az_with_failover_and_retained(prod):
    group = replication_group(prod)
    props = group["Properties"]
    assert props["NumCacheClusters"] == 2
    assert props["AutomaticFailoverEnabled"] is True and props["MultiAZEnabled"] is True
    assert group["DeletionPolicy"] == "Retain" and group["UpdateReplacePolicy"] == "Retain"
    assert prod.templates["Cache"]["Resources"]["RedisAuthSecret"]["DeletionPolicy"] == "Retain"
    assert props["SnapshotRetentionLimit"] > 0


def test_slow_log_goes_to_a_log_group_with_retention(env_synth):
    (delivery,) = replication_group(env_synth)["Properties"]["LogDeliveryConfigurations"]
    assert delivery["DestinationType"] == "cloudwatch-logs" and delivery["LogType"] == "slow-log"
    group = env_synth.only("Cache", "AWS::Logs::LogGroup")["Properties"]
    assert group["RetentionInDays"] == load_environment(env_synth.env).log_retention_days


#: AWS::ElastiCache::ReplicationGroup properties whose change replaces the cluster (CloudFormation
#: "Update requires: Replacement"), and what prod's cache has for each (absent = not set).
CREATE_ONLY = {
    "AtRestEncryptionEnabled": True,
    "CacheSubnetGroupName": {"Ref": "RedisSubnetGroup"},
    "DataTieringEnabled": None,
    "Engine": "valkey",
    "GlobalReplicationGroupId": None,
    "KmsKeyId": None,
    "NetworkType": None,
    "PreferredCacheClusterAZs": None,
    "ReplicationGroupId": None,
    "SnapshotArns": None,
    "SnapshotName": None,
}


def test_nothing_in_code_would_replace_the_deployed_prod_cache(prod):
    # The config's values the cache cannot take in place (the port, an engine downgrade) are guarded
    # at synth by cache.deployed; this pins the
    # ones the code sets, so a code change that would replace the retained prod cache fails here.
    props = replication_group(prod)["Properties"]
    assert {name: props.get(name) for name in CREATE_ONLY} == CREATE_ONLY
    assert props["Port"] == prod.config.cache.deployed.port
    assert props["EngineVersion"] == prod.config.cache.deployed.engine_version
    assert replication_group(prod)["DeletionPolicy"] == "Retain"
