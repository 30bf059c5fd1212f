"""Pin the CloudFormation logical id of an L2 construct's underlying resource.

Renaming or moving a construct would otherwise change its logical id, and CloudFormation would
replace the resource (a queue, a secret, a cache): stateful resources keep fixed ids."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def pin_logical_id(construct: IConstruct, logical_id: str) -> None:
    """Give `construct`'s CloudFormation resource (its default child) the logical id `logical_id`."""
    resource = construct.node.default_child
    if not isinstance(resource, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource as its default child")
    resource.override_logical_id(logical_id)
