"""boto3 clients of the trigger, created lazily and reused across invocations.

Lazy so importing the handler needs no region or credentials (tests, `cdk synth`); cached so a warm
Lambda does not pay client construction again. boto3 honours AWS_ENDPOINT_URL, which is how the
tests point these clients at moto's server. One function per service, so each call site gets that
service's typed client (the type stubs are a development dependency only).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient


@cache
def sns() -> SNSClient:
    return boto3.client("sns")


@cache
def secretsmanager() -> SecretsManagerClient:
    return boto3.client("secretsmanager")


@cache
def ecs() -> ECSClient:
    return boto3.client("ecs")


def reset_clients() -> None:
    """Forget cached clients (tests change AWS_ENDPOINT_URL between runs)."""
    for cached in (sns, secretsmanager, ecs):
        cached.cache_clear()
