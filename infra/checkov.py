"""checkov skips, written into the resource's own CloudFormation Metadata (`checkov: skip:`).

A skip is scoped to one resource and one check and carries its reason, so checkov's report (run
over every template by tests/infra/test_checkov.py) shows exactly what was waived and why; a new
resource with the same finding fails.
"""

from __future__ import annotations

import aws_cdk as cdk

from infra.nag import MIN_REASON_LENGTH


def skip_check(resource: cdk.CfnResource, check_id: str, reason: str) -> None:
    """Waive checkov `check_id` on this one resource, with the reason the report will show."""
    if len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"{check_id}: a checkov skip needs a real reason, got {reason!r}")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"] = [*metadata["skip"], {"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", metadata)
