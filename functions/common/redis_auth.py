"""The Redis AUTH secret's format, read by the trigger Lambda and the operator CLI.

The cache stack generates the secret as a plain string (the worker receives it that way as
C2C_REDIS_PASSWORD). A JSON secret with a `password` or `authToken` string (the shape other
tooling writes) is accepted too, so both readers agree on one rule instead of two.
"""

from __future__ import annotations

import json


class BadAuthSecret(ValueError):
    """The secret has a shape no reader can use; the message never contains its value."""


def auth_token(secret_string: str) -> str:
    """The AUTH token in `secret_string`: the whole plain string, or a JSON `password`/`authToken`."""
    try:
        value = json.loads(secret_string)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        token = value.get("password") or value.get("authToken")
        if not isinstance(token, str) or not token:
            raise BadAuthSecret(
                f"Redis auth secret is JSON without a `password` or `authToken` string (keys: {sorted(value)})"
            )
        return token
    if not secret_string:
        raise BadAuthSecret("Redis auth secret is empty")
    return secret_string
