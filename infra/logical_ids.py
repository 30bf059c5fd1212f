"""An L2 construct's CloudFormation resource, to pin its logical id or annotate it.

Renaming or moving a construct would otherwise change its logical id, and CloudFormation would
replace the resource (a queue, a secret, a cache): stateful resources keep fixed ids."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def cfn_resource(construct: IConstruct) -> cdk.CfnResource:
    """`construct`'s CloudFormation resource (its default child); TypeError when it has none."""
    resource = construct.node.default_child
    if not isinstance(resource, cdk.CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource as its default child")
    return resource


def pin_logical_id(construct: IConstruct, logical_id: str) -> None:
    """Give `construct`'s CloudFormation resource the logical id `logical_id`."""
    cfn_resource(construct).override_logical_id(logical_id)
