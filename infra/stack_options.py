"""`StackOptions`: the `cdk.Stack` properties every stack of an environment passes through, typed,
so each stack's constructor can say `**options: Unpack[StackOptions]` instead of `**kwargs: object`
and mypy checks what `infra.environment` hands over against what `cdk.Stack` accepts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import aws_cdk as cdk


class StackOptions(TypedDict, total=False):
    stack_name: str
    #: None: environment-agnostic (no account/region pinned at synth).
    env: cdk.Environment | None
    tags: Mapping[str, str]
    description: str
    termination_protection: bool
