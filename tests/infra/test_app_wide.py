"""Properties every stack shares: names, tags, outputs, retention, stable ids, no public IPs."""

from __future__ import annotations

import json

import pytest

from config import load_environment
from tests.infra.conftest import PARTS, STAGE_ACCOUNT

pytestmark = pytest.mark.infra

#: The outputs the operator CLI reads, per stack.
OUTPUTS = {
    "Messaging": {"StartTopicArn", "StartQueueUrl", "DlqUrl"},
    "Trigger": {"TriggerFunctionUrl"},
    "SyncService": {"ClusterName", "ServiceName"},
    "Cache": {"RedisEndpoint", "RedisPort", "RedisAuthSecretArn"},
    "Monitoring": {"AlarmTopicArn"},
}
STATEFUL_IDS = {
    "Messaging": {"MessagingKey", "StartQueue", "StartDeadLetterQueue", "StartTopic"},
    "Cache": {"RedisReplicationGroup", "RedisSubnetGroup", "RedisAuthSecret", "RedisSecurityGroup"},
}


def manifest_stacks(synth) -> dict[str, dict]:
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    return {k: v for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"}


def test_six_stacks_named_by_environment(any_synth):
    assert set(manifest_stacks(any_synth)) == {f"C2C-{any_synth.env}-{p}" for p in PARTS}


def test_config_tags_on_every_stack(env_synth):
    tags = load_environment(env_synth.env).tags
    for name, artifact in manifest_stacks(env_synth).items():
        assert artifact["properties"]["tags"] == tags, name


def test_env_agnostic_unless_account_and_region_are_configured(dev, prod, stage):
    assert {a["environment"] for a in manifest_stacks(dev).values()} == {"aws://unknown-account/unknown-region"}
    assert {a["environment"] for a in manifest_stacks(prod).values()} == {"aws://unknown-account/eu-west-1"}
    assert {a["environment"] for a in manifest_stacks(stage).values()} == {f"aws://{STAGE_ACCOUNT}/us-east-1"}


def test_no_context_lookups_are_needed(any_synth):
    # A missing-context entry would make the CLI call AWS during synth.
    assert "missing" not in json.loads((any_synth.outdir / "manifest.json").read_text())


def test_operator_outputs_exist_under_stable_keys_without_exports(env_synth):
    expected = dict(OUTPUTS)
    if env_synth.config.monitoring.dashboard:
        expected["Monitoring"] = OUTPUTS["Monitoring"] | {"DashboardName"}
    for part, keys in expected.items():
        outputs = env_synth.templates[part]["Outputs"]
        assert keys <= set(outputs), part
        for key in keys:
            assert "Export" not in outputs[key], f"{part}.{key} must not be exported"


def test_stateful_resources_keep_fixed_logical_ids(env_synth):
    for part, ids in STATEFUL_IDS.items():
        assert ids <= set(env_synth.templates[part]["Resources"]), part


def test_stateful_stacks_are_protected_where_data_is_retained(dev, prod):
    for synth, protected in ((dev, False), (prod, True)):
        for name, artifact in manifest_stacks(synth).items():
            stateful = any(name.endswith(p) for p in ("Network", "Messaging", "Cache"))
            assert artifact["properties"].get("terminationProtection", False) is (protected and stateful), name


def test_every_log_group_has_the_configured_retention(any_synth):
    groups = [
        r for t in any_synth.templates.values() for r in t["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"
    ]
    assert len(groups) == 4  # flow logs, Redis slow log, worker, trigger
    assert {g["Properties"]["RetentionInDays"] for g in groups} == {any_synth.config.log_retention_days}


def test_no_public_ip_and_no_plaintext_secret_anywhere(any_synth):
    text = json.dumps(any_synth.templates)
    assert '"AssignPublicIp": "ENABLED"' not in text
    # The only public addresses are the NAT instances' own (a NAT needs one); nothing else has one.
    for part, template in any_synth.templates.items():
        for logical_id, resource in template["Resources"].items():
            if "AssociatePublicIpAddress" in json.dumps(resource):
                assert resource["Type"] == "AWS::EC2::Instance", (part, logical_id)
                assert resource["Properties"]["SourceDestCheck"] is False, (part, logical_id)
    for part, template in any_synth.templates.items():
        for resource in template["Resources"].values():
            env = (
                resource["Properties"].get("Environment", {}).get("Variables", {})
                if resource["Type"] == "AWS::Lambda::Function"
                else {}
            )
            assert not [k for k in env if "PASSWORD" in k or k.endswith("_TOKEN")], part


def test_every_log_group_is_encrypted_with_the_environment_key(any_synth):
    groups = [
        (part, logical_id, resource["Properties"])
        for part, template in any_synth.templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    ]
    assert len(groups) >= 4
    for part, logical_id, props in groups:
        assert "MessagingKey" in json.dumps(props.get("KmsKeyId")), (part, logical_id)
