"""boto3 clients of the trigger, created lazily and reused across invocations.

Lazy so importing the handler needs no region or credentials (tests, `cdk synth`); cached so a warm
Lambda does not pay client construction again. boto3 honours AWS_ENDPOINT_URL, which is how the
tests point these clients at moto's server.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3


@cache
def client(service: str) -> Any:
    return boto3.client(service)


def reset_clients() -> None:
    """Forget cached clients (tests change AWS_ENDPOINT_URL between runs)."""
    client.cache_clear()
