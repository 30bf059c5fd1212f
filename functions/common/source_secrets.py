"""The secrets a vendor source reads, and the environment variables they arrive in: shared by the
worker (which reads them), `validate-config` (which checks they are set) and the environment config
(which maps each to a Secrets Manager secret at synth).

Works on a vendor config's `auth` section as a mapping (parsed YAML, or a model dump), so the
environment schema can check a vendor file without the worker's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Default secret names of the auth types (the vendor config schema uses these as its defaults).
DEFAULT_API_KEY_SECRET = "api_key"
DEFAULT_BEARER_SECRET = "api_token"
DEFAULT_CLIENT_ID_SECRET = "client_id"
DEFAULT_CLIENT_SECRET_SECRET = "client_secret"


def source_secret_env(name: str) -> str:
    """The environment variable a source secret arrives in (an ecs.Secret when deployed)."""
    return f"C2C_SOURCE_{name.upper()}"


def auth_secret_names(auth: Mapping[str, Any]) -> list[str]:
    """The secret names a vendor config's `auth` section reads."""
    kind = auth.get("type")
    if kind == "api_key":
        return [str(auth.get("secret") or DEFAULT_API_KEY_SECRET)]
    if kind == "bearer":
        return [str(auth.get("secret") or DEFAULT_BEARER_SECRET)]
    if kind == "session":
        return [str(name) for name in auth.get("secrets") or []]
    if kind == "oauth2_client_credentials":
        return [
            str(auth.get("client_id_secret") or DEFAULT_CLIENT_ID_SECRET),
            str(auth.get("client_secret_secret") or DEFAULT_CLIENT_SECRET_SECRET),
        ]
    raise ValueError(f"auth.type {kind!r} is not one of api_key, bearer, session, oauth2_client_credentials")
