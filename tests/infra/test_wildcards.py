"""Every IAM statement with `Resource: *` is one of a known few, each with the reason nag was given.

cdk-nag acknowledges `AwsSolutions-IAM5[Resource::*]` per policy, not per statement; this test is
the statement-level guard: a new wildcard statement anywhere (another action in the same policy,
or a new policy) fails here until it is added below, deliberately.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.infra

#: (stack part, policy logical-id prefix, actions) of every permitted wildcard statement.
ALLOWED_WILDCARDS = {
    # ECR's authorization token is account-wide by API design.
    ("SyncService", "WorkerTaskExecutionRoleDefaultPolicy", ("ecr:GetAuthorizationToken",)),
    # X-Ray trace upload (tracing=ACTIVE) has no resource-level permissions.
    ("Trigger", "TriggerRoleDefaultPolicy", ("xray:PutTelemetryRecords", "xray:PutTraceSegments")),
    # Lambda in a VPC (Redis signals): the ENIs do not exist before the function creates them.
    (
        "Trigger",
        "TriggerRoleDefaultPolicy",
        (
            "ec2:AssignPrivateIpAddresses",
            "ec2:CreateNetworkInterface",
            "ec2:DeleteNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
            "ec2:UnassignPrivateIpAddresses",
        ),
    ),
}


def wildcard_statements(templates: dict[str, dict]) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(part, policy logical id, sorted actions) of every identity-policy statement on `*`."""
    for part, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                documents = [props["PolicyDocument"]]
            elif resource["Type"] == "AWS::IAM::Role":
                documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
            else:
                continue
            for document in documents:
                for statement in document["Statement"]:
                    resources = statement.get("Resource", [])
                    resources = resources if isinstance(resources, list) else [resources]
                    if "*" in resources:
                        actions = statement["Action"]
                        actions = actions if isinstance(actions, list) else [actions]
                        yield part, logical_id, tuple(sorted(actions))


def unexpected(templates: dict[str, dict]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        found
        for found in wildcard_statements(templates)
        if not any(
            found[0] == part and found[1].startswith(prefix) and found[2] == actions
            for part, prefix, actions in ALLOWED_WILDCARDS
        )
    ]


def test_no_wildcard_statement_beyond_the_known_ones(profile_synth):
    assert unexpected(profile_synth.templates) == []
    assert list(wildcard_statements(profile_synth.templates))  # the guard sees the known ones


def test_a_new_wildcard_in_an_acknowledged_policy_fails(dev):
    templates = {part: dict(template) for part, template in dev.templates.items()}
    trigger = {**templates["Trigger"], "Resources": dict(templates["Trigger"]["Resources"])}
    (policy_id,) = [k for k in trigger["Resources"] if k.startswith("TriggerRoleDefaultPolicy")]
    policy = trigger["Resources"][policy_id]
    statements = [*policy["Properties"]["PolicyDocument"]["Statement"], {"Action": "s3:GetObject", "Resource": "*"}]
    trigger["Resources"][policy_id] = {
        **policy,
        "Properties": {**policy["Properties"], "PolicyDocument": {"Statement": statements}},
    }
    templates["Trigger"] = trigger
    assert unexpected(templates) == [("Trigger", policy_id, ("s3:GetObject",))]
