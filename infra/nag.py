"""cdk-nag (v3) acknowledgements: one helper that insists every acknowledgement carries its reason.

cdk-nag 3 runs as a CDK validation plugin and findings are acknowledged with CDK's own
`Validations.of(construct).acknowledge(...)`. A finding with several parts (e.g. IAM5 wildcards)
is acknowledged part by part: `AwsSolutions-IAM5[Resource::*]`.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from constructs import IConstruct

MIN_REASON_LENGTH = 20


def acknowledge(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    findings: Sequence[str] = (),
) -> None:
    """Acknowledge AwsSolutions `rule` on `construct` and its children, or only its `findings`."""
    if len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"{rule}: an acknowledgement needs a real reason, got {reason!r}")
    ids = [f"{rule}[{finding}]" for finding in findings] if findings else [rule]
    for rule_id in ids:
        cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))
